"""The DICOMweb conformance points through the real server: PUBLIC_URL in the
URLs, and the same authentication and tenancy on the new resources (rendered
study and series, decompressed frames and instances, XML search, WADO-URI) as
on the others: another establishment's study is a 404 (docs/dicomweb.md)."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread

from dicomweb.samples import instance, multipart
from server.core.config import Settings
from server.testing import LiveServer
from tests.helpers import exam_payload, of_exam

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]
PUBLIC = "https://tele.example"
RAW = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:dicomweb_client")


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(public_url=PUBLIC)


async def filed_instance(client_for: ClientFor) -> tuple[bytes, str]:
    """A JPEG 2000 lossless instance filed into an exam of establishment A; the
    path of its instance resource."""
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = (await urg.post("/api/exams", json=exam_payload())).json()
    base = f"/api/exams/{exam['id']}"
    assert (await rad.post(f"{base}/accept")).status_code == 200
    assert (await rad.post(f"{base}/protocol", json={"text": "TDM"})).status_code == 200
    assert (await man.post(f"{base}/protocol/ack")).status_code == 200
    data = instance("MR_small_jp2klossless.dcm", **of_exam(exam))
    body, ctype = multipart([data])
    resp = await man.post("/dicomweb/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 200, resp.text
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    path = (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    return data, path


async def test_urls_follow_public_url(live_server: LiveServer, client_for: ClientFor) -> None:
    data, path = await filed_instance(client_for)
    rad = await client_for("rad")
    (meta,) = (await rad.get(path + "/metadata")).json()
    assert meta["7FE00010"]["BulkDataURI"] == f"{PUBLIC}{path}/bulkdata/7FE00010"
    client = DICOMwebClient(
        url=f"{live_server.url}/dicomweb", headers={"Authorization": rad.headers["Authorization"]}
    )
    (study,) = client.search_for_studies()
    assert study["00081190"]["Value"][0].startswith(f"{PUBLIC}/dicomweb/studies/")
    assert len(data) > 0


async def test_new_resources_keep_tenancy(client_for: ClientFor) -> None:
    _, path = await filed_instance(client_for)
    series = path.rsplit("/instances/", 1)[0]
    study = series.rsplit("/series/", 1)[0]
    parts = path.split("/")
    wado = (
        f"/dicomweb/wado?requestType=WADO&studyUID={parts[3]}&seriesUID={parts[5]}"
        f"&objectUID={parts[7]}"
    )
    requests = [
        (series + "/rendered", {"accept": 'multipart/related; type="image/jpeg"'}),
        (study + "/rendered", {"accept": "image/png"}),
        (path + "/frames/1", {"accept": RAW}),
        (
            path,
            {"accept": RAW.replace("application/octet-stream", "application/dicom")},
        ),
        (wado, {}),
    ]
    rad, urg_b = await client_for("rad"), await client_for("urg_b")
    for url, headers in requests:
        assert (await rad.get(url, headers=headers)).status_code == 200, url
        refused = await urg_b.get(url, headers=headers)
        assert refused.status_code == 404, url
        assert refused.json()["error"]["code"] == "not_found"
    async with httpx.AsyncClient(base_url=str(rad.base_url)) as anonymous:
        for url, headers in requests:
            assert (await anonymous.get(url, headers=headers)).status_code == 401, url
    xml = {"accept": "application/dicom+xml"}
    seen = await rad.get("/dicomweb/studies", headers=xml)
    assert seen.status_code == 200 and b"NativeDicomModel" in seen.content
    unseen = await urg_b.get("/dicomweb/studies", headers=xml)
    assert unseen.status_code == 200 and b"NativeDicomModel" not in unseen.content
