"""Reading inbound HL7 v2.5 messages and writing their acknowledgements, without
I/O (docs/hl7.md "Inbound"). python-hl7 parses and builds; this module knows which
fields we read and what each ACK says.

The bytes of one MLLP block go through :func:`decode` (MSH-18 decides the
character set), :func:`header` (who sent what), then :func:`patient` and
:func:`order` for the segments of the message. Anything we cannot take raises
:class:`Hl7Error` naming the segment, field and HL7 error code (table 0357) that
the ERR segment of the acknowledgement carries (HL7 v2.5 chapter 2, 2.9 and 2.15.5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import hl7
from hl7.parser import _ParsePlan, _split, create_parse_plan
from hl7.util import generate_message_control_id, unescape

from server.patients.service import INS_OIDS, IdentityStatus, Traits

# HL7 table 0357, the codes we answer with.
SEGMENT_SEQUENCE_ERROR = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
UNSUPPORTED_VERSION_ID = "203"
UNKNOWN_KEY_IDENTIFIER = "204"
DUPLICATE_KEY_IDENTIFIER = "205"
APPLICATION_INTERNAL_ERROR = "207"
ERROR_TEXT = {
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    UNSUPPORTED_VERSION_ID: "Unsupported version id",
    UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
}

#: The messages we apply: (MSH-9.1, MSH-9.2).
ADT_EVENTS = frozenset({"A01", "A04", "A08", "A28", "A31", "A40", "A47"})
ORDER_TYPES = frozenset({("ORM", "O01"), ("OMI", "O23")})

#: MSH-18 (HL7 table 0211) to Python codecs; an empty MSH-18 is read as UTF-8 when
#: the bytes are valid UTF-8, else as ISO 8859-1 (French hospitals' usual default).
CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
}

#: PID-32 (IHE PAM national extension for France) to our identity statuses.
PID32_STATUS = {
    "PROV": IdentityStatus.PROVISIONAL,
    "VIDE": IdentityStatus.PROVISIONAL,
    "RECUP": IdentityStatus.RECOVERED,
    "VALI": IdentityStatus.VALIDATED,
    "QUAL": IdentityStatus.QUALIFIED,
}
PRIORITIES = {"S": "emergency", "A": "urgent", "R": "scheduled", "T": "urgent"}
MODALITIES = frozenset({"CT", "MR", "CR", "DX"})
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_YES = frozenset({"Y", "YES", "O", "OUI", "1", "TRUE"})

# A stroke order (docs/hl7.md "Stroke orders"): OBR-31 coded with a stroke reason. CIM-10
# (ICD-10) I60-I64 (haemorrhages, infarction, stroke not specified), G45 (transient
# ischaemic attack) and G46 (vascular syndromes of the brain), dotted or not, or the local
# codes AVC / STROKE; with the emergency priority (S) it raises the stroke alert.
STROKE_REASON_PREFIXES = ("I60", "I61", "I62", "I63", "I64", "G45", "G46")
STROKE_LOCAL_CODES = frozenset({"AVC", "STROKE", "ALERTE-AVC"})
# The OBX-3 codes that carry the reference time of a stroke order (OBX-5, TS/DTM):
# LOINC 11368-8 (illness or injury onset date and time) or the local ONSET: witnessed
# onset; the local LKW: the time the patient was last known (seen) well.
ONSET_CODES = {"11368-8": "witnessed", "ONSET": "witnessed", "LKW": "last_seen_well"}
# An HL7 time without an offset is the sending hospital's local time.
SITE_TIMEZONE = ZoneInfo("Europe/Paris")
_TS = re.compile(r"^(\d{12})(\d{2})?(?:\.\d{1,4})?([+-]\d{4})?$")


def _stroke_reason(code: str) -> bool:
    code = code.strip().upper().replace(".", "")
    return code in STROKE_LOCAL_CODES or code[:3] in STROKE_REASON_PREFIXES


def _timestamp(value: str, seg: str, f: int) -> datetime:
    """An HL7 TS/DTM to the minute at least (YYYYMMDDHHMM[SS[.S]][+/-ZZZZ]); the
    site's time zone when it has no offset."""
    found = _TS.match(value.strip())
    try:
        if not found:
            raise ValueError(value)
        local = datetime.strptime(found[1] + (found[2] or "00"), "%Y%m%d%H%M%S")
        if found[3]:
            sign = 1 if found[3][0] == "+" else -1
            hours, minutes = int(found[3][1:3]), int(found[3][3:5])
            offset = sign * (hours * 3600 + minutes * 60)
            return (local.replace(tzinfo=UTC) - timedelta(seconds=offset)).astimezone(UTC)
        return local.replace(tzinfo=SITE_TIMEZONE).astimezone(UTC)
    except ValueError:
        raise _error(DATA_TYPE_ERROR, "not a time (YYYYMMDDHHMM[SS][+/-ZZZZ])", seg, f) from None


