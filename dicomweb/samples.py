"""Sample instances for tests, benchmarks and the demo, made from pydicom's test
files with fresh UIDs (no patient data leaves the test files)."""

from __future__ import annotations

import copy
import io
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def sample_path(name: str) -> Path:
    path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(name)
    return Path(str(path))


def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def instance(
    name: str = "CT_small.dcm",
    *,
    study: str | None = None,
    series: str | None = None,
    sop: str | None = None,
    **attrs: Any,
) -> bytes:
    """A test file with new (or given) UIDs and attributes, as Part-10 bytes."""
    ds = dcmread(sample_path(name))
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.SOPInstanceUID = sop or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for key, value in attrs.items():
        setattr(ds, key, value)
    return to_bytes(ds)


def ct_series(
    count: int, size: int = 512, study: str | None = None, **attrs: Any
) -> Iterator[bytes]:
    """``count`` CT slices of ``size`` x ``size`` 16-bit pixels built on CT_small's
    header: one study, one series, new UIDs, a sphere-ish phantom."""
    template = dcmread(sample_path("CT_small.dcm"))
    study = study or generate_uid()
    series = generate_uid()
    yy, xx = np.mgrid[0:size, 0:size]
    r2 = (xx - size / 2) ** 2 + (yy - size / 2) ** 2
    for i in range(count):
        ds = template.copy()
        ds.file_meta = copy.copy(template.file_meta)  # Dataset.copy() is typed as a Dataset
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.SeriesNumber = 1
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        radius = (size / 2.5) * (1 - abs(i - count / 2) / count)
        pixels = np.where(r2 < radius**2, 40 + (i % 50), -1000).astype(np.int16)
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OW"
        for key, value in attrs.items():
            setattr(ds, key, value)
        yield to_bytes(ds)


def multipart(parts: Iterable[bytes], content_type: str = "application/dicom") -> tuple[bytes, str]:
    """A STOW-RS body (PS3.18 8.6.1.2) and its Content-Type."""
    boundary = uuid.uuid4().hex
    chunks = []
    for part in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode())
        chunks.append(part)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{content_type}"; boundary={boundary}'


def split_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The parts' payloads of a multipart/related response (headers dropped)."""
    boundary = next(
        p.split("=", 1)[1].strip('"')
        for p in content_type.split(";")
        if p.strip().startswith("boundary=")
    )
    delimiter = f"--{boundary}".encode()
    out = []
    for piece in body.split(delimiter)[1:]:
        if piece.startswith(b"--"):
            break
        _, _, payload = piece.partition(b"\r\n\r\n")
        out.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    return out
