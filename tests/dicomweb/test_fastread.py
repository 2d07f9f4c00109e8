"""The single-pass reader (``dicomweb.fastread``) against pydicom's: for every
file of pydicom's test data that it accepts, the same header, index values,
frame ranges and DICOM JSON; what it does not accept goes to pydicom."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom.data
import pytest
from pydicom.data.data_manager import external_data_sources

from dicomweb.dicomjson import _cache
from dicomweb.fastread import Unsupported, walk
from dicomweb.header import Header, HeaderError, _fast, _pydicom, read_header, read_path
from dicomweb.samples import ct_series, instance
from dicomweb.staging import metadata_json


def read_bytes(data: bytes) -> Header:
    """``read_header`` of bytes in memory (fastread, else pydicom)."""
    return read_header(io.BytesIO(data), len(data))


TEXT_KEYS = (
    "Modality AccessionNumber PatientID PatientName PatientBirthDate PatientSex StudyDate "
    "StudyTime StudyDescription ReferringPhysicianName StudyID SeriesDescription "
    "BodyPartExamined SeriesDate SeriesTime SpecificCharacterSet"
).split()
INT_KEYS = ("SeriesNumber", "InstanceNumber", "Rows", "Columns", "NumberOfFrames")
# every file of pydicom's test data and of pydicom-data, as installed (no download)
ROOTS = [Path(pydicom.data.__file__).parent / "test_files"] + [
    Path(source.data_path) for source in external_data_sources().values()
]
FILES = sorted(p for root in ROOTS for p in root.rglob("*") if p.is_file())


def _outcome(read, data: bytes):  # type: ignore[no-untyped-def]
    try:
        return read(data)
    except HeaderError as exc:
        return exc


def _slow(data: bytes):  # type: ignore[no-untyped-def]
    return _outcome(lambda d: _pydicom(io.BytesIO(d), len(d)), data)


def _same(fast, data: bytes, metadata: bool = True) -> None:  # type: ignore[no-untyped-def]
    """``fast`` (a Header or HeaderError) is what the pydicom path makes of ``data``.
    pydicom converts elements in place as they are read (a private element's VR
    can change once its creator is known), so each comparison gets a fresh read."""
    slow = _slow(data)
    if isinstance(slow, HeaderError):
        assert isinstance(fast, HeaderError), fast
        assert (fast.reason, fast.message) == (slow.reason, slow.message)
        return
    assert not isinstance(fast, HeaderError), fast.message
    for name in (
        "study_uid",
        "series_uid",
        "sop_uid",
        "sop_class_uid",
        "transfer_syntax_uid",
        "frames",
        "pixel_end",
    ):
        assert getattr(fast, name) == getattr(slow, name), name
    for key in TEXT_KEYS:
        assert fast.text(key) == slow.text(key), key
    for key in INT_KEYS:
        assert fast.integer(key) == slow.integer(key), key
    if not metadata:
        return
    _cache.clear()
    assert metadata_json(fast) == metadata_json(_slow(data))
    assert metadata_json(fast) == metadata_json(_slow(data))  # from the cache this time


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_same_as_pydicom(path: Path) -> None:
    data = path.read_bytes()
    try:
        walk(data)
    except Unsupported:
        # Not for the single pass: the ingest path hands it to pydicom and indexes the
        # same values. (Its JSON is pydicom's own; two pydicom reads of a file with
        # UN elements need not agree, as pydicom converts them in place.)
        with warnings.catch_warnings():  # pydicom's own remarks on odd files
            warnings.simplefilter("ignore")
            _same(_outcome(read_bytes, data), data, metadata=False)
        return
    except Exception as exc:  # noqa: BLE001 - any other error is a bug
        pytest.fail(f"fastread raised {exc!r}")
    _same(_outcome(_fast, data), data)


def test_accepts_most_test_files() -> None:
    accepted = 0
    for path in FILES:
        try:
            walk(path.read_bytes())
            accepted += 1
        except Unsupported:
            pass
    assert accepted > len([p for p in FILES if p.suffix == ".dcm"]) // 2


def test_generated_series_and_truncations(tmp_path: Path) -> None:
    for data in [*ct_series(3, size=64), instance("MR_small_implicit.dcm")]:
        _same(_outcome(read_bytes, data), data)
        path = tmp_path / "x.dcm"
        path.write_bytes(data)
        _same(read_path(path), data)
        for cut in (len(data) - 1000, len(data) - 1, 2000, 400, 140, 131):
            _same(_outcome(read_bytes, data[:cut]), data[:cut])
