"""Rendered resources and thumbnails (PS3.18 10.4.1.1.4 and 10.4.1.1.6)."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread

from dicomweb.render import to_image
from dicomweb.samples import ct_series, instance, multipart, sample_path
from tests.dicomweb.conftest import Archive


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
