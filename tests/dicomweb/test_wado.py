"""WADO-RS (PS3.18 10.4): instances, metadata, frames, bulk data, CORS."""

from __future__ import annotations

import gzip
import io
import json

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.encaps import generate_frames

from dicomweb.http import GZIP_MIN_BYTES
from dicomweb.samples import ct_series, instance, multipart, sample_path, split_multipart
from tests.dicomweb.conftest import Archive

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:dicomweb_client")
OHIF_FRAME = "multipart/related; type=application/octet-stream; transfer-syntax=*"


async def store(http: httpx.AsyncClient, parts: list[bytes]) -> None:
    body, ctype = multipart(parts)
    resp = await http.post("/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 200, resp.text


def uids(data: bytes) -> tuple[str, str, str]:
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


async def test_retrieve_levels_with_dicomweb_client(
    archive: Archive, http: httpx.AsyncClient
) -> None:
    parts = list(ct_series(3, size=64))
    await store(http, parts)
    study, series, sop = uids(parts[1])
    client = DICOMwebClient(url=archive.url)
    got = client.retrieve_study(study)
    assert sorted(d.SOPInstanceUID for d in got) == sorted(uids(p)[2] for p in parts)
    assert len(client.retrieve_series(study, series)) == 3
    one = client.retrieve_instance(study, series, sop)
    assert one.SOPInstanceUID == sop and one.pixel_array.shape == (64, 64)
    meta = client.retrieve_series_metadata(study, series)
    assert len(meta) == 3 and all("7FE00010" in m for m in meta)
    assert [m["00200013"]["Value"][0] for m in meta] == [1, 2, 3]


async def test_retrieved_bytes_are_the_stored_bytes(http: httpx.AsyncClient) -> None:
    parts = [instance("CT_small.dcm"), instance("MR_small_RLE.dcm")]
    await store(http, parts)
    for part in parts:
        study, series, sop = uids(part)
        resp = await http.get(
            f"/studies/{study}/series/{series}/instances/{sop}",
            headers={"accept": 'multipart/related; type="application/dicom"'},
        )
        assert resp.status_code == 200
        assert int(resp.headers["content-length"]) == len(resp.content)
        assert split_multipart(resp.content, resp.headers["content-type"]) == [part]


async def test_metadata_levels(archive: Archive, http: httpx.AsyncClient) -> None:
    data = instance("CT_small.dcm")
    await store(http, [data])
    study, series, sop = uids(data)
    for path in (
        f"/studies/{study}",
        f"/studies/{study}/series/{series}",
        f"/studies/{study}/series/{series}/instances/{sop}",
    ):
        resp = await http.get(path + "/metadata")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/dicom+json")
        (meta,) = resp.json()
        assert meta["00080018"]["Value"] == [sop]
        uri = meta["7FE00010"]["BulkDataURI"]
        path = f"/studies/{study}/series/{series}/instances/{sop}/bulkdata/7FE00010"
        assert uri == archive.url + path


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "emri_small.dcm",
        "emri_small_RLE.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "JPEG2000.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "color3d_jpeg_baseline.dcm",
    ],
)
async def test_frames_match_pydicom(http: httpx.AsyncClient, name: str) -> None:
    data = instance(name)
    await store(http, [data])
    study, series, sop = uids(data)
    ds = dcmread(io.BytesIO(data))
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        expected = list(generate_frames(ds.PixelData, number_of_frames=n))
    else:
        size = len(ds.PixelData) // n
        expected = [ds.PixelData[i * size : (i + 1) * size] for i in range(n)]
    wanted = sorted({1, n, (n + 1) // 2})
    resp = await http.get(
        f"/studies/{study}/series/{series}/instances/{sop}/frames/{','.join(map(str, wanted))}",
        headers={"accept": OHIF_FRAME},
    )
    assert resp.status_code == 200, resp.text
    got = split_multipart(resp.content, resp.headers["content-type"])
    assert len(got) == len(wanted)
    for number, blob in zip(wanted, got, strict=True):
        assert blob.rstrip(b"\0") == expected[number - 1].rstrip(b"\0")


async def test_frame_accept_variants(http: httpx.AsyncClient) -> None:
    native, jpeg = instance("CT_small.dcm"), instance("SC_rgb_jpeg_dcmtk.dcm")
    await store(http, [native, jpeg])
    n_url = "/studies/{}/series/{}/instances/{}/frames/1".format(*uids(native))
    j_url = "/studies/{}/series/{}/instances/{}/frames/1".format(*uids(jpeg))
    cases = [
        (n_url, 'multipart/related; type="application/octet-stream"', 200),
        (n_url, 'multipart/related; type="*/*"', 200),
        (n_url, "application/octet-stream", 200),
        (n_url, "*/*", 200),
        (j_url, 'multipart/related; type="*/*"', 200),
        (j_url, OHIF_FRAME, 200),
        (j_url, 'multipart/related; type="image/jpeg"', 200),
        # Octet-stream means Explicit VR Little Endian (PS3.18 8.7.3.5.2): decompressed.
        (j_url, 'multipart/related; type="application/octet-stream"', 200),
        (j_url, 'multipart/related; type="image/jp2"', 406),
    ]
    for url, accept, status in cases:
        resp = await http.get(url, headers={"accept": accept})
        assert resp.status_code == status, (url, accept, resp.text)
    resp = await http.get(j_url, headers={"accept": 'multipart/related; type="*/*"'})
    assert 'type="image/jpeg"' in resp.headers["content-type"]
    assert b"transfer-syntax=1.2.840.10008.1.2.4.50" in resp.content[:200]


async def test_frames_with_dicomweb_client(archive: Archive, http: httpx.AsyncClient) -> None:
    data = instance("emri_small.dcm")
    await store(http, [data])
    client = DICOMwebClient(url=archive.url)
    frames = client.retrieve_instance_frames(*uids(data), frame_numbers=[2, 3])
    ds = dcmread(io.BytesIO(data))
    size = len(ds.PixelData) // 10
    assert frames == [ds.PixelData[size : 2 * size], ds.PixelData[2 * size : 3 * size]]


async def test_frame_errors(http: httpx.AsyncClient) -> None:
    data = instance("CT_small.dcm")
    await store(http, [data])
    base = "/studies/{}/series/{}/instances/{}".format(*uids(data))
    assert (await http.get(base + "/frames/2")).status_code == 404
    assert (await http.get(base + "/frames/x")).status_code == 400
    assert (
        await http.get(base.replace("/instances/", "/instances/9") + "/frames/1")
    ).status_code == 404


async def test_bulkdata(archive: Archive, http: httpx.AsyncClient) -> None:
    data = instance("CT_small.dcm")
    await store(http, [data])
    (meta,) = (
        await http.get("/studies/{}/series/{}/instances/{}/metadata".format(*uids(data)))
    ).json()
    resp = await http.get(
        meta["7FE00010"]["BulkDataURI"],
        headers={"accept": 'multipart/related; type="*/*"'},
    )
    assert resp.status_code == 200
    (blob,) = split_multipart(resp.content, resp.headers["content-type"])
    assert blob == dcmread(io.BytesIO(data)).PixelData


async def test_public_base_url(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.dicomweb.conftest import start_archive

    archive, engine = start_archive(
        database_url, tmp_path, public_base_url="https://pacs.example/dicomweb"
    )
    try:
        data = instance()
        async with httpx.AsyncClient(base_url=archive.url) as http:
            body, ctype = multipart([data])
            resp = await http.post("/studies", content=body, headers={"content-type": ctype})
            ref = resp.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
            assert ref.startswith("https://pacs.example/dicomweb/studies/")
            (meta,) = (
                await http.get("/studies/{}/series/{}/instances/{}/metadata".format(*uids(data)))
            ).json()
            assert meta["7FE00010"]["BulkDataURI"].startswith("https://pacs.example/dicomweb/")
    finally:
        archive.server.call(engine.dispose())
        archive.server.__exit__()


async def test_cors(http: httpx.AsyncClient) -> None:
    pre = await http.options(
        "/studies",
        headers={
            "origin": "https://viewer.example",
            "access-control-request-method": "GET",
            "access-control-request-headers": "authorization, accept",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://viewer.example"
    assert "Authorization" in pre.headers["access-control-allow-headers"]
    resp = await http.get("/studies", headers={"origin": "https://viewer.example"})
    assert resp.headers["access-control-allow-origin"] == "https://viewer.example"
    assert resp.headers["cross-origin-resource-policy"] == "cross-origin"
    other = await http.get("/studies", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    denied = await http.options(
        "/studies",
        headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
    )
    assert denied.status_code == 403
    missing = await http.get("/nope", headers={"origin": "https://viewer.example"})
    assert missing.status_code == 404 and missing.headers["access-control-allow-origin"]


def test_sample_files_exist() -> None:
    assert sample_path("CT_small.dcm").exists()


def _context(archive: Archive):  # type: ignore[no-untyped-def]
    """The running archive's Context (the sub-app mounted at /dicomweb)."""
    mounted = archive.server._server.config.app
    return mounted.routes[0].app.state.dicomweb


async def test_frames_cache_is_per_establishment(archive: Archive, http: httpx.AsyncClient) -> None:
    archive.access.establishment = 1
    parts = list(ct_series(3, size=32))
    await store(http, parts)
    urls = ["/studies/{}/series/{}/instances/{}/frames/1".format(*uids(p)) for p in parts]

    async def frame(url: str) -> list[bytes]:
        resp = await http.get(url, headers={"accept": OHIF_FRAME})
        assert resp.status_code == 200
        return split_multipart(resp.content, resp.headers["content-type"])

    first = [await frame(u) for u in urls]
    cache = _context(archive).frame_cache
    assert len(cache.sources) == 3  # the whole series located by the first request
    # From the cache, the same bytes.
    assert [await frame(u) for u in urls] == first
    # Another establishment: not found, cached location or not; nothing remembered for it.
    archive.access.establishment = 2
    for url in urls:
        assert (await http.get(url, headers={"accept": OHIF_FRAME})).status_code == 404
    assert {key for key, _ in cache.allowed} == {("establishment", 1)}
    # The same instance under another study or series path is not found either.
    archive.access.establishment = 1
    study, series, sop = uids(parts[0])
    other = "/studies/{}/series/{}/instances/{}/frames/1"
    assert (await http.get(other.format(study, "1.2.3", sop))).status_code == 404
    assert (await http.get(other.format("1.2.3", series, sop))).status_code == 404


async def test_frames_cache_asks_sql_again_after_its_ttl(
    archive: Archive, http: httpx.AsyncClient
) -> None:
    from sqlalchemy import update

    from dicomweb.tables import studies

    archive.access.establishment = 1
    data = instance("CT_small.dcm")
    await store(http, [data])
    url = "/studies/{}/series/{}/instances/{}/frames/1".format(*uids(data))
    assert (await http.get(url, headers={"accept": OHIF_FRAME})).status_code == 200

    async def move() -> None:
        async with archive.db() as session, session.begin():
            await session.execute(update(studies).values(establishment_id=2))

    archive.server.call(move())
    # Within the TTL (5 s) the decision stands; once it has passed, SQL decides.
    cache = _context(archive).frame_cache
    assert (await http.get(url, headers={"accept": OHIF_FRAME})).status_code == 200
    cache.allowed = dict.fromkeys(cache.allowed, 0.0)  # as if the TTL had passed
    assert (await http.get(url, headers={"accept": OHIF_FRAME})).status_code == 404


async def test_a_file_shorter_than_recorded_is_never_sent_as_complete(
    archive: Archive, http: httpx.AsyncClient
) -> None:
    parts = list(ct_series(2, size=512))  # 512 KB files: sent from an mmap
    await store(http, parts)
    study, series, _ = uids(parts[0])
    stored = sorted(p for p in archive.storage.rglob("*.dcm"))
    assert len(stored) == 2
    with stored[0].open("r+b") as f:
        f.truncate(1000)
    with pytest.raises(httpx.HTTPError):
        resp = await http.get(
            f"/studies/{study}/series/{series}",
            headers={"accept": 'multipart/related; type="application/dicom"'},
        )
        # uvicorn ends the connection: httpx sees fewer bytes than Content-Length
        assert int(resp.headers["content-length"]) == len(resp.content)


async def test_a_missing_stored_file_is_said_before_anything_is_sent(
    archive: Archive, http: httpx.AsyncClient
) -> None:
    """An indexed instance whose file is gone (a disk or restore problem): every read
    of it answers 500 ``stored_file_missing`` as a whole JSON error, never a cut body;
    the study's other images are still served."""
    parts = list(ct_series(2, size=64))
    await store(http, parts)
    study, series, _ = uids(parts[0])
    gone = parts[0]
    stored = {dcmread(p).SOPInstanceUID: p for p in archive.storage.rglob("*.dcm")}
    stored[uids(gone)[2]].unlink()
    kept = uids(parts[1])[2]
    base = f"/studies/{study}/series/{series}"
    dicom = {"accept": 'multipart/related; type="application/dicom"'}
    for path, headers in (
        (base, dicom),
        (f"{base}/instances/{uids(gone)[2]}", dicom),
        (f"{base}/instances/{uids(gone)[2]}/frames/1", {"accept": OHIF_FRAME}),
        (f"{base}/instances/{uids(gone)[2]}/rendered", {"accept": "image/png"}),
    ):
        resp = await http.get(path, headers=headers)
        assert resp.status_code == 500, path
        assert resp.json()["error"]["code"] == "stored_file_missing", path
    resp = await http.get(f"{base}/instances/{kept}", headers=dicom)
    assert resp.status_code == 200
    assert split_multipart(resp.content, resp.headers["content-type"]) == [parts[1]]


async def test_series_metadata_gzipped_when_accepted(http: httpx.AsyncClient) -> None:
    """Series metadata repeats the same attributes for each instance: gzip-coded for a
    client that accepts it (RFC 9110 8.4), the same JSON once decoded; plain otherwise."""
    parts = list(ct_series(30, size=16))
    await store(http, parts)
    study, series, _ = uids(parts[0])
    path = f"/studies/{study}/series/{series}/metadata"
    plain = await http.get(path, headers={"accept-encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert len(plain.content) >= GZIP_MIN_BYTES
    async with http.stream("GET", path, headers={"accept-encoding": "gzip, br"}) as resp:
        raw = b"".join([part async for part in resp.aiter_raw()])
    assert resp.headers["content-encoding"] == "gzip"
    assert resp.headers["vary"] == "accept-encoding"
    assert resp.headers["content-type"].startswith("application/dicom+json")
    assert int(resp.headers["content-length"]) == len(raw) < len(plain.content) / 5
    assert json.loads(gzip.decompress(raw)) == plain.json()
    # One instance's metadata is below the threshold: not worth compressing.
    sop = uids(parts[0])[2]
    one = await http.get(f"/studies/{study}/series/{series}/instances/{sop}/metadata")
    assert "content-encoding" not in one.headers
