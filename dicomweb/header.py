"""Read what the archive keeps of a Part-10 file, parsing it once (PS3.10 7.1).

``read_header`` validates the file meta and the identifying UIDs, reads the data
set up to the pixel data without decoding it, locates every frame's bytes in the
file (PS3.5 A.4 for encapsulated pixel data) and builds the DICOM JSON
(PS3.18 Annex F) with bulk data replaced by BulkDataURIs.
"""

from __future__ import annotations

import functools
import io
import json
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import Dataset, config, dcmread
from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import UID

from dicomweb.dicomjson import SPECIFIC_CHARACTER_SET, json_members, to_json_dict
from dicomweb.fastread import IMPLICIT_LE, TRANSFER_SYNTAX_UID, Elements, Unsupported, walk
from dicomweb.types import InstanceAttrs

# An archive keeps what modalities send: values that break a VR's rules are stored
# as they are, not warned about per element (the UIDs that matter are checked below).
# pydicom has no per-call switch, so this is process-wide; documented in docs/dicomweb.md.
config.settings.reading_validation_mode = config.IGNORE

#: Replaced at response time by the archive's base URL (public URL or mount path).
BASE = "@@DICOMWEB_BASE@@"
BULK_THRESHOLD = 1024

PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
KNOWN_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}

STUDY_TAGS = {
    0x00080020,
    0x00080030,
    0x00080050,
    0x00080051,
    0x00080090,
    0x00081030,
    0x00081032,
    0x00081060,
    0x00200010,
    0x0020000D,
    0x00080005,
    0x00080201,
    0x00321032,
    0x00321060,
}
SERIES_TAGS = {
    0x00080060,
    0x0020000E,
    0x00200011,
    0x0008103E,
    0x00180015,
    0x00080021,
    0x00080031,
    0x00081050,
    0x00181030,
    0x00081070,
    0x00200060,
    0x00400244,
    0x00400245,
    0x00400275,
    0x00080070,
    0x00081090,
    0x00081010,
    0x00080080,
    0x00200052,
    0x00080005,
}


