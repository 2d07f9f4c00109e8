"""Rendered resources and thumbnails (PS3.18 10.4.1.1.4 and 10.4.1.1.6)."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom import dcmread

from dicomweb.render import to_image
from dicomweb.samples import ct_series, instance, multipart, sample_path
from tests.dicomweb.conftest import Archive

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:dicomweb_client")


async def store(http: httpx.AsyncClient, parts: list[bytes]) -> list[str]:
    body, ctype = multipart(parts)
    resp = await http.post("/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 200, resp.text
    return [
        r["00081190"]["Value"][0].removeprefix("/dicomweb")
        for r in resp.json()["00081199"]["Value"]
    ]


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [(None, "JPEG"), ("image/png", "PNG"), ("image/gif", "GIF"), ("image/*", "JPEG")],
)
async def test_rendered_formats(http: httpx.AsyncClient, accept: str | None, fmt: str) -> None:
    (url,) = await store(http, [instance("CT_small.dcm")])
    headers = {"accept": accept} if accept else {}
    resp = await http.get(url + "/rendered", headers=headers)
    assert resp.status_code == 200, resp.text
    img = Image.open(io.BytesIO(resp.content))
    assert img.format == fmt and img.size == (128, 128)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "JPEG2000.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "examples_palette.dcm",
        "US1_J2KR.dcm",
    ],
)
async def test_rendered_codecs(http: httpx.AsyncClient, name: str) -> None:
    (url,) = await store(http, [instance(name)])
    resp = await http.get(url + "/rendered", params={"viewport": "64,64"})
    assert resp.status_code == 200, resp.text
    assert max(Image.open(io.BytesIO(resp.content)).size) == 64


async def test_rendered_frame_window_and_errors(http: httpx.AsyncClient) -> None:
    (url,) = await store(http, [instance("emri_small.dcm")])
    resp = await http.get(
        url + "/frames/5/rendered", params={"window": "100,200,LINEAR", "quality": "50"}
    )
    assert resp.status_code == 200
    assert (await http.get(url + "/frames/11/rendered")).status_code == 404
    assert (await http.get(url + "/rendered", params={"window": "a,b"})).status_code == 400
    assert (await http.get(url + "/rendered", headers={"accept": "image/tiff"})).status_code == 406


async def test_thumbnails_cached(archive: Archive, http: httpx.AsyncClient) -> None:
    urls = await store(http, list(ct_series(5, size=256)))
    series_url = urls[0].rsplit("/instances/", 1)[0]
    study_url = series_url.rsplit("/series/", 1)[0]
    for url in (study_url, series_url, urls[0]):
        resp = await http.get(url + "/thumbnail")
        assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(resp.content)).size == (128, 128)
    cached = list((archive.storage / "thumbnails").iterdir())
    assert len(cached) == 3
    again = await http.get(series_url + "/thumbnail")
    assert again.content == (await http.get(series_url + "/thumbnail")).content
    assert len(list((archive.storage / "thumbnails").iterdir())) == 3


def test_voi_window_and_monochrome1() -> None:
    ds = dcmread(sample_path("CT_small.dcm"))
    arr = ds.pixel_array
    ds.WindowCenter, ds.WindowWidth = 40, 400
    img = np.asarray(to_image(ds, arr, None))
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = np.asarray(to_image(ds, arr, None))
    assert np.abs(img.astype(int) + inverted.astype(int) - 255).max() <= 1
    flat = np.asarray(to_image(ds, arr, (0.0, 1.0, "LINEAR")))
    assert set(np.unique(flat)) <= {0, 255}


def split_parts(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """(headers, body) of each part of a multipart/related response."""
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"')
    out = []
    for chunk in body.split(b"--" + boundary.encode())[1:-1]:
        head, _, payload = chunk[2:].partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if ": " in line)
        out.append(({k.lower(): v for k, v in fields.items()}, payload[:-2]))
    return out


async def test_rendered_series_and_study_as_multipart(
    archive: Archive, http: httpx.AsyncClient
) -> None:
    """PS3.18 rendered study and series, asked as multipart/related: one rendered
    image per image instance, in instance order, each with its Content-Location;
    an instance without pixel data (an SR) has no part."""
    slices = list(ct_series(3, size=64))
    study = dcmread(io.BytesIO(slices[0]), stop_before_pixels=True).StudyInstanceUID
    report = instance("test-SR.dcm", study=study)
    urls = await store(http, [*slices, report])
    series_url = urls[0].rsplit("/instances/", 1)[0]
    for url in (series_url, series_url.rsplit("/series/", 1)[0]):
        resp = await http.get(
            url + "/rendered",
            params={"viewport": "32,32"},
            headers={"accept": 'multipart/related; type="image/png"'},
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith('multipart/related; type="image/png"')
        parts = split_parts(resp.content, resp.headers["content-type"])
        assert [h["content-location"] for h, _ in parts] == [u + "/rendered" for u in urls[:3]]
        for headers, body in parts:
            assert headers["content-type"] == "image/png"
            img = Image.open(io.BytesIO(body))
            assert img.format == "PNG" and img.size == (32, 32)
        # Each part is what the instance's own rendered resource gives.
        alone = await http.get(
            urls[1] + "/rendered", params={"viewport": "32,32"}, headers={"accept": "image/png"}
        )
        assert parts[1][1] == alone.content


def test_rendered_series_with_dicomweb_client(archive: Archive) -> None:
    """dicomweb-client asks a rendered series or study for one image: the first
    instance's, rendered with the options given."""
    slices = list(ct_series(3, size=64))
    client = DICOMwebClient(url=archive.url)
    client.store_instances([dcmread(io.BytesIO(s)) for s in slices])
    first = dcmread(io.BytesIO(slices[0]), stop_before_pixels=True)
    study, series = first.StudyInstanceUID, first.SeriesInstanceUID
    params = {"viewport": "48,48", "window": "40,400"}
    one = client.retrieve_series_rendered(study, series, media_types=("image/jpeg",), params=params)
    assert Image.open(io.BytesIO(one)).size == (48, 48)
    own = client.retrieve_instance_rendered(
        study, series, first.SOPInstanceUID, media_types=("image/jpeg",), params=params
    )
    assert one == own
    # dicomweb-client has no rendered study: the same request by hand.
    whole = httpx.get(f"{archive.url}/studies/{study}/rendered", params=params)
    assert whole.headers["content-type"] == "image/jpeg" and whole.content == own


async def test_rendered_series_errors(http: httpx.AsyncClient) -> None:
    urls = await store(http, [instance("test-SR.dcm"), instance("CT_small.dcm")])
    sr_series = urls[0].rsplit("/instances/", 1)[0]
    resp = await http.get(sr_series + "/rendered")
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "cannot_render"
    ct_series_url = urls[1].rsplit("/instances/", 1)[0]
    resp = await http.get(ct_series_url + "/rendered", headers={"accept": "text/html"})
    assert resp.status_code == 406
    resp = await http.get(ct_series_url.replace("/series/", "/series/9") + "/rendered")
    assert resp.status_code == 404
