"""DICOM JSON (PS3.18 Annex F) straight from the raw elements of a parsed header.

pydicom's ``Dataset.to_json_dict`` converts every element to a full
``DataElement`` first; on a CT header that costs more than everything else at
ingest. This converter reads the raw bytes of the common VRs directly and hands
anything unusual (sequences, other character sets, malformed numbers) to pydicom
for that element alone, so the output is the same.

``json_members`` gives each attribute already encoded (``"00100010":{...}``):
a response or a QIDO level is then a join of strings. The encoding of a short
value depends only on its tag, VR, bytes and the character set, and most of them
repeat across the instances of a series (patient, study, equipment), so those
are kept in a bounded process-wide cache; so are short sequences, which pydicom
converts, when the character set is a plain one.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable, Mapping
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import BaseTag

TEXT_MULTI = {"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UC", "UI"}
TEXT_SINGLE = {"LT", "ST", "UT", "UR"}
BINARY_NUM = {
    "US": "H",
    "SS": "h",
    "UL": "L",
    "SL": "l",
    "FL": "f",
    "FD": "d",
    "UV": "Q",
    "SV": "q",
}
BULK = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
PLAIN_CHARSETS = {"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 6"}
PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")

SPECIFIC_CHARACTER_SET = BaseTag(0x00080005)

#: The BulkDataURI of an element (a DataElement, or a RawDataElement: its ``tag``).
BulkHandler = Callable[[DataElement | RawDataElement], str]


class _Fallback(Exception):
    pass


CACHE_MAX = 50_000
CACHE_VALUE_MAX = 256
_cache: dict[tuple[Any, ...], str] = {}


def _charset(ds: Dataset, elements: Mapping[BaseTag, Any] | None = None) -> tuple[str, bool]:
    """(codec of text values, whether every text VR can be read with it)."""
    raw = elements.get(SPECIFIC_CHARACTER_SET) if elements is not None else None
    if isinstance(raw, RawDataElement) and isinstance(raw.value, bytes):
        text = raw.value.decode("latin-1").rstrip("\0 ")
        charsets: list[Any] = [c.strip() for c in text.split("\\")] if text else [""]
    else:
        charset = ds.get("SpecificCharacterSet", "")
        charsets = (
            list(charset)
            if isinstance(charset, list | tuple) or (type(charset).__name__ == "MultiValue")
            else [charset]
        )
    codec = "utf-8" if "ISO_IR 192" in charsets else "latin-1"
    simple_text = all(str(c or "") in PLAIN_CHARSETS for c in charsets) and len(charsets) <= 1
    return codec, simple_text


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_members(
    ds: Dataset,
    threshold: int,
    bulk: BulkHandler,
    elements: Mapping[BaseTag, Any] | None = None,
) -> list[tuple[str, str]]:
    """``(key, '"key":value')`` per attribute, in order: the members of
    ``json.dumps(to_json_dict(...), separators=(",", ":"), ensure_ascii=False)``."""
    codec, simple_text = _charset(ds, elements)
    out: list[tuple[str, str]] = []
    cache = _cache
    for tag, elem in (ds._dict if elements is None else elements).items():
        key = f"{tag:08X}"
        if isinstance(elem, RawDataElement) and elem.value is not None:
            value = elem.value
            ck = None
            if len(value) <= CACHE_VALUE_MAX and len(value) <= threshold:  # never a bulk URI
                ck = (
                    tag,
                    elem.VR,
                    value,
                    elem.is_little_endian,
                    elem.is_implicit_VR,
                    codec,
                    simple_text,
                    threshold,
                )
                member = cache.get(ck)
                if member is not None:
                    out.append((key, member))
                    continue
            try:
                member = f'"{key}":{_dumps(_raw(elem, codec, simple_text, threshold, bulk))}'
            except _Fallback:
                member = f'"{key}":{_dumps(ds[tag].to_json_dict(bulk, threshold))}'
                # A short sequence in a plain character set is made of its bytes
                # alone (how they are encoded included), like any short value.
                if not (simple_text and _is_sequence(elem)):
                    ck = None
            if ck is not None:
                if len(cache) >= CACHE_MAX:
                    cache.clear()
                cache[ck] = member
            out.append((key, member))
            continue
        out.append((key, f'"{key}":{_dumps(ds[tag].to_json_dict(bulk, threshold))}'))
    return out


def _is_sequence(elem: RawDataElement) -> bool:
    return (elem.VR or _vr(elem.tag)) == "SQ"


def to_json_dict(
    ds: Dataset,
    threshold: int,
    bulk: BulkHandler,
    elements: Mapping[BaseTag, Any] | None = None,
) -> dict[str, Any]:
    """``ds.to_json_dict(threshold, bulk)``, faster, for datasets read from a file.
    ``elements``: the raw elements ``ds`` was made of, if pydicom converted some."""
    codec, simple_text = _charset(ds, elements)
    out: dict[str, Any] = {}
    for tag, elem in (ds._dict if elements is None else elements).items():
        key = f"{tag:08X}"
        if isinstance(elem, RawDataElement) and elem.value is not None:
            try:
                out[key] = _raw(elem, codec, simple_text, threshold, bulk)
                continue
            except _Fallback:
                pass
        out[key] = ds[tag].to_json_dict(bulk, threshold)
    return out


def _raw(
    elem: RawDataElement,
    codec: str,
    simple_text: bool,
    threshold: int,
    bulk: BulkHandler,
) -> dict[str, Any]:
    vr = elem.VR or _vr(elem.tag)
    value: bytes = elem.value or b""  # a raw element: its bytes, or None when empty
    if vr == "SQ" or vr is None or (elem.tag >> 16) == 0x0002:
        raise _Fallback
    if not value:
        return {"vr": vr}
    if vr in BULK:
        if len(value) > threshold:
            return {"vr": vr, "BulkDataURI": bulk(elem)}
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode()}
    if vr in BINARY_NUM:
        fmt = BINARY_NUM[vr]
        size = struct.calcsize("<" + fmt)
        if len(value) % size:
            raise _Fallback
        endian = "<" if elem.is_little_endian else ">"
        nums = list(struct.unpack(f"{endian}{len(value) // size}{fmt}", value))
        if vr in ("FL", "FD") and any(n != n or n in (float("inf"), float("-inf")) for n in nums):
            raise _Fallback
        return {"vr": vr, "Value": nums}
    if vr == "AT":
        raise _Fallback
    if not simple_text and vr not in ("CS", "UI", "DA", "TM", "DT", "AS", "AE", "IS", "DS"):
        raise _Fallback
    text = value.decode(codec if vr not in ("UI",) else "ascii", "strict").rstrip("\0 ")
    if vr in TEXT_SINGLE:
        return {"vr": vr, "Value": [text]} if text else {"vr": vr}
    parts = [p.strip(" ") if vr != "UC" else p.rstrip(" ") for p in text.split("\\")]
    if vr in TEXT_MULTI:
        if vr == "UI":
            parts = [p.rstrip("\0") for p in parts]
        return _values(vr, [p or None for p in parts])
    if vr == "PN":
        return _values(vr, [_pn(p) for p in parts])
    if vr == "IS":
        try:
            return _values(vr, [int(p) if p else None for p in parts])
        except ValueError:
            try:
                nums = [float(p) if p else None for p in parts]
            except ValueError as exc:
                raise _Fallback from exc
            if any(n is not None and n != int(n) for n in nums):
                raise _Fallback from None
            return _values(vr, [int(n) if n is not None else None for n in nums])
    if vr == "DS":
        try:
            nums = [float(p) if p else None for p in parts]
        except ValueError as exc:
            raise _Fallback from exc
        return _values(vr, [_ds(n) for n in nums])
    raise _Fallback


def _values(vr: str, values: list[Any]) -> dict[str, Any]:
    if all(v is None for v in values):
        return {"vr": vr}
    return {"vr": vr, "Value": values}


def _ds(n: float | None) -> float | int | None:
    if n is None:
        return None
    if n != n or n in (float("inf"), float("-inf")):
        raise _Fallback
    return int(n) if n.is_integer() else n


def _pn(value: str) -> dict[str, str] | None:
    if not value:
        return None
    groups = value.split("=")
    return {k: g for k, g in zip(PN_GROUPS, groups, strict=False) if g}


def _vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN" if tag >> 16 & 1 else None