class HeaderError(Exception):
    """The bytes are not an archivable DICOM instance; ``reason`` is a FailureReason."""

    def __init__(self, reason: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Located:
    """An instance's identity and where its frames are in its file."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    frames: list[list[tuple[int, int]]] | None
    pixel_end: int


@dataclass
class Header(Located):
    """What ingest keeps of a file; ``dataset`` is pydicom's (no pixel data),
    its elements converted only when asked for."""

    dataset: Dataset = field(repr=False)
    #: the elements as read (``fastread``), before pydicom converted any of them
    raw: Elements | None = field(default=None, repr=False)

    def text(self, key: str) -> str:
        value = _Values(self.dataset, self.raw).get(key)
        if value is None:
            return ""
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            return "\\".join(str(v) for v in value)
        return str(value)

    def integer(self, key: str) -> int | None:
        value = _Values(self.dataset, self.raw).get(key)
        try:
            return int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    def summary(self) -> Summary:
        """What ingest keeps of this header once it is read (``Summary``)."""
        values: dict[str, str | int | None] = {k: self.text(k) for k in SUMMARY_TEXT}
        values.update((k, self.integer(k)) for k in SUMMARY_INTEGERS)
        return Summary(
            self.study_uid,
            self.series_uid,
            self.sop_uid,
            self.sop_class_uid,
            self.transfer_syntax_uid,
            self.frames,
            self.pixel_end,
            values,
        )


#: The attributes ingest reads of a header after staging: the index's columns
#: and what ``Access.authorize_store`` is given (dicomweb/index.py, ingest.py).
SUMMARY_TEXT = (
    "AccessionNumber",
    "BodyPartExamined",
    "Modality",
    "PatientBirthDate",
    "PatientID",
    "PatientName",
    "PatientSex",
    "ReferringPhysicianName",
    "SeriesDate",
    "SeriesDescription",
    "SeriesTime",
    "StudyDate",
    "StudyDescription",
    "StudyID",
    "StudyTime",
)
SUMMARY_INTEGERS = ("Columns", "InstanceNumber", "NumberOfFrames", "Rows", "SeriesNumber")


@dataclass
class Summary(Located):
    """A header reduced to what ingest needs once the file is staged: no pydicom
    dataset, small and picklable (the header reader process sends it back).
    ``text`` and ``integer`` answer for the keywords of ``SUMMARY_TEXT`` and
    ``SUMMARY_INTEGERS`` as ``Header``'s do; any other keyword is a KeyError."""

    values: dict[str, str | int | None] = field(repr=False)

    def text(self, key: str) -> str:
        value = self.values[key]
        return value if isinstance(value, str) else ""

    def integer(self, key: str) -> int | None:
        value = self.values[key]
        return value if isinstance(value, int) else None


_PLAIN_VRS = frozenset(("AE", "AS", "CS", "DA", "LO", "PN", "SH", "TM", "UI"))


@functools.lru_cache(maxsize=512)
def _tag_vr(keyword: str) -> tuple[BaseTag, str] | None:
    tag = tag_for_keyword(keyword)
    return None if tag is None else (BaseTag(tag), str(dictionary_VR(tag)))


class _Values:
    """``ds.get(keyword)`` for the few attributes ingest reads, decoded straight
    from the raw element when it is plain (one printable ASCII value, a US, a
    decimal IS): what pydicom's conversion would give, without it. Anything else
    is asked of ``ds``."""

    def __init__(self, ds: Dataset, raw: Elements | None) -> None:
        self.ds, self.raw = ds, raw

    def __contains__(self, keyword: str) -> bool:
        return keyword in self.ds

    def get(self, keyword: str, default: Any = None) -> Any:
        known = _tag_vr(keyword) if self.raw is not None else None
        if known is not None:
            assert self.raw is not None
            tag, vr = known
            elem = self.raw.get(tag)
            if elem is None:
                return default
            value = elem.value
            vr = elem.VR or vr
            if isinstance(value, bytes):
                if vr == "US" and len(value) == 2:
                    return int.from_bytes(value, "little")
                if vr in _PLAIN_VRS or vr == "IS":
                    try:
                        text = value.decode("ascii").rstrip("\0 ")
                    except UnicodeDecodeError:
                        text = None
                    if text is not None and text.isprintable() and "\\" not in text:
                        if vr != "IS":
                            return text
                        number = text.strip()
                        if number.isdigit():
                            return int(number)
        return self.ds.get(keyword, default)


def _uid(ds: Dataset | _Values, keyword: str) -> str:
    value = ds.get(keyword)
    if not value:
        raise HeaderError(0xA900 if keyword != "SOPClassUID" else 0xC000, f"{keyword} missing")
    uid = UID(str(value))
    if not uid.is_valid:
        raise HeaderError(0xC000, f"{keyword} is not a valid UID: {str(value)[:70]!r}")
    return str(uid)


def read_path(path: Path) -> Header:
    """``read_header`` of a file, walked through an mmap when ``fastread`` can."""
    with path.open("rb") as fp:
        size = path.stat().st_size
        if size >= 132:
            with mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                try:
                    return _fast(mm)
                except Unsupported:
                    pass
        fp.seek(0)
        return _pydicom(fp, size)


def read_header(fp: BinaryIO, size: int) -> Header:
    """Parse a Part-10 file from ``fp`` (positioned at 0); never decodes pixels."""
    if isinstance(fp, io.BytesIO):
        try:
            return _fast(fp.getvalue())
        except Unsupported:
            pass
    return _pydicom(fp, size)


def _fast(buf: Any) -> Header:
    """The header from one ``fastread.walk``; Unsupported when it cannot."""
    meta, raw, pixel_pos = walk(buf)
    ts = bytes(meta[TRANSFER_SYNTAX_UID].value or b"").decode("ascii").rstrip("\0 ")
    ds = Dataset(dict(raw))  # as pydicom's read_dataset builds it
    charset = raw.get(SPECIFIC_CHARACTER_SET)
    encoding = (
        convert_encodings(convert_raw_data_element(charset).value)
        if charset is not None
        else "iso8859"
    )
    ds.set_original_encoding(ts == IMPLICIT_LE, True, encoding)
    ds.file_meta = FileMetaDataset(Dataset(dict(meta)))
    return _check(ds, ts, _Reader(buf), pixel_pos, len(buf), raw)


class _Reader:
    """seek/read/tell over a buffer, for ``_locate_frames``."""

    def __init__(self, buf: Any) -> None:
        self.buf, self.pos = buf, 0

    def seek(self, pos: int, whence: int = 0) -> None:
        self.pos = pos if whence == 0 else self.pos + pos

    def read(self, n: int) -> bytes:
        data = bytes(self.buf[self.pos : self.pos + n])
        self.pos += len(data)
        return data


def _pydicom(fp: BinaryIO, size: int) -> Header:
    preamble = fp.read(132)
    if len(preamble) < 132 or preamble[128:132] != b"DICM":
        raise HeaderError(0xC000, "not a DICOM Part-10 file (no preamble and DICM prefix)")
    fp.seek(0)
    try:
        ds = dcmread(fp, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, ValueError, KeyError, struct.error, OSError) as exc:
        raise HeaderError(0xC000, f"cannot parse the DICOM header: {exc}") from exc
    pixel_pos = fp.tell()
    ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
    return _check(ds, ts, fp, pixel_pos, size, None)


def _check(
    ds: Dataset,
    ts: str,
    fp: Any,
    pixel_pos: int,
    size: int,
    raw: Elements | None,
) -> Header:
    if not ts:
        raise HeaderError(0xC000, "file meta has no TransferSyntaxUID")
    ts_uid = UID(ts)
    if not ts_uid.is_transfer_syntax and ts not in KNOWN_NATIVE:
        raise HeaderError(0xC000, f"unknown transfer syntax {ts}")
    if ts_uid.is_deflated:
        frames = None
        pixel_end = size
    else:
        try:
            frames, pixel_end = _locate_frames(fp, _Values(ds, raw), ts_uid, pixel_pos, size)
        except (ValueError, TypeError, struct.error) as exc:  # e.g. NumberOfFrames "1A"
            raise HeaderError(0xC000, f"cannot locate the frames: {exc}") from exc
    if frames is None and pixel_end < size:
        raise HeaderError(0xC000, "file truncated: bytes left after the last element")
    values = _Values(ds, raw)
    sop_class = _uid(values, "SOPClassUID")
    if (
        frames is None
        and not ts_uid.is_deflated
        and ("Rows" in ds or "Image Storage" in UID(sop_class).name)
    ):
        raise HeaderError(0xC000, "image without pixel data: the file is truncated")
    return Header(
        dataset=ds,
        raw=raw,
        study_uid=_uid(values, "StudyInstanceUID"),
        series_uid=_uid(values, "SeriesInstanceUID"),
        sop_uid=_uid(values, "SOPInstanceUID"),
        sop_class_uid=sop_class,
        transfer_syntax_uid=ts,
        frames=frames,
        pixel_end=pixel_end,
    )


def _locate_frames(
    fp: Any, ds: Dataset | _Values, ts: UID, pos: int, size: int
) -> tuple[list[list[tuple[int, int]]] | None, int]:
    """Byte ranges of each frame: contiguous for native pixel data, the fragments of
    each frame for encapsulated data (PS3.5 A.4, Basic Offset Table)."""
    fp.seek(pos)
    head = fp.read(12)
    if 0 < len(head) < 8:
        raise HeaderError(0xC000, "file truncated inside an element header")
    if not head:
        return None, pos
    endian = "<" if ts.is_little_endian else ">"
    group, elem = struct.unpack(endian + "HH", head[:4])
    if (group << 16 | elem) not in PIXEL_TAGS:
        return None, pos
    if ts.is_implicit_VR:
        (length,) = struct.unpack(endian + "I", head[4:8])
        value_pos = pos + 8
    elif head[4:6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"UN", b"OV"):
        (length,) = struct.unpack(endian + "I", head[8:12])
        value_pos = pos + 12
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
        value_pos = pos + 8
    nframes = max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    if length != 0xFFFFFFFF:
        if value_pos + length > size:
            raise HeaderError(0xC000, "file truncated inside the pixel data")
        if (group << 16 | elem) != 0x7FE00010:
            return [[(value_pos, length)]], value_pos + length
        bits = int(ds.get("BitsAllocated", 0) or 0)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        pixel_bits = rows * cols * spp * bits
        if pixel_bits % 8 or pixel_bits == 0:
            return ([[(value_pos, length)]] if nframes == 1 else None), value_pos + length
        flen = pixel_bits // 8
        if flen * nframes > length:
            raise HeaderError(0xC000, "pixel data shorter than Rows x Columns x frames")
        return [[(value_pos + i * flen, flen)] for i in range(nframes)], value_pos + length
    return _walk_fragments(fp, value_pos, size, nframes, endian)


def _walk_fragments(
    fp: Any, pos: int, size: int, nframes: int, endian: str
) -> tuple[list[list[tuple[int, int]]], int]:
    fp.seek(pos)
    items: list[tuple[int, int]] = []
    bot: list[int] = []
    first = True
    while True:
        head = fp.read(8)
        if len(head) < 8:
            raise HeaderError(0xC000, "file truncated inside the encapsulated pixel data")
        group, elem, length = struct.unpack(endian + "HHI", head)
        tag = group << 16 | elem
        pos += 8
        if tag == 0xFFFEE0DD:
            break
        if tag != 0xFFFEE000 or length == 0xFFFFFFFF:
            raise HeaderError(0xC000, "malformed encapsulated pixel data")
        if pos + length > size:
            raise HeaderError(0xC000, "file truncated inside the encapsulated pixel data")
        if first:
            table = fp.read(length)
            bot = list(struct.unpack(f"{endian}{length // 4}I", table))
            first = False
        else:
            items.append((pos, length))
            fp.seek(length, 1)
        pos += length
    end = pos
    if nframes == 1:
        return [items], end
    if len(items) == nframes:
        return [[it] for it in items], end
    if bot and len(bot) == nframes:
        base = items[0][0] - 8 if items else 0
        starts = [base + off for off in bot]
        frames: list[list[tuple[int, int]]] = [[] for _ in range(nframes)]
        index = -1
        for off, length in items:
            while index + 1 < nframes and off - 8 >= starts[index + 1]:
                index += 1
            frames[max(index, 0)].append((off, length))
        return frames, end
    raise HeaderError(0xC000, "cannot tell the frames apart: no Basic Offset Table")


def instance_members(header: Header, retrieve_base: str) -> list[tuple[str, str]]:
    """``json_members`` of the instance: its DICOM JSON (PS3.18 F.2) with bulk
    data as BulkDataURIs, each attribute encoded."""

    def bulk(elem: DataElement | RawDataElement) -> str:
        return f"{retrieve_base}/bulkdata/{elem.tag:08X}"

    ds = header.dataset
    members = json_members(ds, BULK_THRESHOLD, bulk, header.raw)
    if header.frames is not None:
        vr = "OB" if header.transfer_syntax_uid not in KNOWN_NATIVE else _native_vr(header)
        uri = json.dumps(f"{retrieve_base}/bulkdata/7FE00010", ensure_ascii=False)
        members = [m for m in members if m[0] != "7FE00010"]
        members.append(("7FE00010", f'"7FE00010":{{"vr":"{vr}","BulkDataURI":{uri}}}'))
    return members


def members_json(members: list[tuple[str, str]], tags: set[str] | None, patient: bool) -> str:
    """The JSON object of ``members`` (all, or those of ``tags``, with the patient
    module when ``patient``)."""
    if tags is None:
        return "{" + ",".join(m for _, m in members) + "}"
    return (
        "{"
        + ",".join(m for k, m in members if k in tags or (patient and k.startswith("0010")))
        + "}"
    )


STUDY_KEYS = {f"{t:08X}" for t in STUDY_TAGS}
SERIES_KEYS = {f"{t:08X}" for t in SERIES_TAGS}


def instance_json(ds: Dataset, header: Header, retrieve_base: str) -> dict[str, Any]:
    """DICOM JSON of the instance (PS3.18 F.2), bulk data as BulkDataURIs."""

    def bulk(elem: DataElement | RawDataElement) -> str:
        return f"{retrieve_base}/bulkdata/{elem.tag:08X}"

    data = to_json_dict(ds, BULK_THRESHOLD, bulk, header.raw)
    if header.frames is not None:
        vr = "OB" if header.transfer_syntax_uid not in KNOWN_NATIVE else _native_vr(header)
        data["7FE00010"] = {"vr": vr, "BulkDataURI": f"{retrieve_base}/bulkdata/7FE00010"}
    return data


def _native_vr(header: Header) -> str:
    return "OW" if (header.integer("BitsAllocated") or 16) > 8 else "OB"


def level_json(full: dict[str, Any], tags: set[int], patient: bool) -> str:
    """The attributes of one QIDO level (study: with the patient module)."""
    keys = {f"{t:08X}" for t in tags}
    kept = {k: v for k, v in full.items() if k in keys or (patient and k.startswith("0010"))}
    return json.dumps(kept, separators=(",", ":"), ensure_ascii=False)


def instance_attrs(h: Header | Summary, expected_study: str | None = None) -> InstanceAttrs:
    """What the Access decides an instance's filing on, from its header."""
    return InstanceAttrs(
        study_uid=h.study_uid,
        series_uid=h.series_uid,
        sop_uid=h.sop_uid,
        sop_class_uid=h.sop_class_uid,
        accession_number=h.text("AccessionNumber"),
        patient_id=h.text("PatientID"),
        patient_name=h.text("PatientName"),
        modality=h.text("Modality"),
        patient_birth_date=h.text("PatientBirthDate"),
        patient_sex=h.text("PatientSex"),
        expected_study=expected_study,
    )
