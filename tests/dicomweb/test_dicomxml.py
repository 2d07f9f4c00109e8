"""``application/dicom+xml`` (PS3.19 Native DICOM Model) for QIDO-RS and STOW-RS:
it parses back and says what the DICOM JSON of the same request says."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread

from dicomweb.samples import ct_series, instance, multipart, split_multipart
from tests.dicomweb.conftest import Archive

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:dicomweb_client")
NS = "{http://dicom.nema.org/PS3.19/models/NativeDICOM}"
XML = "application/dicom+xml"
INTS = {"IS", "SL", "SS", "UL", "US", "SV", "UV"}
FLOATS = {"DS", "FL", "FD"}


def xml_root(document: bytes) -> ET.Element:
    return ET.fromstring(document)  # noqa: S314 - the test server's own response


def parse(element: ET.Element) -> dict[str, Any]:
    """A NativeDicomModel (or Item) back to DICOM JSON, written independently of
    the server's builder, following PS3.19 A.1."""
    out: dict[str, Any] = {}
    for attr in element.findall(f"{NS}DicomAttribute"):
        vr = attr.get("vr", "")
        item: dict[str, Any] = {"vr": vr}
        bulk = attr.find(f"{NS}BulkData")
        inline = attr.find(f"{NS}InlineBinary")
        if bulk is not None:
            item["BulkDataURI"] = bulk.get("uri")
        elif inline is not None:
            item["InlineBinary"] = inline.text
        elif vr == "SQ":
            items = sorted(attr.findall(f"{NS}Item"), key=lambda e: int(e.get("number", "0")))
            if items:
                item["Value"] = [parse(i) for i in items]
        elif vr == "PN":
            names = attr.findall(f"{NS}PersonName")
            if names:
                item["Value"] = [_name(n) for n in names]
        else:
            values = sorted(attr.findall(f"{NS}Value"), key=lambda e: int(e.get("number", "0")))
            if values:
                item["Value"] = [_value(vr, v.text) for v in values]
        out[attr.get("tag", "")] = item
    return out


def _name(node: ET.Element) -> dict[str, str]:
    parts = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
    out = {}
    for group in node:
        text = "^".join((group.findtext(f"{NS}{p}") or "") for p in parts).rstrip("^")
        out[group.tag.removeprefix(NS)] = text
    return out


def _value(vr: str, text: str | None) -> Any:
    if text is None:
        return None
    if vr in INTS:
        return int(text)
    if vr in FLOATS:
        return float(text)
    return text


def normalised(dataset: dict[str, Any]) -> dict[str, Any]:
    """JSON as the XML can say it: PN components without trailing carets,
    numbers as numbers."""
    out: dict[str, Any] = {}
    for tag, attr in dataset.items():
        attr = dict(attr)
        if "Value" in attr:
            if attr["vr"] == "SQ":
                attr["Value"] = [normalised(i or {}) for i in attr["Value"]]
            elif attr["vr"] == "PN":
                attr["Value"] = [
                    {k: v.rstrip("^") for k, v in (n or {}).items()} for n in attr["Value"]
                ]
            elif attr["vr"] in INTS | FLOATS:
                attr["Value"] = [None if v is None else float(v) for v in attr["Value"]]
        out[tag] = attr
    return out


async def test_qido_xml_matches_json(archive: Archive, http: httpx.AsyncClient) -> None:
    parts = [
        instance("CT_small.dcm", PatientName="Dupont^Jean^^Dr", AccessionNumber="A<&>1"),
        *ct_series(2, size=16),
    ]
    body, ctype = multipart(parts)
    assert (
        await http.post("/studies", content=body, headers={"content-type": ctype})
    ).status_code == 200
    for path in ("/studies", "/series", "/instances?includefield=all"):
        as_json = (await http.get(path)).json()
        resp = await http.get(path, headers={"accept": f'multipart/related; type="{XML}"'})
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("multipart/related")
        assert f'type="{XML}"' in resp.headers["content-type"]
        documents = split_multipart(resp.content, resp.headers["content-type"])
        assert len(documents) == len(as_json) > 0
        for document, expected in zip(documents, as_json, strict=True):
            root = xml_root(document)
            assert root.tag == f"{NS}NativeDicomModel"
            assert normalised(parse(root)) == normalised(expected)
            # Keywords of public attributes, as PS3.19 lets a reader rely on.
            name = root.find(f"{NS}DicomAttribute[@tag='0020000D']")
            assert name is not None and name.get("keyword") == "StudyInstanceUID"
    # The RetrieveURL in XML is absolute, like in JSON.
    resp = await http.get("/studies", headers={"accept": XML})
    root = xml_root(split_multipart(resp.content, resp.headers["content-type"])[0])
    url = root.findtext(f"{NS}DicomAttribute[@tag='00081190']/{NS}Value")
    assert url is not None and url.startswith(archive.url + "/studies/")


