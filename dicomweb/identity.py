"""The patient's current identity on the way out (docs/dicomweb.md "Identity on the way
out").

Stored files are written once and never changed (dicomweb/storage.py). When the
identity of a study's patient is corrected after its instances were stored (a merge,
a new identifier, an update from the hospital's patient record system), the server
writes the new values into the study's index row and sets
``dicomweb_studies.identity_corrected_at``, in the transaction of that correction.
From then on every path that hands out one of its instances or their metadata reads
that row in the same query as the instances and gives the row's identity: the
values the instance holds are replaced, and kept in an item of Original Attributes
Sequence (0400,0561), PS3.3 C.12.1, with the reason ``CORRECT``. The pixel data is
copied as stored, byte for byte.

:func:`modify` is the one way this archive changes attributes of an instance and
keeps the originals; filing's coercion (reason ``COERCE``) uses it too.
"""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydicom import Dataset, dcmread
from pydicom.charset import convert_encodings, python_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import DeflatedExplicitVRLittleEndian

from dicomweb import tables as t
from dicomweb.fastread import IMPLICIT_LE, LENGTH_32, TRANSFER_SYNTAX_UID, Unsupported, walk

MODIFYING_SYSTEM = "TELEIMAGERIE"
#: PS3.3 C.12.1.1.9.1 defined terms of Reason for the Attribute Modification.
COERCE = "COERCE"
CORRECT = "CORRECT"

PATIENT = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex")
#: What qualifies a PatientID (its issuer, the other identifiers such as the INS): once
#: the PatientID is replaced they describe another identifier, so they are removed
#: (and kept in the original attributes item) rather than left beside the new one.
QUALIFIERS = (
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "OtherPatientIDsSequence",
)
_ORIGINALS = "04000561"
_JSON_TAGS = tuple(f"{tag_for_keyword(k):08X}" for k in (*PATIENT, *QUALIFIERS))

#: The study row's columns a handler selects beside its instance columns.
COLUMNS = (
    t.studies.c.patient_id,
    t.studies.c.patient_name,
    t.studies.c.patient_birth_date,
    t.studies.c.patient_sex,
    t.studies.c.identity_corrected_at,
)


@dataclass(frozen=True)
class Correction:
    """The identity a study's instances are handed out with, and when it was set
    (DICOM DT, the AttributeModificationDateTime of the item written)."""

    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    at: str

    def attributes(self) -> dict[str, str]:
        """The values by keyword, in the order of :data:`PATIENT`."""
        values = (self.patient_id, self.patient_name, self.patient_birth_date, self.patient_sex)
        return dict(zip(PATIENT, values, strict=True))


def correction_of(row: Any) -> Correction | None:
    """The correction a row selected with :data:`COLUMNS` asks for; None when the
    study's identity is the one its instances were stored with."""
    if row.identity_corrected_at is None:
        return None
    return Correction(
        row.patient_id,
        row.patient_name,
        row.patient_birth_date,
        row.patient_sex,
        row.identity_corrected_at,
    )


def _fit_charset(ds: Dataset, values: Iterable[str]) -> None:
    """Declare UTF-8 (ISO_IR 192) when a new value cannot be written in the
    dataset's character set (PS3.5 6.1.2.3); pydicom re-encodes every text."""
    text = "".join(values)
    if text.isascii():
        return
    declared = ds.get("SpecificCharacterSet") or ""
    terms = list(declared) if not isinstance(declared, str) else [declared]
    # No character set declared is ISO_IR 6, ASCII only (pydicom would write Latin-1).
    if len(terms) == 1 and terms[0] and terms[0] in python_encoding:
        try:
            text.encode(python_encoding[terms[0]])
            return
        except UnicodeEncodeError:
            pass
    ds.SpecificCharacterSet = "ISO_IR 192"


