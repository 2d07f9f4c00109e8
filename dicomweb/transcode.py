"""Decompression on request, for clients without codecs (PS3.18 8.7.3.5: a
``transfer-syntax`` parameter of the Accept header names the syntax wanted).

The archive stores and serves bytes as received (docs/dicomweb.md); only when a
client asks for Explicit VR Little Endian (``1.2.840.10008.1.2.1``) of an instance
stored compressed are its pixels decoded, by pydicom with the pylibjpeg plugins
(JPEG baseline and lossless, JPEG-LS, JPEG 2000, RLE). Colour comes back as RGB,
pixel-interleaved (what PS3.5 8.2 says a decompressed YBR_RCT, YBR_ICT or
YBR_FULL_422 becomes). Blocking: call from a worker thread.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.pixels import pixel_array

from dicomweb.types import DicomwebError

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
#: The syntaxes a compressed instance can be decompressed to; their pixel bytes are the same.
NATIVE_TARGETS = frozenset({EXPLICIT_LE, IMPLICIT_LE})


def wanted_native(asked: str | None, stored: str) -> bool | None:
    """Does ``transfer-syntax=asked`` of an instance stored as ``stored`` call for
    decompression? False: serve as stored; True: decode (a compressed or big
    endian instance asked in little endian); None: neither answers it (406)."""
    if asked is None or asked == "*" or asked == stored:
        return False
    if asked not in NATIVE_TARGETS:
        return None
    # Explicit and implicit little endian pixel bytes are the same.
    return stored not in NATIVE_TARGETS


def not_acceptable(asked: str, stored: str) -> DicomwebError:
    return DicomwebError(
        406,
        "not_acceptable",
        f"transfer syntax {asked} cannot be served: the instance is stored as {stored}; "
        f"ask for transfer-syntax={EXPLICIT_LE} (decompressed), {stored} or *",
    )


def _native_bytes(arr: np.ndarray) -> bytes:
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(little).tobytes()


def native_frames(path: Path, numbers: list[int], stored: str) -> list[bytes]:
    """The frames ``numbers`` (from 1) of the instance at ``path``, decoded to
    little endian native pixel bytes, or 406 when no decoder can read them."""
    out: list[bytes] = []
    try:
        for n in numbers:
            out.append(_native_bytes(pixel_array(path, index=n - 1)))
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:
        raise DicomwebError(
            406, "not_acceptable", f"cannot decompress frames stored as {stored}: {exc}"
        ) from exc
    return out


def instance_plan(asked: frozenset[str] | None, stored: str) -> bool | None:
    """For a whole instance (WADO-RS retrieve, WADO-URI), given the transfer
    syntaxes the client accepts (None: any): False serve it as stored, True
    write it again in Explicit VR Little Endian (decompressed), None 406."""
    if asked is None or "*" in asked or stored in asked:
        return False
    return True if EXPLICIT_LE in asked else None


def explicit_instance(path: Path) -> bytes:
    """The Part-10 instance at ``path`` written again in Explicit VR Little Endian,
    its pixel data decompressed, its UIDs unchanged (the pixels of a lossless
    syntax are the same; PS3.18 8.7.3.5 lets the origin server transcode), or 406
    when no decoder can read it (or it is big endian, which pydicom does not
    convert)."""
    ds: Any = dcmread(path)
    stored = str(ds.file_meta.get("TransferSyntaxUID", "?"))
    buf = io.BytesIO()
    try:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress(generate_instance_uid=False)
        else:
            ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
        ds.save_as(buf, enforce_file_format=True)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:
        raise DicomwebError(
            406, "not_acceptable", f"cannot decompress an instance stored as {stored}: {exc}"
        ) from exc
    return buf.getvalue()
