"""One walk over the raw bytes of a Part-10 file, without pydicom's reader.

``walk`` returns the file meta and the data set up to the pixel data as pydicom
``RawDataElement``s (the same tuples ``dcmread(stop_before_pixels=True)`` keeps
before it converts anything), read with ``struct.unpack_from`` from a buffer
(bytes or an mmap), no file object, no copies of the pixel data.

It knows the common encodings only: little endian, explicit or implicit VR, not
deflated. Anything else, or anything odd (a VR that is not two capitals, an
undefined length that is not a sequence, a value running past the end), raises
``Unsupported`` and the caller reads the file with pydicom instead, which keeps
its error messages and its tolerance of broken files.
"""

from __future__ import annotations

import struct
from typing import Any, cast

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement, empty_value_for_VR
from pydicom.tag import BaseTag

PIXEL_TAGS = frozenset((0x7FE00010, 0x7FE00008, 0x7FE00009))
LENGTH_32 = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
IMPLICIT_LE = "1.2.840.10008.1.2"
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD

#: two-letter code -> (VR, 32-bit length); the standard VRs only
_VRS = {
    code.encode(): (code, code.encode() in LENGTH_32)
    for code in (
        "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV "
        "TM UC UI UL UN UR US UT UV"
    ).split()
}
_HH = struct.Struct("<HH").unpack_from
_HH2sH = struct.Struct("<HH2sH").unpack_from
_L = struct.Struct("<L").unpack_from
_H = struct.Struct("<H").unpack_from
_HHL = struct.Struct("<HHL").unpack_from


_TAGS: dict[int, BaseTag] = {}  # BaseTag per tag number: ints, shared

#: Elements as read, keyed by BaseTag like pydicom's own ``Dataset._dict``: a
#: Dataset built on them is one pydicom can write (its writer asks each key for
#: ``.group`` and ``.element``).
Elements = dict[BaseTag, RawDataElement]
TRANSFER_SYNTAX_UID = BaseTag(0x00020010)


class Unsupported(Exception):
    """Not something this reader handles: use pydicom."""


def _explicit_syntaxes() -> frozenset[str]:
    from pydicom.uid import UID

    known = {
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.5",
        *(f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 57, 70, 80, 81, 90, 91, 92, 93)),
        *(f"1.2.840.10008.1.2.4.{n}" for n in (100, 101, 102, 103, 104, 105, 106, 107, 108)),
        *(f"1.2.840.10008.1.2.4.{n}" for n in (110, 111, 112, 201, 202, 203)),
    }
    return frozenset(u for u in known if UID(u).is_transfer_syntax and UID(u).is_little_endian)


#: Transfer syntaxes whose data set is explicit VR little endian, not deflated.
EXPLICIT_LE = _explicit_syntaxes()


def walk(buf: Any) -> tuple[Elements, Elements, int]:
    """(file meta, data set up to the pixel data, offset of the pixel data or of
    the end). ``buf`` supports the buffer protocol and slicing (bytes, mmap)."""
    size = len(buf)
    if size < 132 or buf[128:132] != b"DICM":
        raise Unsupported("no DICM prefix")
    meta: Elements = {}
    pos = 132
    while pos + 8 <= size and _HH(buf, pos)[0] == 0x0002:
        pos = _element(buf, pos, size, False, meta)
    ts_elem = meta.get(TRANSFER_SYNTAX_UID)
    if ts_elem is None or not ts_elem.value:
        raise Unsupported("no transfer syntax")
    ts = bytes(ts_elem.value).decode("ascii", "replace").rstrip("\0 ")
    if ts == IMPLICIT_LE:
        implicit = True
    elif ts in EXPLICIT_LE:
        implicit = False
    else:
        raise Unsupported(f"transfer syntax {ts}")
    data: Elements = {}
    if implicit:
        while pos < size:
            if pos + 8 > size:
                raise Unsupported("bytes left after the last element")
            group, elem = _HH(buf, pos)
            if (group << 16 | elem) in PIXEL_TAGS:
                break
            if group == 0x0002 or group == 0xFFFE:
                raise Unsupported("file meta or item tag in the data set")
            pos = _element(buf, pos, size, implicit, data)
        return meta, data, pos
    # explicit VR little endian, the common case, inline; RawDataElement tuples
    # made without the NamedTuple's Python-level __new__
    vrs, unpack, unpack_l, new, cls, tags = _VRS, _HH2sH, _L, tuple.__new__, RawDataElement, _TAGS
    while pos < size:
        if pos + 8 > size:
            raise Unsupported("bytes left after the last element")
        group, elem, code, length = unpack(buf, pos)
        tag = group << 16 | elem
        if tag in PIXEL_TAGS:
            break
        known = vrs.get(code)
        if known is None or group == 0x0002 or group == 0xFFFE:
            raise Unsupported("not a standard VR, or file meta or item in the data set")
        vr, long = known
        if vr == "UN" and _known(tag):
            raise Unsupported("UN of a known tag: pydicom reads it with the dictionary VR")
        if long:
            (length,) = unpack_l(buf, pos + 8)
            start = pos + 12
        else:
            start = pos + 8
        if length == 0xFFFFFFFF:
            pos = _element(buf, pos, size, False, data)
            continue
        end = start + length
        if end > size:
            raise Unsupported("value past the end")
        value = buf[start:end] if length else empty_value_for_VR(vr, raw=True)
        base = tags.get(tag)
        if base is None:
            base = tags[tag] = BaseTag(tag)
        data[base] = new(cls, (base, vr, length, value, start, False, True, True, False))
        pos = end
    return meta, data, pos