def modify(
    ds: Dataset,
    values: Mapping[str, str],
    at: str,
    reason: str,
    remove: Iterable[str] = (),
) -> bool:
    """Set ``values`` and remove ``remove`` (keywords) in ``ds``, keeping what was
    there in a new item of Original Attributes Sequence (PS3.3 C.12.1: an attribute
    that was absent is listed with no value, C.12.1.1.9.2); whether anything changed.
    Values already equal are left alone."""
    modified = Dataset()
    changed = {}
    for keyword, value in values.items():
        current = ds.get(keyword)
        if keyword in ds and str(current if current is not None else "") == value:
            continue
        if keyword in ds:
            modified.add(DataElement(ds[keyword].tag, ds[keyword].VR, ds[keyword].value))
        else:
            modified.add_new(keyword, dictionary_VR(keyword), None)
        changed[keyword] = value
    gone = [k for k in remove if k in ds]
    if not changed and not gone:
        return False
    for keyword in gone:
        modified.add(DataElement(ds[keyword].tag, ds[keyword].VR, ds[keyword].value))
        delattr(ds, keyword)
    _fit_charset(ds, changed.values())
    for keyword, value in changed.items():
        setattr(ds, keyword, value)
    item = Dataset()
    item.ModifiedAttributesSequence = Sequence([modified])
    item.AttributeModificationDateTime = at
    item.ModifyingSystem = MODIFYING_SYSTEM
    item.SourceOfPreviousValues = ""
    item.ReasonForTheAttributeModification = reason
    originals = ds.get("OriginalAttributesSequence")
    ds.OriginalAttributesSequence = Sequence([*(originals or []), item])
    return True


def correct_dataset(ds: Dataset, correction: Correction) -> bool:
    """Give ``ds`` the corrected identity (its qualifiers go when the PatientID
    changes); whether anything changed."""
    new_id = "PatientID" not in ds or str(ds.PatientID) != correction.patient_id
    remove = QUALIFIERS if new_id else ()
    return modify(ds, correction.attributes(), correction.at, CORRECT, remove)


def correct_part10(data: bytes, correction: Correction) -> bytes | None:
    """``data`` (Part 10) with the corrected identity, or None when it holds it
    already: :func:`corrected_head` and the stored bytes after it. What that fast
    path does not handle (no preamble, a deflated or big endian data set, a new
    character set) is read and written whole by pydicom, the pixel data still
    copied as stored. Blocking."""
    try:
        found = corrected_head(data, correction)
    except Unsupported:
        return _rewritten(data, correction)
    if found is None:
        return None
    head, rest = found
    return head + data[rest:]


def _rewritten(data: bytes, correction: Correction) -> bytes | None:
    source = io.BytesIO(data)
    ds = dcmread(source, stop_before_pixels=True)
    tail = data[source.tell() :]
    if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        ds, tail = dcmread(io.BytesIO(data)), b""
    if not correct_dataset(ds, correction):
        return None
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue() + tail


_PATIENT_GROUP = (0x00100000, 0x00110000)
_ORIGINALS_TAG = 0x04000561
_CHARSET_TAG = BaseTag(0x00080005)


