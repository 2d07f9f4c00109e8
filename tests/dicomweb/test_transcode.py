"""Decompression on request (docs/dicomweb.md "Conformance", frames and
retrieve): ``transfer-syntax=1.2.840.10008.1.2.1`` of a compressed instance gives
the raw little endian pixels, ``*`` the stored encoding, another syntax 406."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.encaps import generate_frames
from pydicom.pixels import pixel_array

from dicomweb.samples import instance, multipart, split_multipart
from tests.dicomweb.conftest import Archive

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:dicomweb_client")
EXPLICIT_LE = "1.2.840.10008.1.2.1"
RAW = f'multipart/related; type="application/octet-stream"; transfer-syntax={EXPLICIT_LE}'


async def store(http: httpx.AsyncClient, parts: list[bytes]) -> None:
    body, ctype = multipart(parts)
    resp = await http.post("/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 200, resp.text


def uids(data: bytes) -> tuple[str, str, str]:
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def raw(data: bytes, index: int = 0) -> bytes:
    """What the frame decodes to, little endian, by pydicom."""
    arr = pixel_array(dcmread(io.BytesIO(data)), index=index)
    return np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"))).tobytes()


@pytest.mark.parametrize(
    ("name", "native"),
    [
        ("MR_small_jp2klossless.dcm", "MR_small.dcm"),  # JPEG 2000 lossless
        ("JPEG-LL.dcm", None),  # JPEG Lossless, first-order prediction
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),  # JPEG-LS lossless
        ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),  # multi-frame
    ],
)
def test_dicomweb_client_gets_raw_pixels(archive: Archive, name: str, native: str | None) -> None:
    data = instance(name)
    client = DICOMwebClient(url=archive.url)
    client.store_instances([dcmread(io.BytesIO(data))])
    ds = dcmread(io.BytesIO(data))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    wanted = [1, frames] if frames > 1 else [1]
    got = client.retrieve_instance_frames(
        *uids(data),
        frame_numbers=wanted,
        media_types=(("application/octet-stream", EXPLICIT_LE),),
    )
    assert got == [raw(data, n - 1) for n in wanted]
    if native is not None:
        # Lossless: the very pixel bytes of the uncompressed original.
        original = dcmread(io.BytesIO(instance(native))).PixelData
        size = len(got[0])
        assert got[0] == original[:size]
        if frames > 1:
            assert got[-1] == original[(frames - 1) * size : frames * size]


async def test_stored_encoding_unsupported_syntax_and_rgb(http: httpx.AsyncClient) -> None:
    j2k, rgb = instance("MR_small_jp2klossless.dcm"), instance("US1_J2KR.dcm")
    await store(http, [j2k, rgb])
    url = "/studies/{}/series/{}/instances/{}/frames/1".format(*uids(j2k))
    as_stored = await http.get(
        url,
        headers={"accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'},
    )
    (blob,) = split_multipart(as_stored.content, as_stored.headers["content-type"])
    expected = next(generate_frames(dcmread(io.BytesIO(j2k)).PixelData, number_of_frames=1))
    assert blob.rstrip(b"\0") == expected.rstrip(b"\0")
    assert b"transfer-syntax=1.2.840.10008.1.2.4.90" in as_stored.content[:300]
    decoded = await http.get(url, headers={"accept": RAW})
    assert decoded.status_code == 200
    assert f"transfer-syntax={EXPLICIT_LE}".encode() in decoded.content[:300]
    assert split_multipart(decoded.content, decoded.headers["content-type"]) == [raw(j2k)]
    single = await http.get(url, headers={"accept": "application/octet-stream"})
    assert single.status_code == 200 and single.content == raw(j2k)
    refused = await http.get(
        url,
        headers={
            "accept": 'multipart/related; type="application/octet-stream"; '
            "transfer-syntax=1.2.840.10008.1.2.4.50"
        },
    )
    assert refused.status_code == 406
    error = refused.json()["error"]
    assert error["code"] == "not_acceptable"
    assert "1.2.840.10008.1.2.4.50" in error["message"] and EXPLICIT_LE in error["message"]
    # Colour (YBR_RCT in the JPEG 2000 stream) comes back as interleaved RGB.
    rgb_url = "/studies/{}/series/{}/instances/{}/frames/1".format(*uids(rgb))
    resp = await http.get(rgb_url, headers={"accept": RAW})
    (pixels,) = split_multipart(resp.content, resp.headers["content-type"])
    ds = dcmread(io.BytesIO(rgb))
    assert len(pixels) == ds.Rows * ds.Columns * 3 and pixels == raw(rgb)


async def test_bulk_data_decompressed_when_asked(archive: Archive, http: httpx.AsyncClient) -> None:
    data = instance("emri_small_jpeg_2k_lossless.dcm")
    await store(http, [data])
    url = "/studies/{}/series/{}/instances/{}/bulkdata/7FE00010".format(*uids(data))
    resp = await http.get(url, headers={"accept": RAW})
    (blob,) = split_multipart(resp.content, resp.headers["content-type"])
    assert blob == dcmread(io.BytesIO(instance("emri_small.dcm"))).PixelData
    as_stored = await http.get(url, headers={"accept": 'multipart/related; type="*/*"'})
    assert len(split_multipart(as_stored.content, as_stored.headers["content-type"])) == 10


def test_instance_and_series_retrieve_decompressed(archive: Archive) -> None:
    jll = instance("JPEG-LL.dcm")
    study, series, _ = uids(jll)
    native = instance("CT_small.dcm", study=study, series=series)
    client = DICOMwebClient(url=archive.url)
    client.store_instances([dcmread(io.BytesIO(p)) for p in (jll, native)])
    got = client.retrieve_series(study, series, media_types=(("application/dicom", EXPLICIT_LE),))
    assert {str(ds.file_meta.TransferSyntaxUID) for ds in got} == {EXPLICIT_LE}
    by_sop = {ds.SOPInstanceUID: ds for ds in got}
    decoded = by_sop[uids(jll)[2]]
    assert np.array_equal(decoded.pixel_array, dcmread(io.BytesIO(jll)).pixel_array)
    # The stored one is unchanged byte for byte; * keeps the stored encoding.
    same = client.retrieve_series(study, series, media_types=(("application/dicom", "*"),))
    assert {str(ds.file_meta.TransferSyntaxUID) for ds in same} == {
        EXPLICIT_LE,
        "1.2.840.10008.1.2.4.70",
    }


async def test_retrieve_of_an_unsupported_syntax_is_406(http: httpx.AsyncClient) -> None:
    data = instance("JPEG-LL.dcm")
    await store(http, [data])
    resp = await http.get(
        "/studies/{}/series/{}/instances/{}".format(*uids(data)),
        headers={
            "accept": 'multipart/related; type="application/dicom"; '
            "transfer-syntax=1.2.840.10008.1.2.4.90"
        },
    )
    assert resp.status_code == 406 and resp.json()["error"]["code"] == "not_acceptable"