class Hl7Error(Exception):
    """A message we answer with AE or AR, and the ERR segment's content."""

    def __init__(
        self,
        ack_code: str,
        error: str,
        message: str,
        segment: str = "",
        field_no: int | None = None,
        component: int | None = None,
        sequence: int = 1,
    ) -> None:
        super().__init__(message)
        self.ack_code = ack_code
        self.error = error
        self.message = message
        self.segment = segment
        self.field_no = field_no
        self.component = component
        self.sequence = sequence

    @property
    def where(self) -> str:
        """``PID-3``, ``OBR-31.2``...: the field as hospital interface teams name it."""
        text = self.segment
        if self.field_no is not None:
            text += f"-{self.field_no}"
            if self.component is not None:
                text += f".{self.component}"
        return text


def _rejected(error: str, message: str, segment: str = "", f: int | None = None) -> Hl7Error:
    return Hl7Error("AR", error, message, segment, f)


def _error(error: str, message: str, segment: str, f: int, c: int | None = None) -> Hl7Error:
    return Hl7Error("AE", error, message, segment, f, c)


@dataclass(frozen=True)
class Header:
    """What MSH says: the sender, the message, the control ID."""

    application: str
    facility: str
    message_code: str
    trigger: str
    control_id: str
    charset: str

    @property
    def message_type(self) -> str:
        return f"{self.message_code}^{self.trigger}"


def _text(msg: hl7.Message) -> str:
    return str(msg)


def decode(block: bytes) -> tuple[hl7.Message, str]:
    """One MLLP block to a parsed message and the codec it was read with.

    MSH-18 names the character set; it is read first from a Latin-1 reading of the
    bytes (every byte decodes, and the delimiters are ASCII), then the whole
    message is decoded with the codec it names.
    """
    raw = block.replace(b"\r\n", b"\r").replace(b"\n", b"\r").strip(b"\r\x00 ")
    if not raw.startswith(b"MSH") or len(raw) < 8:
        raise _rejected(SEGMENT_SEQUENCE_ERROR, "the message does not start with MSH", "MSH")
    # MSH-18 read off the bytes: MSH-1 is the byte after "MSH" and separates the
    # fields, so MSH-n is the (n-1)th piece of the first line. The message itself
    # is parsed once, below, with the codec MSH-18 names.
    line = raw.split(b"\r", 1)[0]
    fields = line.split(line[3:4])
    declared = fields[17].decode("latin-1").strip().upper() if len(fields) > 17 else ""
    if not declared:
        try:
            return _parse(raw.decode("utf-8")), "utf-8"
        except UnicodeDecodeError:
            return _parse(raw.decode("latin-1")), "latin-1"
    codec = CHARSETS.get(declared)
    if codec is None:
        raise _rejected(TABLE_VALUE_NOT_FOUND, f"character set {declared} not supported", "MSH", 18)
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        raise _rejected(DATA_TYPE_ERROR, f"the bytes are not {declared}", "MSH", 18) from None
    return _parse(text), codec


#: The delimiters of almost every message: segment, field, repetition, component,
#: subcomponent (python-hl7's order).
STANDARD_SEPARATORS = "\r|~^&"


