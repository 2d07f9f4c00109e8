"""WADO-URI (PS3.18 chapter 9): Retrieve DICOM Instance and Retrieve Rendered
Instance by query parameters; errors as PS3.18 9 says (the browser, a RIS link's
client, is in tests/browser/test_wado_uri.py)."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image
from pydicom import dcmread

from dicomweb.samples import instance, multipart

EXPLICIT_LE = "1.2.840.10008.1.2.1"


async def store(http: httpx.AsyncClient, parts: list[bytes]) -> None:
    body, ctype = multipart(parts)
    resp = await http.post("/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 200, resp.text


def query(data: bytes, **extra: str) -> dict[str, str]:
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    return {
        "requestType": "WADO",
        "studyUID": ds.StudyInstanceUID,
        "seriesUID": ds.SeriesInstanceUID,
        "objectUID": ds.SOPInstanceUID,
        **extra,
    }


async def test_dicom_and_rendered(http: httpx.AsyncClient) -> None:
    ct, jll = instance("CT_small.dcm"), instance("JPEG-LL.dcm")
    await store(http, [ct, jll])
    resp = await http.get("/wado", params=query(ct, contentType="application/dicom"))
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/dicom"
    assert resp.content == ct
    # No contentType and Accept */*: a JPEG (PS3.18 9.3).
    resp = await http.get("/wado", params=query(ct), headers={"accept": "*/*"})
    img = Image.open(io.BytesIO(resp.content))
    assert resp.headers["content-type"] == "image/jpeg" and img.format == "JPEG"
    assert img.size == (128, 128)
    resp = await http.get(
        "/wado",
        params=query(
            ct,
            contentType="image/png",
            rows="64",
            columns="64",
            region="0.0,0.0,0.5,0.5",
            windowCenter="40",
            windowWidth="400",
        ),
    )
    img = Image.open(io.BytesIO(resp.content))
    assert img.format == "PNG" and img.size == (64, 64)
    plain = await http.get("/wado", params=query(ct, contentType="image/png", rows="64"))
    assert plain.content != resp.content  # the region and window were applied
    # transferSyntax: the JPEG Lossless instance decompressed to Explicit VR LE.
    resp = await http.get(
        "/wado",
        params=query(jll, contentType="application/dicom", transferSyntax=EXPLICIT_LE),
    )
    assert resp.status_code == 200
    ds = dcmread(io.BytesIO(resp.content))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert (ds.pixel_array == dcmread(io.BytesIO(jll)).pixel_array).all()


async def test_multiframe_frame_number(http: httpx.AsyncClient) -> None:
    data = instance("emri_small.dcm")
    await store(http, [data])
    first = await http.get("/wado", params=query(data, contentType="image/png"))
    fifth = await http.get("/wado", params=query(data, contentType="image/png", frameNumber="5"))
    assert fifth.status_code == 200 and fifth.content != first.content
    beyond = await http.get("/wado", params=query(data, frameNumber="11"))
    assert beyond.status_code == 400


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"requestType": "WADO-RS"}, 400),
        ({"objectUID": "1.2.abc"}, 400),
        ({"objectUID": "1.2.3.4.5.6"}, 404),
        ({"contentType": "text/html"}, 406),
        ({"anonymize": "yes"}, 400),
        ({"annotation": "patient"}, 400),
        ({"windowCenter": "40"}, 400),
        ({"frameNumber": "1"}, 400),  # PS3.18 9.5.2: not a multi-frame instance
        ({"imageQuality": "0"}, 400),
        ({"region": "0.5,0.5,0.2,0.2"}, 400),
        ({"contentType": "application/dicom", "rows": "64"}, 400),
        ({"contentType": "application/dicom", "transferSyntax": "1.2.840.10008.1.2.4.50"}, 406),
    ],
)
async def test_errors(http: httpx.AsyncClient, change: dict[str, str], status: int) -> None:
    data = instance("CT_small.dcm")
    await store(http, [data])
    resp = await http.get("/wado", params={**query(data), **change})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["message"]


async def test_missing_parameters(http: httpx.AsyncClient) -> None:
    resp = await http.get("/wado", params={"requestType": "WADO", "studyUID": "1.2"})
    assert resp.status_code == 400 and "seriesUID" in resp.json()["error"]["message"]


async def test_scoped_and_authenticated(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The caller's study_filter applies: another establishment's instance is a
    404, and without the token a 401, as for WADO-RS."""
    from tests.dicomweb.conftest import start_archive

    archive, engine = start_archive(database_url, tmp_path)
    archive.access.token = "secret"
    auth = {"authorization": "Bearer secret"}
    try:
        data = instance()
        async with httpx.AsyncClient(base_url=archive.url, headers=auth) as http:
            archive.access.establishment = 1
            await store(http, [data])
            assert (await http.get("/wado", params=query(data))).status_code == 200
            archive.access.establishment = 2
            assert (await http.get("/wado", params=query(data))).status_code == 404
        async with httpx.AsyncClient(base_url=archive.url) as anonymous:
            assert (await anonymous.get("/wado", params=query(data))).status_code == 401
    finally:
        archive.server.call(engine.dispose())  # type: ignore[attr-defined]
        archive.server.__exit__()
