"""Absolute URLs in responses (docs/dicomweb.md "URLs"): RetrieveURL, BulkDataURI
and Content-Location work as given, from the request's scheme and host."""

from __future__ import annotations

import io

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread

from dicomweb.samples import ct_series, instance, multipart, split_multipart
from tests.dicomweb.conftest import Archive

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:dicomweb_client")


def uids(data: bytes) -> tuple[str, str, str]:
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def test_dicomweb_client_follows_bulk_data_uris_as_given(archive: Archive) -> None:
    """dicomweb-client sends its Host header without the port: the URLs still
    name the port the archive listens on, and retrieve_bulkdata works on them."""
    parts = list(ct_series(2, size=32))
    client = DICOMwebClient(url=archive.url)
    stored = client.store_instances([dcmread(io.BytesIO(p)) for p in parts])
    retrieve_url = stored.ReferencedSOPSequence[0].RetrieveURL
    assert retrieve_url.startswith(archive.url + "/studies/")
    study, series, _ = uids(parts[0])
    metadata = client.retrieve_series_metadata(study, series)
    for meta in metadata:
        uri = meta["7FE00010"]["BulkDataURI"]
        assert uri.startswith(archive.url + "/studies/")
        (pixels,) = client.retrieve_bulkdata(uri)
        sop = meta["00080018"]["Value"][0]
        original = next(p for p in parts if uids(p)[2] == sop)
        assert pixels == dcmread(io.BytesIO(original)).PixelData
    studies = client.search_for_studies()
    assert studies[0]["00081190"]["Value"] == [f"{archive.url}/studies/{study}"]
    # The study's RetrieveURL from QIDO works with the client as given.
    (study_url,) = studies[0]["00081190"]["Value"]
    assert len(client.retrieve_series(study, series)) == 2
    assert study_url.endswith(study)


async def test_content_location_and_retrieve_url_are_absolute(
    archive: Archive, http: httpx.AsyncClient
) -> None:
    data = instance()
    body, ctype = multipart([data])
    stored = (await http.post("/studies", content=body, headers={"content-type": ctype})).json()
    url = stored["00081199"]["Value"][0]["00081190"]["Value"][0]
    study, series, sop = uids(data)
    assert url == f"{archive.url}/studies/{study}/series/{series}/instances/{sop}"
    async with httpx.AsyncClient(timeout=30) as anywhere:  # no base URL: the URL as given
        resp = await anywhere.get(
            url, headers={"accept": "multipart/related; type=application/dicom"}
        )
    assert resp.status_code == 200
    assert split_multipart(resp.content, resp.headers["content-type"]) == [data]
    assert f"Content-Location: {url}".encode() in resp.content[:600]


async def test_trusted_proxy_scheme_and_host(archive: Archive, http: httpx.AsyncClient) -> None:
    """Behind a proxy uvicorn trusts (127.0.0.1 by default), X-Forwarded-Proto
    sets the scheme and the proxy's Host is kept as it is; X-Forwarded-Host is
    not read. A Host that is not a host name is never echoed."""
    data = instance()
    body, ctype = multipart([data])
    await http.post("/studies", content=body, headers={"content-type": ctype})
    study = uids(data)[0]
    proxied = await http.get(
        "/studies",
        headers={
            "host": "pacs.example",
            "x-forwarded-proto": "https",
            "x-forwarded-for": "10.1.2.3",
            "x-forwarded-host": "evil.example",
        },
    )
    assert proxied.json()[0]["00081190"]["Value"] == [
        f"https://pacs.example/dicomweb/studies/{study}"
    ]
    with_port = await http.get("/studies", headers={"host": "pacs.example:8443"})
    assert with_port.json()[0]["00081190"]["Value"] == [
        f"http://pacs.example:8443/dicomweb/studies/{study}"
    ]
    odd = await http.get("/studies", headers={"host": "evil.example/x?"})
    assert odd.json()[0]["00081190"]["Value"] == [f"{archive.url}/studies/{study}"]