class _Light:
    """What python-hl7's containers keep of their delimiters, as class attributes.

    python-hl7 builds a container for every field, repetition and component (a short
    order makes 160), and each ``__init__`` climbs three classes to store the same
    four attributes. The containers of :class:`Factory` store them only when they
    differ from the standard ones; for everything else they are python-hl7's own
    classes (``isinstance`` holds), but for one thing: below a message, a slice is a
    plain list, and an index is list indexing without python-hl7's slice check."""

    separator: str
    esc = "\\"
    separators = STANDARD_SEPARATORS
    factory: type[hl7.Factory]
    _level = 0

    def __init__(
        self,
        separator: str | None = None,
        sequence: Any = (),
        esc: str = "\\",
        separators: str = STANDARD_SEPARATORS,
        factory: type[hl7.Factory] | None = None,
    ) -> None:
        list.__init__(self, sequence)  # type: ignore[call-overload]
        if separators != STANDARD_SEPARATORS or esc != "\\":
            self.separator = separators[self._level]
            self.esc = esc
            self.separators = separators
        if factory is not None and factory is not Factory:
            self.factory = factory

    def __str__(self) -> str:
        # python-hl7's join, without its generator.
        return self.separator.join(map(str, self))  # type: ignore[call-overload]


class _Message(_Light, hl7.Message):
    separator = STANDARD_SEPARATORS[0]

    def __str__(self) -> str:
        # A message ends with its segment separator (python-hl7's Message.__str__).
        return _Light.__str__(self) + self.separator


class _Segment(_Light, hl7.Segment):
    separator = STANDARD_SEPARATORS[1]
    _level = 1
    __getitem__ = list.__getitem__  # type: ignore[assignment]
    __str__ = hl7.Segment.__str__  # MSH-1 and MSH-2 written as they are


class _Field(_Light, hl7.Field):
    separator = STANDARD_SEPARATORS[2]
    _level = 2
    __getitem__ = list.__getitem__  # type: ignore[assignment]


class _Repetition(_Light, hl7.Repetition):
    separator = STANDARD_SEPARATORS[3]
    _level = 3
    __getitem__ = list.__getitem__  # type: ignore[assignment]


class _Component(_Light, hl7.Component):
    separator = STANDARD_SEPARATORS[4]
    _level = 4
    __getitem__ = list.__getitem__  # type: ignore[assignment]


class Factory(hl7.Factory):
    """python-hl7's hook for its containers (``hl7.parse(text, factory=...)``): the
    lighter ones of :class:`_Light`. The ACK built on a message uses them too."""

    create_message = _Message
    create_segment = _Segment
    create_field = _Field
    create_repetition = _Repetition
    create_component = _Component


for _kind in (_Message, _Segment, _Field, _Repetition, _Component):
    _kind.factory = Factory


