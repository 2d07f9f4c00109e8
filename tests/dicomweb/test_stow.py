"""STOW-RS (PS3.18 10.5) against a live archive: dicomweb-client and raw HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.uid import generate_uid

from dicomweb.samples import instance, multipart, sample_path
from tests.dicomweb.conftest import Archive

pytestmark = pytest.mark.filterwarnings(
    # dicomweb-client warns that it sends no authentication over plain HTTP.
    "ignore::UserWarning:dicomweb_client"
)


def stored_files(archive: Archive) -> list[Path]:
    return [p for p in archive.storage.rglob("*.dcm")]


async def _instances(archive: Archive) -> list[object]:
    from sqlalchemy import select

    from dicomweb import tables as t

    async with archive.db() as session:
        return list((await session.execute(select(t.instances.c.sop_uid))).all())


def failed(body: dict) -> list[int]:
    return [item["00081197"]["Value"][0] for item in body.get("00081198", {}).get("Value", [])]


def test_store_with_dicomweb_client(archive: Archive) -> None:
    client = DICOMwebClient(url=archive.url)
    datasets = [dcmread(sample_path(n)) for n in ("CT_small.dcm", "MR_small.dcm")]
    result = client.store_instances(datasets)
    refs = result.ReferencedSOPSequence
    assert {r.ReferencedSOPInstanceUID for r in refs} == {d.SOPInstanceUID for d in datasets}
    assert refs[0].RetrieveURL.startswith(archive.url + "/studies/")
    assert len(stored_files(archive)) == 2
    assert len(archive.hooks.stored) == 2
    stored = archive.hooks.stored[0][1]
    assert stored.series_instance_count == 1
    assert stored.thumbnail_url.endswith(f"/series/{stored.series_uid}/thumbnail")


async def test_bytes_stored_unchanged_and_duplicate_is_idempotent(
    archive: Archive, http: httpx.AsyncClient
) -> None:
    data = instance("CT_small.dcm")
    body, ctype = multipart([data])
    first = await http.post("/studies", content=body, headers={"content-type": ctype})
    assert first.status_code == 200, first.text
    files = stored_files(archive)
    assert [f.read_bytes() for f in files] == [data]
    mtime = files[0].stat().st_mtime_ns
    again = await http.post("/studies", content=body, headers={"content-type": ctype})
    assert again.status_code == 200
    assert stored_files(archive) == files and files[0].stat().st_mtime_ns == mtime
    assert len(archive.hooks.stored) == 1
    found = (await http.get("/instances")).json()
    assert len(found) == 1


async def test_partial_failure_is_202(archive: Archive, http: httpx.AsyncClient) -> None:
    good = instance("MR_small.dcm")
    body, ctype = multipart([good, b"not dicom at all", good[: len(good) // 2]])
    resp = await http.post("/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 202, resp.text
    assert resp.headers["content-type"].startswith("application/dicom+json")
    payload = resp.json()
    assert failed(payload) == [0xC000, 0xC000]
    assert len(payload["00081199"]["Value"]) == 1
    assert len(stored_files(archive)) == 1
    assert list((archive.storage / "tmp").iterdir()) == []


async def test_study_uid_mismatch_is_409(archive: Archive, http: httpx.AsyncClient) -> None:
    body, ctype = multipart([instance(), instance()])
    resp = await http.post(
        f"/studies/{generate_uid()}", content=body, headers={"content-type": ctype}
    )
    assert resp.status_code == 409
    assert failed(resp.json()) == [0xA900, 0xA900]
    assert stored_files(archive) == []


async def test_store_into_named_study(archive: Archive, http: httpx.AsyncClient) -> None:
    study = generate_uid()
    body, ctype = multipart([instance(study=study), instance(study=study)])
    resp = await http.post(f"/studies/{study}", content=body, headers={"content-type": ctype})
    assert resp.status_code == 200
    assert resp.json()["00081190"]["Value"] == [f"{archive.url}/studies/{study}"]


async def test_missing_and_invalid_uids(archive: Archive, http: httpx.AsyncClient) -> None:
    no_series = dcmread(sample_path("CT_small.dcm"))
    del no_series.SeriesInstanceUID
    from dicomweb.samples import to_bytes

    bad_uid = instance(study="../../etc/passwd")
    body, ctype = multipart([to_bytes(no_series), bad_uid])
    resp = await http.post("/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 409
    assert sorted(failed(resp.json())) == [0xA900, 0xC000]
    assert stored_files(archive) == []


async def test_traversal_in_path_never_escapes(archive: Archive, http: httpx.AsyncClient) -> None:
    resp = await http.get("/studies/..%2F..%2Fetc/series/x/instances/y")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


async def test_not_authorised_instance(archive: Archive, http: httpx.AsyncClient) -> None:
    archive.access.refuse_patient = "SECRET"
    body, ctype = multipart([instance(PatientID="SECRET"), instance()])
    resp = await http.post("/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 202
    assert failed(resp.json()) == [0x0124]


@pytest.mark.parametrize(
    ("ctype", "status"),
    [
        ("application/dicom", 415),
        ('multipart/related; type="application/dicom+json"; boundary=x', 415),
        ('multipart/related; type="application/dicom"', 400),
    ],
)
async def test_content_type_errors(http: httpx.AsyncClient, ctype: str, status: int) -> None:
    resp = await http.post("/studies", content=b"x", headers={"content-type": ctype})
    assert resp.status_code == status
    assert resp.json()["error"]["message"]


async def test_malformed_multipart(archive: Archive, http: httpx.AsyncClient) -> None:
    ctype = 'multipart/related; type="application/dicom"; boundary=abc'
    resp = await http.post(
        "/studies", content=b"garbage without boundary", headers={"content-type": ctype}
    )
    assert resp.status_code == 400
    body, ctype = multipart([instance()])
    resp = await http.post("/studies", content=body[:-40], headers={"content-type": ctype})
    assert resp.status_code == 400
    assert stored_files(archive) == [] and list((archive.storage / "tmp").iterdir()) == []


async def test_non_dicom_part_type(http: httpx.AsyncClient) -> None:
    body, _ = multipart([instance()], content_type="text/plain")
    ctype = 'multipart/related; type="application/dicom"; boundary=' + body[2:34].decode()
    resp = await http.post("/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 409
    assert failed(resp.json()) == [0xC000]


async def test_too_large(database_url: str, tmp_path: Path) -> None:
    from tests.dicomweb.conftest import start_archive

    archive, engine = start_archive(database_url, tmp_path, max_body_bytes=50_000)
    try:
        body, ctype = multipart([instance(), instance()])
        async with httpx.AsyncClient(base_url=archive.url) as http:
            resp = await http.post("/studies", content=body, headers={"content-type": ctype})
            assert resp.status_code == 413
            assert resp.json()["error"]["code"] == "too_large"

            async def chunks():  # no Content-Length: the limit applies while streaming
                for i in range(0, len(body), 8192):
                    yield body[i : i + 8192]

            resp = await http.post("/studies", content=chunks(), headers={"content-type": ctype})
            assert resp.status_code == 413
        # The first part may have been stored before the limit was reached: then
        # whole, with its row; nothing else stays, not even a temp file.
        rows = len(archive.server.call(_instances(archive)))
        assert len(stored_files(archive)) == rows <= 1
        for _ in range(200):
            if not list((archive.storage / "tmp").iterdir()):
                break
            await asyncio.sleep(0.01)
        assert list((archive.storage / "tmp").iterdir()) == []
    finally:
        archive.server.call(engine.dispose())
        archive.server.__exit__()
