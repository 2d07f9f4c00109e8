"""Reading an MLLP block (server/interfaces/hl7_in.py ``decode``): MSH-18 read off the
bytes with the message's own field separator, the whole message parsed once."""

from __future__ import annotations

import hl7
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


# A message with what python-hl7's reading rules meet: repetitions, components,
# subcomponents, escapes (\T\ is "&", \S\ is "^"), empty and missing parts.
ODD = (
    "MSH|^~\\&|DPI|CHU_A^1.2.250.1^ISO|TI|TI|20261206101500||ORM^O01^ORM_O01|M\\T\\1|P|2.5\r"
    "PID|1||A1^^^CHU&1.2.250&ISO^PI~B2^^^^INS||O\\S\\BRIEN^Noël^^^^^L||19690315|F\r"
    "OBR|1|CMD-1||ZCT01^Scanner^L||||||||||||||||||||CT|||||||^Céphalée~R51^Fièvre\\T\\toux\r"
)


def _paths() -> list[tuple[int, int, int, int]]:
    return [
        (f, rep, comp, sub)
        for f in range(1, 34)
        for rep in (1, 2, 3)
        for comp in (1, 2, 3, 4, 5)
        for sub in (1, 2, 3)
    ]


def _extracted(seg: hl7.Segment, path: tuple[int, int, int, int]) -> str:
    try:
        return str(seg.extract_field(1, *path)).strip()
    except IndexError:
        return ""


@pytest.mark.parametrize("factory", [hl7_in.Factory, hl7.Factory])
def test_a_field_reads_as_python_hl7_extracts_it(factory: type[hl7.Factory]) -> None:
    """``_get`` walks the parsed tree itself: for every path, what python-hl7's
    ``extract_field`` returns (unescaped, MSH-1 and MSH-2 as they are), empty where
    that method raises for a missing part."""
    msg = hl7.parse(ODD, factory=factory)
    # A repetition holding a string, not components: only ever assigned, never parsed.
    msg.segment("PID").assign_field("X", 20, 1)
    for seg in msg:
        for path in _paths():
            assert hl7_in._get(seg, *path) == _extracted(seg, path), (str(seg[0]), path)
    msh, pid = msg.segment("MSH"), msg.segment("PID")
    assert (hl7_in._get(msh, 2), hl7_in._get(msh, 10)) == ("^~\\&", "M&1")
    assert hl7_in._get(pid, 5, 1, 1) == "O^BRIEN"


# Other delimiters: fields #, components $, repetitions %, escape *, subcomponents !.
OTHER_DELIMITERS = (
    "MSH#$%*!#DPI#CHU_A$1.2.250.1#TI#TI#20261206101500##ORM$O01#M1#P#2.5\rPID#1##A1$$$X!Y%B2#\r"
)


@pytest.mark.parametrize("text", [ODD, OTHER_DELIMITERS])
def test_the_lighter_containers_are_python_hl7s(text: str) -> None:
    """A message decoded here is python-hl7's own tree, part for part: the same values,
    delimiters and escape at every level, written back the same, and the same ACK."""
    ours, theirs = hl7_in.decode(text.encode())[0], hl7.parse(text)

    def walk(a: object, b: object) -> None:
        assert isinstance(a, type(b))
        if isinstance(b, hl7.Container):
            assert isinstance(a, hl7.Container)
            assert (a.separator, a.separators, a.esc) == (b.separator, b.separators, b.esc)
            assert len(a) == len(b)
            for x, y in zip(a, b, strict=True):
                walk(x, y)
        else:
            assert a == b

    walk(ours, theirs)
    assert str(ours) == str(theirs) == text
    error = hl7_in.Hl7Error("AE", hl7_in.REQUIRED_FIELD_MISSING, "no birth date", "PID", 7)
    refused = hl7_in.Hl7Error("AR", hl7_in.UNKNOWN_KEY_IDENTIFIER, "unknown sender", "MSH", 4)
    draft = [("OBR-31", hl7_in.REQUIRED_FIELD_MISSING, "no clinical question")]
    for code, err, warnings in (("AE", error, None), ("AR", refused, None), ("AA", None, draft)):
        mine, python_hl7s = (
            _without_time(_controlled(hl7_in.ack(m, code, err, warnings))) for m in (ours, theirs)
        )
        assert mine == python_hl7s
        assert mine.count("\rERR") == 1


def _controlled(ack: str) -> str:
    """The ACK with its own control ID (MSH-10, new each time) blanked."""
    msh, _, rest = ack.partition("\r")
    fields = msh.split(msh[3])
    fields[9] = ""
    return msh[3].join(fields) + "\r" + rest