def _element(buf: Any, pos: int, size: int, implicit: bool, out: Elements | None) -> int:
    """Read the element at ``pos`` into ``out`` (None: skip it); the next offset."""
    group, elem = _HH(buf, pos)
    tag = group << 16 | elem
    vr: str | None
    length: int
    if implicit:
        (length,) = _L(buf, pos + 4)
        vr = None
        start = pos + 8
    else:
        known = _VRS.get(bytes(buf[pos + 4 : pos + 6]))
        if known is None:
            raise Unsupported("not a standard VR")
        vr, long = known
        if vr == "UN" and _known(tag):
            raise Unsupported("UN of a known tag: pydicom reads it with the dictionary VR")
        if long:
            if pos + 12 > size:
                raise Unsupported("truncated")
            (length,) = _L(buf, pos + 8)
            start = pos + 12
        else:
            (length,) = _H(buf, pos + 6)
            start = pos + 8
    if length == 0xFFFFFFFF:
        if not _is_sequence(buf, start, size, tag, vr):
            raise Unsupported("undefined length outside a sequence")
        end = _sequence_end(buf, start, size, implicit)
        if out is not None:
            key = BaseTag(tag)
            out[key] = RawDataElement(
                key, "SQ", length, bytes(buf[start:end]), start, implicit, True
            )
        return end
    end = start + length
    if end > size:
        raise Unsupported("value past the end")
    if out is not None:
        if length:
            value: bytes | None = bytes(buf[start:end])
        else:  # b"" or None with raw=True: pydicom annotates the union of both modes
            value = cast("bytes | None", empty_value_for_VR(vr, raw=True))
        key = BaseTag(tag)
        out[key] = RawDataElement(key, vr, length, value, start, implicit, True)
    return end


def _is_sequence(buf: Any, start: int, size: int, tag: int, vr: str | None) -> bool:
    if vr == "SQ":
        return True
    if vr is not None:  # explicit UN of undefined length holds implicit VR items
        return False
    try:
        if dictionary_VR(tag) == "SQ":
            return True
    except KeyError:
        pass
    if start + 4 > size:
        return False
    group, elem = _HH(buf, start)
    return (group << 16 | elem) in (ITEM, SEQ_END) and not _known(tag)


def _known(tag: int) -> bool:
    try:
        dictionary_VR(tag)
    except KeyError:
        return False
    return True


def _sequence_end(buf: Any, pos: int, size: int, implicit: bool) -> int:
    """Offset just past the Sequence Delimitation Item of a sequence at ``pos``."""
    while True:
        if pos + 8 > size:
            raise Unsupported("truncated sequence")
        group, elem, length = _HHL(buf, pos)
        tag = group << 16 | elem
        pos += 8
        if tag == SEQ_END:
            return pos
        if tag != ITEM:
            raise Unsupported("not an item")
        if length != 0xFFFFFFFF:
            pos += length
            continue
        while True:  # an item of undefined length: its elements, then ITEM_END
            if pos + 8 > size:
                raise Unsupported("truncated item")
            g, e = _HH(buf, pos)
            if (g << 16 | e) == ITEM_END:
                pos += 8
                break
            pos = _element(buf, pos, size, implicit, None)
