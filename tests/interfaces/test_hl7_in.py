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
