"""Reading an MLLP block (server/interfaces/hl7_in.py ``decode``): MSH-18 read off the
bytes with the message's own field separator, the whole message parsed once."""

from __future__ import annotations

import pytest

from server.interfaces import hl7_in


def _block(separator: str, charset: str, name: str, encoding: str) -> bytes:
    fields = ["MSH", "^~\\&", "DPI", "CHU_A", "TI", "TI", "20261206101500", "", "ADT^A28"]
    fields += ["MSG1", "P", "2.5", "", "", "", "", "", charset]
    pid = ["PID", "1", "", "IPP1^^^CHU_A^PI", "", f"{name}^Hélène"]
    text = separator.join(fields) + "\r" + separator.join(pid) + "\r"
    return text.encode(encoding)


@pytest.mark.parametrize("separator", ["|", "#"])
@pytest.mark.parametrize(
    ("charset", "encoding", "codec"),
    [
        ("8859/1", "latin-1", "latin-1"),
        ("UNICODE UTF-8", "utf-8", "utf-8"),
        ("", "latin-1", "latin-1"),
    ],
)
def test_msh18_names_the_codec_of_the_whole_message(
    separator: str, charset: str, encoding: str, codec: str
) -> None:
    msg, used = hl7_in.decode(_block(separator, charset, "NOËL", encoding))
    assert used == codec
    assert str(msg.segment("PID")(5)(1)(1)) == "NOËL"
    assert str(msg.segment("MSH")(10)) == "MSG1"


def test_bytes_that_are_not_the_declared_charset_name_msh18() -> None:
    with pytest.raises(hl7_in.Hl7Error) as caught:
        hl7_in.decode(_block("|", "UNICODE UTF-8", "NOËL", "latin-1"))
    assert (caught.value.segment, caught.value.field_no) == ("MSH", 18)


def test_an_unknown_charset_is_refused_on_msh18() -> None:
    with pytest.raises(hl7_in.Hl7Error) as caught:
        hl7_in.decode(_block("|", "EBCDIC", "NOEL", "latin-1"))
    assert caught.value.ack_code == "AR"
    assert (caught.value.segment, caught.value.field_no) == ("MSH", 18)


COMPLETE = "MSH|^~\\&|DPI|CHU_A^1.2.250.1^ISO|TI|TI|20261206101500||ADT^A28^ADT_A05|MSG1|P|2.5"
SHORTER = [
    "MSH|^~\\&|DPI|CHU_A|TI|TI|20261206101500||ADT^A28|MSG1|P",  # no MSH-12
    "MSH|^~\\&|DPI|CHU_A|TI|TI|20261206101500||ADT^A28|MSG1||2.5",  # no MSH-11
    "MSH|^~\\&|DPI|CHU_A|TI|TI|20261206101500||ADT|MSG1|P|2.5",  # no trigger
    "MSH|^~\\&|DPI|CHU_A|TI|TI|20261206101500||ADT^ A28 |MSG1|P|2.5",  # spaces
    "MSH|^~#&|DPI|CHU_A|TI|TI|20261206101500||ADT^A28|MSG1|P|2.5",  # another escape
    "MSH#^~\\&#DPI#CHU_A#TI#TI#20261206101500##ADT^A28#MSG1#P#2.5",  # another separator
]


def _without_time(ack: str) -> str:
    msh, _, rest = ack.partition("\r")
    fields = msh.split(msh[3])
    fields[6] = ""
    return msh[3].join(fields) + "\r" + rest


@pytest.mark.parametrize("text", [COMPLETE, COMPLETE + "|||||FRA|8859/1", *SHORTER])
def test_an_ack_answers_the_message_itself_only_when_that_changes_nothing(text: str) -> None:
    """The ACK is built on the message's own MSH (no second MSH parsed) only when it is
    word for word the ACK built on the MSH rebuilt from it."""
    msg, _codec = hl7_in.decode((text + "\rPID|1\r").encode("latin-1"))
    rebuilt = _without_time(str(hl7_in._rebuilt(msg).create_ack("AE", message_id="A1")))
    if text.startswith(COMPLETE):
        assert hl7_in._answering(msg) is msg
        assert _without_time(str(msg.create_ack("AE", message_id="A1"))) == rebuilt
    else:
        assert hl7_in._answering(msg) is not msg