def corrected_head(buf: Any, correction: Correction) -> tuple[bytes, int] | None:
    """The head of a stored file (bytes or an mmap) with the corrected identity, and
    the offset in ``buf`` from which the stored bytes follow it unchanged; None when
    it holds the identity already. The top-level elements are located by
    ``dicomweb.fastread`` (little endian, not deflated); the patient's group (0010)
    and Original Attributes Sequence are read into a small data set, corrected,
    encoded in the file's transfer syntax and put in place of theirs. Raises
    ``Unsupported`` for the rest. Blocking."""
    meta, elements, pixel = walk(buf)
    syntax = bytes(meta[TRANSFER_SYNTAX_UID].value or b"").rstrip(b"\0 ").decode()
    implicit = syntax == IMPLICIT_LE
    low, high = _PATIENT_GROUP
    spans = [(int(tag), *_span(e, implicit)) for tag, e in elements.items()]
    ours: dict[BaseTag, DataElement | RawDataElement] = {
        t: e for t, e in elements.items() if low <= int(t) < high or int(t) == _ORIGINALS_TAG
    }
    if _CHARSET_TAG in elements:
        ours[_CHARSET_TAG] = elements[_CHARSET_TAG]
    ds = Dataset(ours)
    charset = ds.get("SpecificCharacterSet")
    encoding = convert_encodings(charset or "ISO_IR 6")
    ds.set_original_encoding(implicit, True, encoding)
    if not correct_dataset(ds, correction):
        return None
    if ds.get("SpecificCharacterSet") != charset:
        raise Unsupported("the character set changes: every text is encoded again")
    patient = Dataset({t: ds[t] for t in ds.keys() if low <= int(t) < high and t.element != 0})
    originals = Dataset({ds["OriginalAttributesSequence"].tag: ds["OriginalAttributesSequence"]})
    a, b = _range(spans, low, high, pixel)
    c, d = _range(spans, _ORIGINALS_TAG, _ORIGINALS_TAG + 1, pixel)
    head = b"".join(
        (
            bytes(buf[:a]),
            _encode(patient, implicit, encoding),
            bytes(buf[b:c]),
            _encode(originals, implicit, encoding),
        )
    )
    return head, d


def _span(e: RawDataElement, implicit: bool) -> tuple[int, int]:
    """Where a top-level element read by ``walk`` starts and ends in the file."""
    head = 8 if implicit or (e.VR or "").encode() not in LENGTH_32 else 12
    size = len(e.value or b"") if e.length == 0xFFFFFFFF else e.length
    return e.value_tell - head, e.value_tell + size


def _range(spans: list[tuple[int, int, int]], low: int, high: int, end: int) -> tuple[int, int]:
    """The bytes of the elements with tags in [low, high), or the empty range where
    they would go."""
    inside = [(start, stop) for tag, start, stop in spans if low <= tag < high]
    if inside:
        return inside[0][0], inside[-1][1]
    after = next((start for tag, start, _ in spans if tag >= high), end)
    return after, after


def _encode(ds: Dataset, implicit: bool, encoding: Any) -> bytes:
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = implicit
    write_dataset(out, ds, encoding)
    return out.getvalue()


def correct_metadata(text: str, correction: Correction) -> str:
    """One instance's stored DICOM JSON (PS3.18 F.2) with the corrected identity,
    as :func:`correct_part10` gives the instance."""
    meta: dict[str, Any] = json.loads(text)
    part = {k: meta[k] for k in (*_JSON_TAGS, _ORIGINALS) if k in meta}
    ds = Dataset.from_json(part)
    if not correct_dataset(ds, correction):
        return text
    for key in part:
        meta.pop(key)
    meta.update(ds.to_json_dict())
    return json.dumps(dict(sorted(meta.items())), ensure_ascii=False, separators=(",", ":"))


T = TypeVar("T")


def _weight(value: Any) -> int:
    """About what an answer holds in memory: its bytes and texts."""
    if isinstance(value, (bytes, str)):
        return 64 + len(value)
    if isinstance(value, (list, tuple)):
        return 64 + sum(_weight(v) for v in value if isinstance(v, (bytes, str)))
    return 64


class Corrected:
    """What the corrections of this process gave, by instance and correction: the
    head of a file and its offset, or the DICOM JSON. The key holds the correction
    itself (the identity and its date, read in the request's query), so a later
    correction never finds an earlier answer; stored files never change. Bounded
    to ``size`` bytes, least recently used first out. Shared by the worker threads."""

    def __init__(self, size: int = 64 * 1024 * 1024) -> None:
        self.size = size
        self.weight = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                value: T = found[0]
                return value
        value = make()
        weight = _weight(value)
        with self._lock:
            if key not in self._items:
                self._items[key] = (value, weight)
                self.weight += weight
            while self.weight > self.size and self._items:
                _, (_, w) = self._items.popitem(last=False)
                self.weight -= w
        return value
