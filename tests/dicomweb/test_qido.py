"""QIDO-RS (PS3.18 10.6) matching through a live archive, with dicomweb-client and
the OHIF request pattern."""

from __future__ import annotations

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from dicomweb.samples import instance, multipart
from tests.dicomweb.conftest import Archive

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:dicomweb_client")

PEOPLE = [
    ("Smith^John", "P1", "20200105", "CT", "Head CT", "ACC1", "101500"),
    ("SMITHSON^Anna", "P2", "20200131", "MR", "Brain MR", "ACC_2", "143000"),
    ("Dupont^Jeanne", "P3", "20200215", "CT", "Thorax 50%", "ACC3", "090000"),
]


@pytest.fixture
async def seeded(archive: Archive, http: httpx.AsyncClient) -> dict[str, str]:
    uids = {}
    parts = []
    for name, pid, date, mod, desc, acc, time in PEOPLE:
        uids[pid] = generate_uid()
        parts.append(
            instance(
                "CT_small.dcm" if mod == "CT" else "MR_small.dcm",
                study=uids[pid],
                PatientName=name,
                PatientID=pid,
                StudyDate=date,
                Modality=mod,
                StudyDescription=desc,
                AccessionNumber=acc,
                StudyTime=time,
            )
        )
    body, ctype = multipart(parts)
    resp = await http.post("/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 200, resp.text
    return uids


def ids(body: list[dict]) -> list[str]:
    return sorted(d["00100020"]["Value"][0] for d in body)


MATCHING = [
    ({}, ["P1", "P2", "P3"]),
    ({"PatientID": "P2"}, ["P2"]),
    ({"PatientName": "Smith*"}, ["P1", "P2"]),  # case-insensitive
    ({"PatientName": "smith^john"}, ["P1"]),
    ({"PatientName": "Dup?nt*"}, ["P3"]),
    ({"00100010": "*Anna"}, ["P2"]),
    ({"PatientName": "jean", "fuzzymatching": "true"}, ["P3"]),
    ({"PatientName": "jean", "fuzzymatching": "false"}, []),
    ({"StudyDate": "20200101-20200131"}, ["P1", "P2"]),
    ({"StudyDate": "20200201-"}, ["P3"]),
    ({"StudyDate": "-20200105"}, ["P1"]),
    ({"StudyDate": "20200215"}, ["P3"]),
    ({"StudyTime": "1000-1500"}, ["P1", "P2"]),
    ({"StudyTime": "-0900"}, ["P3"]),
    ({"ModalitiesInStudy": "MR"}, ["P2"]),
    ({"ModalitiesInStudy": "MR,CT"}, ["P1", "P2", "P3"]),
    ({"StudyDescription": "*50%"}, ["P3"]),  # LIKE's own % is escaped
    ({"AccessionNumber": "ACC_2"}, ["P2"]),
    ({"AccessionNumber": "ACC_"}, []),
    ({"limit": "2"}, ["P1", "P2"]),
    ({"limit": "2", "offset": "2"}, ["P3"]),
]


async def test_study_matching(seeded: dict[str, str], http: httpx.AsyncClient) -> None:
    """One archive, every case of PS3.4 C.2.2.2 matching we support."""
    for query, expected in MATCHING:
        resp = await http.get("/studies", params=query)
        assert resp.status_code == 200, (query, resp.text)
        assert resp.headers["content-type"].startswith("application/dicom+json")
        assert ids(resp.json()) == expected, query


async def test_uid_list_matching(seeded: dict[str, str], http: httpx.AsyncClient) -> None:
    wanted = f"{seeded['P1']},{seeded['P3']}"
    assert ids((await http.get("/studies", params={"StudyInstanceUID": wanted})).json()) == [
        "P1",
        "P3",
    ]
    back = f"{seeded['P1']}\\{seeded['P2']}"
    assert ids((await http.get("/studies", params={"StudyInstanceUID": back})).json()) == [
        "P1",
        "P2",
    ]


async def test_percent_encoded_values(seeded: dict[str, str], http: httpx.AsyncClient) -> None:
    """dicomweb-client encodes ``*``, ``,`` and ``-`` (docs/dicomweb.md "Decisions")."""
    url = (
        "/studies?PatientName=Smi%2A&StudyDate=20200101%2D20200131&includefield=00081030%2C00080060"
    )
    body = (await http.get(url)).json()
    assert ids(body) == ["P1", "P2"]
    assert body[0]["00081030"]["Value"] == ["Head CT"]


async def test_dicomweb_client_search(archive: Archive, seeded: dict[str, str]) -> None:
    client = DICOMwebClient(url=archive.url)
    found = client.search_for_studies(
        search_filters={"PatientName": "Smi*", "StudyDate": "20200101-20200131"}
    )
    assert ids(found) == ["P1", "P2"]
    series = client.search_for_series(seeded["P2"])
    assert [s["00080060"]["Value"] for s in series] == [["MR"]]
    inst = client.search_for_instances(seeded["P2"], series[0]["0020000E"]["Value"][0])
    assert len(inst) == 1 and inst[0]["00080016"]["Value"]
    assert client.search_for_series(search_filters={"Modality": "CT"}).__len__() == 2
    assert len(client.search_for_instances()) == 3


async def test_ohif_pattern(
    archive: Archive, seeded: dict[str, str], http: httpx.AsyncClient
) -> None:
    resp = await http.get(
        "/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060"
    )
    studies = resp.json()
    assert len(studies) == 3
    s = next(d for d in studies if d["00100020"]["Value"] == ["P1"])
    assert s["00100010"]["Value"] == [{"Alphabetic": "Smith^John"}]
    assert s["00080061"]["Value"] == ["CT"]
    assert s["00201206"]["Value"] == [1] and s["00201208"]["Value"] == [1]
    assert s["00081190"]["Value"] == [f"{archive.url}/studies/{seeded['P1']}"]
    resp = await http.get(
        f"/studies/{seeded['P1']}/series",
        params={"includefield": "00080021,00080031,0008103E,00200011"},
    )
    series = resp.json()
    assert series[0]["0020000D"]["Value"] == [seeded["P1"]]
    assert "00080021" in series[0] or series[0]["00200011"]


async def test_includefield_all_and_keywords(
    archive: Archive, seeded: dict[str, str], http: httpx.AsyncClient
) -> None:
    body = (
        await http.get("/instances", params=[("PatientID", "P1"), ("includefield", "all")])
    ).json()
    assert body[0]["00280010"]["Value"] == [128]  # Rows from the stored metadata
    assert "7FE00010" in body[0] and body[0]["7FE00010"]["BulkDataURI"].startswith(
        archive.url + "/"
    )
    body = (
        await http.get(
            "/studies", params=[("includefield", "PatientAge"), ("includefield", "00101010")]
        )
    ).json()
    assert all("00101010" in d for d in body if d["00100020"]["Value"] != ["P3"]) or body


BAD = [
    {"NoSuchKeyword": "x"},
    {"Modality": "CT"},  # a series attribute in a study query
    {"limit": "-1"},
    {"fuzzymatching": "maybe"},
    {"includefield": "NotAKeyword"},
    {"00400275.00321060": "x"},
]


async def test_bad_queries_are_400(http: httpx.AsyncClient) -> None:
    for query in BAD:
        resp = await http.get("/studies", params=query)
        assert resp.status_code == 400, query
        assert resp.json()["error"]["code"] == "bad_query"


async def test_scoping_by_establishment(archive: Archive, http: httpx.AsyncClient) -> None:
    archive.access.establishment = 1
    body, ctype = multipart([instance(PatientID="A1")])
    assert (
        await http.post("/studies", content=body, headers={"content-type": ctype})
    ).status_code == 200
    archive.access.establishment = 2
    body, ctype = multipart([instance(PatientID="B1")])
    await http.post("/studies", content=body, headers={"content-type": ctype})
    assert ids((await http.get("/studies")).json()) == ["B1"]
    archive.access.establishment = 1
    assert ids((await http.get("/studies")).json()) == ["A1"]
    assert len((await http.get("/instances")).json()) == 1


async def test_authentication_required(archive: Archive, http: httpx.AsyncClient) -> None:
    archive.access.token = "s3cret"
    resp = await http.get("/studies")
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthenticated"
    resp = await http.get("/studies", headers={"authorization": "Bearer s3cret"})
    assert resp.status_code == 200 and resp.json() == []