async def test_qido_other_media_types_are_406(http: httpx.AsyncClient) -> None:
    resp = await http.get("/studies", headers={"accept": "text/html"})
    assert resp.status_code == 406
    assert XML in resp.json()["error"]["message"]
    # JSON stays the default.
    resp = await http.get("/studies", headers={"accept": "text/html, */*"})
    assert resp.headers["content-type"].startswith("application/dicom+json")


async def test_stow_xml_response_matches_json(http: httpx.AsyncClient) -> None:
    body, ctype = multipart([instance(), b"not dicom"])
    resp = await http.post("/studies", content=body, headers={"content-type": ctype, "accept": XML})
    assert resp.status_code == 202 and resp.headers["content-type"].startswith(XML)
    again = await http.post("/studies", content=body, headers={"content-type": ctype})
    from_xml = parse(xml_root(resp.content))
    expected = {tag: attr for tag, attr in again.json().items() if not int(tag[:4], 16) % 2}
    for seq in ("00081199", "00081198"):
        expected[seq] = {
            "vr": "SQ",
            "Value": [
                {t: a for t, a in item.items() if not int(t[:4], 16) % 2}
                for item in expected[seq]["Value"]
            ],
        }
    assert normalised(from_xml) == normalised(expected)


def test_dicomweb_client_reads_the_xml_store_response(archive: Archive) -> None:
    """dicomweb-client parses an application/dicom+xml STOW response itself."""
    data = instance()
    session = requests.Session()
    media_types: list[str] = []
    session.hooks["response"].append(
        lambda r, *_, **__: media_types.append(r.headers["content-type"])
    )
    client = DICOMwebClient(url=archive.url, session=session, headers={"Accept": XML})
    result = client.store_instances([dcmread(io.BytesIO(data))])
    assert media_types == [XML]
    sop = dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID
    assert result.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == sop
    assert result.ReferencedSOPSequence[0].RetrieveURL.startswith(archive.url)


def test_native_model_of_values() -> None:
    """The mapping itself, on values: private creator, empty values, person name
    groups, sequences, inline binary, characters XML cannot carry."""
    from dicomweb.dicomxml import to_xml

    dataset = {
        "00100010": {
            "vr": "PN",
            "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}],
        },
        "00180050": {"vr": "DS", "Value": [2.5, None, 3]},
        "00081199": {
            "vr": "SQ",
            "Value": [{"00081155": {"vr": "UI", "Value": ["1.2.3"]}}, {}],
        },
        "00091010": {"vr": "LO", "Value": ["secret\x01value"]},
        "00090010": {"vr": "LO", "Value": ["ACME 1"]},
        "00420011": {"vr": "OB", "InlineBinary": "AAEC"},
        "00081030": {"vr": "LO"},
    }
    root = xml_root(to_xml(dataset))
    back = parse(root)
    assert back["00100010"]["Value"] == [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}]
    assert back["00180050"]["Value"] == [2.5, None, 3.0]
    assert back["00081199"]["Value"] == [{"00081155": {"vr": "UI", "Value": ["1.2.3"]}}, {}]
    assert back["00091010"]["Value"] == ["secret\ufffdvalue"]
    assert back["00420011"] == {"vr": "OB", "InlineBinary": "AAEC"}
    assert back["00081030"] == {"vr": "LO"}
    private = root.find(f"{NS}DicomAttribute[@tag='00091010']")
    assert private is not None and private.get("privateCreator") == "ACME 1"
    assert private.get("keyword") is None
    family = root.find(f".//{NS}PersonName/{NS}Alphabetic/{NS}FamilyName")
    assert family is not None and family.text == "Yamada"