class _Plan(_ParsePlan):
    """python-hl7's parse plan (``hl7.parser``: which container and which delimiter at
    each level), each level made once. python-hl7 makes the plan of the level below
    anew for every part it splits, some 200 for a short order, and works out again at
    every part which delimiters it must look for: that was half of its parse. Its plan
    is made to be subclassed (``next`` builds ``self.__class__``); the tree is its own,
    part for part (tests/interfaces/test_hl7_in.py)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._below: _Plan | None | bool = False
        self._delimiters = self.separators[self.separators.find(self.separator) :]

    def next(self) -> _Plan | None:
        below = self._below
        if below is False:
            below = self._below = super().next()
        return below  # type: ignore[return-value]

    def applies(self, text: str) -> bool:
        for delimiter in self._delimiters:
            if delimiter in text:
                return True
        return False


def _parsed(text: str) -> hl7.Message:
    """``hl7.parse(text, factory=Factory)``, with :class:`_Plan`."""
    text = text.strip()
    plan = create_parse_plan(text, Factory)
    return _split(text, _Plan(plan.separator, plan.separators, plan.containers, plan.esc, Factory))


def _parse(text: str) -> hl7.Message:
    try:
        msg = _parsed(text)
        msg.segment("MSH")
    except Exception:
        raise _rejected(SEGMENT_SEQUENCE_ERROR, "the message cannot be parsed", "MSH") from None
    return msg


def _get(seg: Any, f: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
    """A field's value, stripped, empty when absent: what python-hl7's
    ``seg.extract_field(1, f, rep, comp, sub)`` returns (a path deeper than the
    tree reads its first branch, unescaped but for MSH-1 and MSH-2), read off the
    parsed tree without the accessor that method builds for its error messages,
    and empty where it raises for a missing part."""
    if len(seg) <= f:
        return ""
    value = seg[f]
    if len(value) < rep:
        return ""
    value = value[rep - 1]
    if isinstance(value, hl7.Repetition):
        if comp > len(value):
            return ""
        value = value[comp - 1]
        if isinstance(value, hl7.Component):
            if sub > len(value):
                return ""
            value = value[sub - 1]
        elif sub != 1:
            return ""
    elif comp != 1 or sub != 1:
        return ""
    elif f in (1, 2) and seg[0][0] == "MSH":
        return str(value).strip()
    text = str(value)
    if seg.esc in text:
        try:
            text = unescape(seg, text)
        except (IndexError, KeyError, ValueError):
            return ""
    return text.strip()


def _reps(seg: Any, f: int) -> list[Any]:
    """The repetitions of a field (a field that does not repeat is one)."""
    if len(seg) <= f:
        return []
    value = seg[f]
    if isinstance(value, hl7.Field) and value and isinstance(value[0], hl7.Repetition):
        return list(value)
    return [value]


def _comp(rep: Any, comp: int, sub: int = 1) -> str:
    """Component ``comp`` (1-based) of one repetition."""
    if isinstance(rep, str):
        return rep.strip() if comp == 1 and sub == 1 else ""
    if comp > len(rep):
        return ""
    value = rep[comp - 1]
    if isinstance(value, str):
        return value.strip() if sub == 1 else ""
    if sub > len(value):
        return ""
    return str(value[sub - 1]).strip()


def header(msg: hl7.Message, codec: str) -> Header:
    """MSH, checked: a message we cannot place or answer is rejected (AR)."""
    for index, seg in enumerate(msg, start=1):
        name = str(seg[0]).strip()
        if not _SEGMENT_ID.match(name):
            err = Hl7Error("AR", SEGMENT_SEQUENCE_ERROR, f"segment {index} has no valid name")
            err.segment, err.sequence = name[:3], index
            raise err
    msh = msg.segment("MSH")
    control_id = _get(msh, 10)
    if not control_id:
        raise _rejected(REQUIRED_FIELD_MISSING, "no message control ID", "MSH", 10)
    version = _get(msh, 12)
    if not version.startswith("2."):
        raise _rejected(UNSUPPORTED_VERSION_ID, f"version {version or '(none)'}", "MSH", 12)
    code, trigger = _get(msh, 9, 1, 1), _get(msh, 9, 1, 2)
    if not code:
        raise _rejected(REQUIRED_FIELD_MISSING, "no message type", "MSH", 9)
    return Header(
        application=_get(msh, 3),
        facility=_get(msh, 4),
        message_code=code,
        trigger=trigger,
        control_id=control_id[:199],
        charset=codec,
    )


def supported(head: Header) -> None:
    """The message types we apply; AR for any other (docs/hl7.md "Messages")."""
    if head.message_code == "ADT":
        if head.trigger not in ADT_EVENTS:
            raise _rejected(UNSUPPORTED_EVENT_CODE, f"ADT^{head.trigger} is not read", "MSH", 9)
        return
    if (head.message_code, head.trigger) in ORDER_TYPES:
        return
    raise _rejected(UNSUPPORTED_MESSAGE_TYPE, f"{head.message_type} is not read", "MSH", 9)


def _segment(msg: hl7.Message, name: str) -> Any:
    try:
        return msg.segment(name)
    except KeyError:
        raise Hl7Error("AE", SEGMENT_SEQUENCE_ERROR, f"no {name} segment", name) from None


def _date(value: str, seg: str, f: int) -> date:
    try:
        return datetime.strptime(value[:8], "%Y%m%d").date()
    except ValueError:
        raise _error(DATA_TYPE_ERROR, "not a date (YYYYMMDD)", seg, f) from None


def _identifiers(seg: Any, f: int) -> list[tuple[str, str, str]]:
    """The CX repetitions of a field as (id, authority OID or namespace, type code)."""
    found = []
    for rep in _reps(seg, f):
        value = _comp(rep, 1)
        if not value:
            continue
        authority = _comp(rep, 4, 2) or _comp(rep, 4, 1)
        found.append((value, authority, _comp(rep, 5).upper()))
    return found


def local_id(seg: Any, f: int, name: str) -> str:
    """The local identifier (IPP) among a CX list: type ``PI``, else the first that
    is not an INS."""
    return _local(_identifiers(seg, f), name, f)


def _local(ids: list[tuple[str, str, str]], name: str, f: int) -> str:
    for value, _auth, kind in ids:
        if kind == "PI":
            return value
    for value, auth, kind in ids:
        if kind != "INS" and auth not in INS_OIDS:
            return value
    raise _error(REQUIRED_FIELD_MISSING, "no local patient identifier (type PI)", name, f)


def patient(msg: hl7.Message) -> Traits:
    """PID as the IHE PAM national extension for France fills it: PID-3 carries the
    IPP (type PI) and the INS (type INS, authority the INS OID); PID-5 the birth
    name (type L) and the used name (type D); PID-32 the identity status."""
    pid = _segment(msg, "PID")
    ids = _identifiers(pid, 3)
    ipp = _local(ids, "PID", 3)
    ins = oid = None
    for value, auth, kind in ids:
        if kind == "INS" or auth in INS_OIDS:
            ins, oid = value, auth
    birth_name = first_names = ""
    used_name = used_first = None
    for rep in _reps(pid, 5):
        kind = _comp(rep, 7).upper()
        if kind in ("L", "") and not birth_name:
            birth_name = _comp(rep, 1, 1)
            # The list of birth first names goes in XPN-3 when there are several.
            given, more = _comp(rep, 2), _comp(rep, 3)
            first_names = more or given
            if more and given and not more.startswith(given):
                first_names = f"{given} {more}"
        elif kind == "D":
            used_name = _comp(rep, 1, 1) or None
            used_first = _comp(rep, 2) or None
    if not birth_name:
        raise _error(REQUIRED_FIELD_MISSING, "no birth name (PID-5 type L)", "PID", 5, 1)
    if not first_names:
        raise _error(REQUIRED_FIELD_MISSING, "no first name", "PID", 5, 2)
    raw_birth = _get(pid, 7)
    if not raw_birth:
        raise _error(REQUIRED_FIELD_MISSING, "no birth date", "PID", 7)
    sex = _get(pid, 8).upper() or "U"
    if sex not in ("M", "F", "U", "O", "A", "N"):
        raise _error(TABLE_VALUE_NOT_FOUND, f"sex {sex} is not in table 0001", "PID", 8)
    place = None
    for rep in _reps(pid, 11):
        if _comp(rep, 7).upper() == "BDL":
            place = _comp(rep, 9) or None
    status = IdentityStatus.PROVISIONAL
    for rep in _reps(pid, 32):
        code = _comp(rep, 1).upper()
        if code in PID32_STATUS:
            status = PID32_STATUS[code]
    return Traits(
        ipp=ipp,
        birth_name=birth_name,
        first_names=first_names,
        sex=sex if sex in ("M", "F") else "U",
        birth_date=_date(raw_birth, "PID", 7),
        status=status,
        ins=ins,
        ins_oid=oid,
        used_name=used_name,
        used_first_name=used_first,
        birthplace_code=place,
    )


def prior_id(msg: hl7.Message) -> str:
    """MRG-1: the identifier merged away (A40) or replaced (A47)."""
    return local_id(_segment(msg, "MRG"), 1, "MRG")


@dataclass
class Order:
    """What ORC, OBR (and OMI's IPC, the OBX we know) say of an imaging order."""

    control: str
    placer_number: str
    modality: str | None = None
    body_part: str | None = None
    clinical_question: str | None = None
    urgency: str | None = None
    consent: bool = False
    contraindications: str | None = None
    ordering_provider: str | None = None
    # A stroke alert (docs/hl7.md "Stroke orders"): witnessed, last_seen_well or unknown.
    stroke_kind: str | None = None
    stroke_onset_at: datetime | None = None
    missing: list[str] = field(default_factory=list)


def order(msg: hl7.Message) -> Order:
    """ORC-1 ``NW`` or ``CA``, ORC-2 the placer order number, ORC-12 the ordering
    provider (XCN-1: the RPPS), OBR-4 the procedure, OBR-24 (or IPC-5) the modality,
    OBR-31 the reason for study (the clinical question), TQ1-9 / ORC-7.6 / OBR-27.6
    the priority; OBX ``CONSENT`` (Y/N) and ``CONTRA`` (text) beside them."""
    orc = _segment(msg, "ORC")
    control = _get(orc, 1).upper()
    if control not in ("NW", "CA"):
        raise _error(TABLE_VALUE_NOT_FOUND, f"order control {control or '(none)'}", "ORC", 1)
    placer = _get(orc, 2) or ""
    try:
        obr = msg.segment("OBR")
    except KeyError:
        obr = None
    if not placer and obr is not None:
        placer = _get(obr, 2)
    if not placer:
        raise _error(REQUIRED_FIELD_MISSING, "no placer order number", "ORC", 2)
    result = Order(control=control, placer_number=placer[:64])
    if control == "CA":
        return result
    if obr is None:
        raise Hl7Error("AE", SEGMENT_SEQUENCE_ERROR, "no OBR segment", "OBR")
    result.ordering_provider = _get(orc, 12) or _get(obr, 16) or None
    modality = _get(obr, 24).upper()
    try:
        modality = modality or _get(msg.segment("IPC"), 5).upper()
    except KeyError:
        pass
    if modality and modality not in MODALITIES:
        raise _error(
            TABLE_VALUE_NOT_FOUND, f"modality {modality}: we read CT, MR, CR, DX", "OBR", 24
        )
    result.modality = modality or None
    result.body_part = (_get(obr, 4, 1, 2) or _get(obr, 4, 1, 1))[:64] or None
    coded = [(_comp(rep, 1), _comp(rep, 2)) for rep in _reps(obr, 31)]
    reasons = [text or code for code, text in coded]
    stroke = any(_stroke_reason(code) for code, _text in coded)
    question = "; ".join(r for r in reasons if r) or _get(obr, 13)
    result.clinical_question = question[:4000] or None
    priority = ""
    try:
        priority = _get(msg.segment("TQ1"), 9)
    except KeyError:
        pass
    priority = (priority or _get(orc, 7, 1, 6) or _get(obr, 27, 1, 6)).upper()
    result.urgency = PRIORITIES.get(priority)
    try:
        observations = list(msg.segments("OBX"))
    except KeyError:
        observations = []
    for obx in observations:
        code = _get(obx, 3).upper()
        if code == "CONSENT":
            result.consent = _get(obx, 5).upper() in _YES
        elif code == "CONTRA":
            result.contraindications = _get(obx, 5)[:2000] or None
        elif stroke and code in ONSET_CODES and _get(obx, 5):
            result.stroke_onset_at = _timestamp(_get(obx, 5), "OBX", 5)
            result.stroke_kind = ONSET_CODES[code]
    if stroke and result.urgency == "emergency":
        # No time in the order: the alert is raised all the same, its onset unknown.
        result.stroke_kind = result.stroke_kind or "unknown"
    else:
        result.stroke_kind, result.stroke_onset_at = None, None
    for name, value in (
        ("modality", result.modality),
        ("body_part", result.body_part),
        ("clinical_question", result.clinical_question),
        ("urgency", result.urgency),
        ("consent", result.consent or None),
    ):
        if not value:
            result.missing.append(name)
    return result


def ack(
    msg: hl7.Message | None,
    code: str,
    error: Hl7Error | None = None,
    warnings: list[tuple[str, str, str]] | None = None,
) -> str:
    """The acknowledgement (HL7 v2.5 2.9.2, original mode): MSA-1 ``code``, MSA-2 the
    received MSH-10, and an ERR segment per problem: ERR-2 where, ERR-3 the code of
    table 0357, ERR-4 the severity (E, or W for ``warnings``), ERR-8 the text."""
    reply = _answering(msg).create_ack(code, message_id=generate_message_control_id())
    msh = reply.segment("MSH")
    if len(msh) <= 12:
        msh.append(reply.create_field([""]))
    msh.assign_field("2.5", 12)
    if error is not None:
        reply.segment("MSA").assign_field(error.message[:80], 3)
        reply.append(
            _err(
                reply,
                error.segment,
                error.sequence,
                error.field_no,
                error.component,
                error.error,
                "E",
                error.message,
            )
        )
    for where, err_code, text in warnings or []:
        segment, _, f = where.partition("-")
        reply.append(_err(reply, segment, 1, int(f) if f else None, None, err_code, "W", text))
    return _text(reply)


def _answering(msg: hl7.Message | None) -> hl7.Message:
    """The message whose MSH an ACK answers: the message itself when its MSH is
    complete (:func:`_complete`), else an MSH rebuilt from it (:func:`_rebuilt`)."""
    if msg is not None and _complete(msg):
        return msg
    return _rebuilt(msg)


def _complete(msg: hl7.Message) -> bool:
    """Whether python-hl7's ``create_ack`` can read the message's own MSH and write
    what it would from :func:`_rebuilt` (the common case, without parsing a second
    MSH): the standard delimiters and escape, MSH-3 to MSH-12 present, MSH-11 and
    MSH-9's trigger filled, the trigger without spaces or delimiters."""
    if msg.separators != "\r|~^&" or msg.esc != "\\":
        return False
    try:
        msh = msg.segment("MSH")
        if len(msh) <= 12 or not str(msh[11]):
            return False
        trigger = str(msh(9)(1)(2))
    except (KeyError, IndexError, TypeError, ValueError):
        return False
    return bool(trigger) and trigger == _clean(_get(msh, 9, 1, 2))


def _rebuilt(msg: hl7.Message | None) -> hl7.Message:
    """The MSH an ACK answers, complete: python-hl7's ``create_ack`` reads MSH-3 to
    MSH-12 and MSH-9's trigger, which a malformed message may lack. Without an MSH at
    all the control ID stays empty."""
    values = [""] * 12
    if msg is not None:
        try:
            msh = msg.segment("MSH")
        except KeyError:
            msh = None
        if msh is not None:
            for n in (3, 4, 5, 6, 10, 11):
                raw = str(msh[n]) if len(msh) > n else ""
                values[n - 1] = _clean(raw) if msg.separators[1:] != "|~^&" else raw
            values[8] = f"ACK^{_clean(_get(msh, 9, 1, 2))}"
    values[0], values[1] = "MSH", "^~\\&"
    values[8] = values[8] or "ACK^"
    values[10] = values[10] or "P"
    values[11] = "2.5"
    return hl7.parse("|".join(values) + "\r")


def _err(
    reply: hl7.Message,
    segment: str,
    sequence: int,
    field_no: int | None,
    component: int | None,
    code: str,
    severity: str,
    text: str,
) -> Any:
    err = reply.create_segment([reply.create_field(["ERR"])])
    err.assign_field("", 1)
    if segment:
        err.assign_field(segment, 2, 1, 1)
        err.assign_field(str(sequence), 2, 1, 2)
        if field_no is not None:
            err.assign_field(str(field_no), 2, 1, 3)
        if component is not None:
            err.assign_field("1", 2, 1, 4)
            err.assign_field(str(component), 2, 1, 5)
    err.assign_field(code, 3, 1, 1)
    err.assign_field(ERROR_TEXT.get(code, ""), 3, 1, 2)
    err.assign_field("HL70357", 3, 1, 3)
    err.assign_field(severity, 4)
    err.assign_field(_clean(text), 8)
    return err


def _clean(text: str) -> str:
    """Our own error text, kept free of HL7 delimiters."""
    return re.sub(r"[|^~\\&\r\n]", " ", text)[:250]
