"""Header parsing, frame location and DICOM JSON: values in, values out, no I/O
beyond reading test files."""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread
from pydicom.encaps import generate_frames

from dicomweb.dicomjson import to_json_dict
from dicomweb.header import HeaderError, read_header
from dicomweb.samples import instance, sample_path, to_bytes


def header(data: bytes):  # type: ignore[no-untyped-def]
    return read_header(io.BytesIO(data), len(data))


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "emri_small.dcm",
        "emri_small_RLE.dcm",
        "JPEG2000.dcm",
        "color3d_jpeg_baseline.dcm",
        "SC_rgb_rle_2frame.dcm",
    ],
)
def test_frame_ranges(name: str) -> None:
    data = sample_path(name).read_bytes()
    h = header(data)
    ds = dcmread(io.BytesIO(data))
    n = int(ds.get("NumberOfFrames", 1) or 1)
    assert h.frames is not None and len(h.frames) == n
    got = [b"".join(data[o : o + length] for o, length in f) for f in h.frames]
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        assert got == list(generate_frames(ds.PixelData, number_of_frames=n))
    else:
        assert b"".join(got) == ds.PixelData[: sum(len(g) for g in got)]


def test_no_pixel_data() -> None:
    h = header(sample_path("rtplan.dcm").read_bytes())
    assert h.frames is None and h.sop_class_uid


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", 0xC000),
        (b"\0" * 128 + b"DICM" + b"\0" * 20, 0xC000),
        (b"not dicom" * 100, 0xC000),
    ],
)
def test_rejects_non_dicom(data: bytes, reason: int) -> None:
    with pytest.raises(HeaderError) as err:
        header(data)
    assert err.value.reason == reason


def test_rejects_truncated_pixel_data() -> None:
    data = instance("CT_small.dcm")
    with pytest.raises(HeaderError, match="truncated"):
        header(data[:-1000])
    data = instance("emri_small_RLE.dcm")
    with pytest.raises(HeaderError, match="truncated"):
        header(data[:-500])


def test_rejects_missing_and_invalid_uids() -> None:
    ds = dcmread(sample_path("CT_small.dcm"))
    del ds.StudyInstanceUID
    with pytest.raises(HeaderError, match="StudyInstanceUID missing") as err:
        header(to_bytes(ds))
    assert err.value.reason == 0xA900
    with pytest.raises(HeaderError, match="not a valid UID"):
        header(instance(sop="1.2.3.abc"))


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "JPEG2000.dcm",
        "rtplan.dcm",
        "waveform_ecg.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "reportsi.dcm",
        "nested_priv_SQ.dcm",
        "liver.dcm",
        "rtdose.dcm",
        "eCT_Supplemental.dcm",
    ],
)
def test_fast_json_equals_pydicom(name: str) -> None:
    def bulk(elem: object) -> str:
        return f"uri/{elem.tag:08X}"  # type: ignore[attr-defined]

    ours = to_json_dict(dcmread(sample_path(name), stop_before_pixels=True), 1024, bulk)
    theirs = dcmread(sample_path(name), stop_before_pixels=True).to_json_dict(1024, bulk)
    assert ours == theirs


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "rtplan.dcm", "reportsi.dcm", "eCT_Supplemental.dcm", "rtdose.dcm"]
)
def test_json_members_equal_pydicom_when_cached(name: str) -> None:
    """What ingest keeps (the members of the raw elements, sequences included)
    is pydicom's DICOM JSON, the first time and from the cache after."""
    import json

    from dicomweb.dicomjson import json_members

    def bulk(elem: object) -> str:
        return f"uri/{elem.tag:08X}"  # type: ignore[attr-defined]

    data = sample_path(name).read_bytes()
    theirs = dcmread(sample_path(name), stop_before_pixels=True).to_json_dict(1024, bulk)
    for _ in range(2):
        header = read_header(io.BytesIO(data), len(data))
        members = json_members(header.dataset, 1024, bulk, header.raw)
        ours = json.loads("{" + ",".join(m for _, m in members) + "}")
        ours.pop("7FE00010", None)
        assert ours == theirs


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm"])
def test_fast_dataset_is_pydicoms(name: str) -> None:
    """The data set the fast reader builds is keyed like pydicom's, so pydicom
    writes it back: the same elements as ``dcmread(stop_before_pixels=True)``."""
    data = sample_path(name).read_bytes()
    h = header(data)
    assert h.raw is not None  # read by dicomweb.fastread, not by pydicom
    out = io.BytesIO()
    h.dataset.save_as(out, enforce_file_format=True)
    again = dcmread(io.BytesIO(out.getvalue()))
    theirs = dcmread(sample_path(name), stop_before_pixels=True)
    assert again == theirs
