"""Images go to the exam they belong to, or to a person who decides
(docs/dicomweb.md "Filing and reconciliation"), over the real server: STOW-RS,
QIDO, the queue's API, the room and the personal channel."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect

from dicomweb.samples import ct_series, instance, multipart
from dicomweb.storage import Storage
from server.core.audit import AuditEntry
from server.core.config import Settings
from server.roomclient import RoomClient
from server.testing import LiveServer
from tests.helpers import PASSWORD, dicom_patient, exam_payload, login, of_exam
from tests.reports.helpers import DRAFT

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]
LEROY = {"id": "IPP-LEROY", "name": "LEROY^Émile", "birth_date": "1950-01-01", "sex": "M"}
MARTIN = {"id": "IPP-MARTIN", "name": "MARTIN^Jean", "birth_date": "1960-02-02", "sex": "M"}


async def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


async def requested(urg: httpx.AsyncClient, patient: dict[str, str] | None = None) -> Any:
    body = exam_payload(patient=patient) if patient else exam_payload()
    return await ok(await urg.post("/api/exams", json=body), 201)


async def acquiring(
    urg: httpx.AsyncClient,
    rad: httpx.AsyncClient,
    man: httpx.AsyncClient,
    patient: dict[str, str] | None = None,
    exam: dict[str, Any] | None = None,
) -> dict[str, Any]:
    exam = exam or await requested(urg, patient)
    base = f"/api/exams/{exam['id']}"
    await ok(await rad.post(f"{base}/accept"))
    await ok(await rad.post(f"{base}/protocol", json={"text": "TDM cérébrale"}))
    return dict(await ok(await man.post(f"{base}/protocol/ack")))


async def delivered(
    urg: httpx.AsyncClient, rad: httpx.AsyncClient, man: httpx.AsyncClient, patient: dict[str, str]
) -> dict[str, Any]:
    exam = await acquiring(urg, rad, man, patient)
    base = f"/api/exams/{exam['id']}"
    await ok(await man.post(f"{base}/images-complete"))
    await ok(await rad.put(f"{base}/report", json=DRAFT))
    await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
    done = await ok(await urg.post(f"{base}/acknowledge", json={"critical_acknowledged": True}))
    assert done["status"] == "delivered"
    return dict(done)


async def stow(
    client: httpx.AsyncClient, parts: list[bytes], study: str | None = None
) -> httpx.Response:
    body, ctype = multipart(parts)
    url = f"/dicomweb/studies/{study}" if study else "/dicomweb/studies"
    return await client.post(url, content=body, headers={"Content-Type": ctype})


def outcomes(resp: httpx.Response) -> list[tuple[str, str]]:
    """Per file: (FILED | ASIDE | REFUSED, reason code) from the private block."""
    body = resp.json()
    items = [*body.get("00081199", {}).get("Value", []), *body.get("00081198", {}).get("Value", [])]
    return [(i["00771001"]["Value"][0], i.get("00771002", {}).get("Value", [""])[0]) for i in items]


def messages(resp: httpx.Response) -> list[str]:
    items = resp.json().get("00081199", {}).get("Value", [])
    return [i["00771003"]["Value"][0] for i in items]


async def queue(client: httpx.AsyncClient, status: str = "pending") -> list[dict[str, Any]]:
    body = await ok(await client.get("/api/reconciliation", params={"status": status}))
    return list(body["groups"])


async def studies(client: httpx.AsyncClient, study_uid: str) -> Any:
    params = {"StudyInstanceUID": study_uid, "includefield": "00201208"}
    return await ok(await client.get("/dicomweb/studies", params=params))


async def image_events(client: httpx.AsyncClient, exam_id: str) -> list[dict[str, Any]]:
    events = (await ok(await client.get(f"/api/exams/{exam_id}/events")))["events"]
    return [e for e in events if e["kind"] == "images.received"]


async def audit_rows(settings: Settings, action: str) -> list[AuditEntry]:
    from server.composition import app_context

    async with app_context(settings) as app, app.read() as db:
        return list(await db.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def quarantined(settings: Settings) -> list[Path]:
    return sorted((Path(settings.dicom_storage) / "quarantine").glob("*.dcm"))


async def test_another_exams_accession_from_a_room_is_kept_aside(client_for: ClientFor) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    leroy = await acquiring(urg, rad, man, LEROY)
    martin = await delivered(urg, rad, man, MARTIN)
    slices = list(ct_series(2, size=32, AccessionNumber=martin["accession_number"]))
    # From LEROY's room: the upload is bound to LEROY's exam.
    resp = await stow(man, slices, study=leroy["study_instance_uid"])
    assert resp.status_code == 202, resp.text
    assert outcomes(resp) == [("ASIDE", "other_exam")] * 2
    assert all(m.startswith("kept aside: ") for m in messages(resp))
    # The same slices posted to /studies, as the room did before: aside too.
    resp = await stow(man, list(ct_series(2, size=32, AccessionNumber=martin["accession_number"])))
    assert outcomes(resp) == [("ASIDE", "study_uid_differs")] * 2
    # Nothing reached either exam: no series, no room event.
    for exam in (leroy, martin):
        found = await studies(man, exam["study_instance_uid"])
        assert all(s.get("00201208", {}).get("Value", [0]) != [2] for s in found)
        assert await image_events(man, exam["id"]) == []
    groups = await queue(man)
    assert sorted(g["reason"] for g in groups) == ["other_exam", "study_uid_differs"]
    assert all(g["count"] == 2 for g in groups)


async def test_a_study_uid_of_another_site_changes_nothing_there(client_for: ClientFor) -> None:
    urg_a, man_a, rad = [await client_for(u) for u in ("urg_a", "man_a", "rad")]
    urg_b, man_b, rad2 = [await client_for(u) for u in ("urg_b", "man_b", "rad2")]
    exam_a = await requested(urg_a)  # radiologists see it in their pool
    exam_b = await acquiring(urg_b, rad2, man_b, MARTIN)
    uid_a = exam_a["study_instance_uid"]
    answers = []
    for uploader in (rad2, man_b):
        for study in (uid_a, generate_uid()):  # a site-A exam's UID, or an unknown one
            part = instance(
                study=study, AccessionNumber=exam_b["accession_number"], **dicom_patient(exam_b)
            )
            unbound = await stow(uploader, [part])
            bound = await stow(uploader, [part], study=study)
            answers.append([(r.status_code, outcomes(r), messages(r)) for r in (unbound, bound)])
    # The same answer whether the UID exists at another site or not.
    assert answers[0] == answers[1] and answers[2] == answers[3], answers
    assert answers[0][0][1] == [("ASIDE", "study_uid_differs")]
    # Kept aside for B: the radiographer's in B's queue.
    assert {g["establishment_id"] for g in await queue(man_b)} == {exam_b_site(exam_b)}
    # Site A's radiographer pushes the real images: every one is filed.
    exam_a = await acquiring(urg_a, rad, man_a, exam=exam_a)
    real = await stow(man_a, list(ct_series(3, size=32, **of_exam(exam_a))), study=uid_a)
    assert real.status_code == 200 and outcomes(real) == [("FILED", "")] * 3
    [study] = await studies(urg_a, uid_a)
    assert study["00201208"]["Value"] == [3]
    unknown = generate_uid()
    for client in (urg_b, man_b, rad2):
        assert await studies(client, uid_a) == await studies(client, unknown) == []
        gone = await client.get(f"/dicomweb/studies/{uid_a}/metadata")
        never = await client.get(f"/dicomweb/studies/{unknown}/metadata")
        assert gone.status_code == never.status_code == 404
        assert gone.text.replace(uid_a, "UID") == never.text.replace(unknown, "UID")


def exam_b_site(exam: dict[str, Any]) -> int:
    """Site B's id: the second establishment the accounts fixture makes."""
    assert exam["establishment"]["code"] == "HOPB"
    return 2


async def test_patient_mismatch_is_kept_aside(client_for: ClientFor) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await acquiring(urg, rad, man, LEROY)
    wrong = {**of_exam(exam), "PatientName": "LEROY^Emilie", "PatientBirthDate": "19510101"}
    right = {**of_exam(exam), "PatientName": "leroy^emile"}  # case and accents do not count
    resp = await stow(man, [instance(**wrong), instance(**right)], study=exam["study_instance_uid"])
    assert outcomes(resp) == [("ASIDE", "patient_mismatch"), ("FILED", "")]
    assert "PatientName, PatientBirthDate" in messages(resp)[0]
    [group] = await queue(man)
    assert group["candidate_exam"]["id"] == exam["id"]
    assert group["seen"]["patient_name"] == "LEROY^Emilie"


async def test_images_after_the_report_are_a_late_series(
    live_server: LiveServer, client_for: ClientFor
) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await acquiring(urg, rad, man, LEROY)
    first = await stow(man, [instance(**of_exam(exam))], study=exam["study_instance_uid"])
    assert outcomes(first) == [("FILED", "")]
    exam = await delivered_from(urg, rad, man, exam)
    token = rad.headers["Authorization"].removeprefix("Bearer ")
    async with RoomClient(live_server.ws_url, exam["id"], token, since=exam["last_seq"]) as room:
        late = await stow(man, list(ct_series(2, size=32, **of_exam(exam))))
        assert late.status_code == 200 and outcomes(late) == [("FILED", "")] * 2
        event = await room.next_event()
        assert event["kind"] == "images.received" and event["body"]["late"] is True
    [on_time, *_] = await image_events(man, exam["id"])
    assert on_time["body"]["late"] is False


async def delivered_from(
    urg: httpx.AsyncClient, rad: httpx.AsyncClient, man: httpx.AsyncClient, exam: dict[str, Any]
) -> dict[str, Any]:
    base = f"/api/exams/{exam['id']}"
    await ok(await man.post(f"{base}/images-complete"))
    await ok(await rad.put(f"{base}/report", json=DRAFT))
    await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
    return dict(
        await ok(await urg.post(f"{base}/acknowledge", json={"critical_acknowledged": True}))
    )


async def test_file_and_discard_with_audit_and_tenancy(
    client_for: ClientFor, settings: Settings
) -> None:
    urg, rad, man, man_b, coord = [
        await client_for(u) for u in ("urg_a", "rad", "man_a", "man_b", "coord")
    ]
    exam = await acquiring(urg, rad, man, LEROY)
    exam_b = await acquiring(await client_for("urg_b"), rad, man_b, MARTIN)
    # The modality made its own study UID: kept aside, the exam as candidate.
    own = {k: v for k, v in of_exam(exam).items() if k != "study"}
    original_study = generate_uid()
    resp = await stow(man, list(ct_series(2, size=32, study=original_study, **own)))
    assert outcomes(resp) == [("ASIDE", "study_uid_differs")] * 2
    assert len(quarantined(settings)) == 2
    [group] = await queue(man)
    assert group["count"] == 2 and group["candidate_exam"]["id"] == exam["id"]
    assert group["uploader"]["display_name"] == "MAN_A"
    # Another site sees nothing and can do nothing: 404 as for an unknown id.
    assert await queue(man_b) == []
    for path in (f"/api/reconciliation/{group['id']}", "/api/reconciliation/no-such-item"):
        refused = await man_b.post(f"{path}/file", json={"exam_id": exam_b["id"]})
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
        refused = await man_b.post(f"{path}/discard", json={"reason": "not ours"})
        assert refused.status_code == 404
    assert (await urg.get("/api/reconciliation")).status_code == 403
    # Nor can site A file it into site B's exam.
    url = f"/api/reconciliation/{group['id']}"
    other = await man.post(f"{url}/file", json={"exam_id": exam_b["id"]})
    assert other.status_code == 404
    # Filed: coerced to the exam, originals kept, through the normal ingest.
    filed = await ok(
        await man.post(f"/api/reconciliation/{group['id']}/file", json={"exam_id": exam["id"]})
    )
    assert len(filed["filed"]) == 2 and filed["failed"] == []
    assert await queue(man) == [] and quarantined(settings) == []
    [study] = await studies(urg, exam["study_instance_uid"])
    assert study["00201208"]["Value"] == [2]
    sop = group["items"][0]["sop_uid"]
    got = await urg.get(
        f"/dicomweb/studies/{exam['study_instance_uid']}/series/{group['series_uid']}"
        f"/instances/{sop}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert got.status_code == 200
    ds = pydicom.dcmread(io.BytesIO(got.content[got.content.index(b"\r\n\r\n") + 4 :]))
    assert ds.StudyInstanceUID == exam["study_instance_uid"]
    [original] = ds.OriginalAttributesSequence
    assert original.ReasonForTheAttributeModification == "COERCE"
    assert original.ModifiedAttributesSequence[0].StudyInstanceUID == original_study
    assert await image_events(urg, exam["id"])
    [row] = await audit_rows(settings, "reconciliation.file")
    assert row.username == "man_a" and row.exam_id == exam["id"]
    assert sorted(row.detail["items"]) == sorted(i["id"] for i in group["items"])
    assert [g["id"] for g in await queue(man, "filed")] == [group["id"]]
    # Discarded by a coordinator: the bytes go, the row stays, audited.
    stray = await stow(man, [instance()])
    assert outcomes(stray) == [("ASIDE", "no_exam")]
    [group] = await queue(coord)
    url = f"/api/reconciliation/{group['id']}"
    assert (await coord.post(f"{url}/discard", json={})).status_code == 422
    done = await ok(
        await coord.post(f"/api/reconciliation/{group['id']}/discard", json={"reason": "test"})
    )
    assert done["discarded"] == [group["id"]] and quarantined(settings) == []
    again = await coord.post(f"/api/reconciliation/{group['id']}/discard", json={"reason": "x"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_resolved"
    [row] = await audit_rows(settings, "reconciliation.discard")
    assert row.username == "coord" and row.detail["why"] == "test"
    # Kept aside: one row per ingest batch (a request may be indexed in several).
    aside = await audit_rows(settings, "reconciliation.aside")
    assert sum(r.detail["count"] for r in aside) == 3 and {r.username for r in aside} == {"man_a"}


@asynccontextmanager
async def channel(server: LiveServer, client: httpx.AsyncClient) -> AsyncIterator[ClientConnection]:
    async with connect(
        f"{server.ws_url}/ws/notifications",
        additional_headers={"Authorization": client.headers["Authorization"]},
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        yield ws


async def next_frame(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return frame


async def test_the_queue_is_announced_live(live_server: LiveServer, client_for: ClientFor) -> None:
    urg, rad, man, man_b, coord = [
        await client_for(u) for u in ("urg_a", "rad", "man_a", "man_b", "coord")
    ]
    exam = await acquiring(urg, rad, man, LEROY)
    async with (
        channel(live_server, man) as to_man,
        channel(live_server, coord) as to_coord,
        channel(live_server, man_b) as to_man_b,
    ):
        await stow(man, [instance(**{**of_exam(exam), "PatientSex": "F"})])
        for ws in (to_man, to_coord):
            added = await next_frame(ws)
            assert added["kind"] == "reconciliation.added" and added["body"]["count"] == 1
        # Site B's radiographer hears nothing of it.
        await to_man_b.send(json.dumps({"type": "ping"}))
        assert (await next_frame(to_man_b))["type"] == "pong"
        [group] = await queue(man)
        await ok(await man.post(f"/api/reconciliation/{group['id']}/discard", json={"reason": "x"}))
        for ws in (to_man, to_coord):
            resolved = await next_frame(ws)
            assert resolved["kind"] == "reconciliation.resolved"
            assert resolved["body"]["items"] == [group["id"]]


async def test_a_resent_instance_joins_its_pending_item(
    client_for: ClientFor, settings: Settings
) -> None:
    man = await client_for("man_a")
    part = instance()
    first, again = await stow(man, [part]), await stow(man, [part])
    ids = [r.json()["00081199"]["Value"][0]["00771004"]["Value"][0] for r in (first, again)]
    assert outcomes(again) == [("ASIDE", "no_exam")] and ids[0] == ids[1]
    [group] = await queue(man)
    assert group["count"] == 1 and len(quarantined(settings)) == 1


async def test_an_instance_left_without_its_row_waits_in_the_queue(
    settings: Settings, accounts: object
) -> None:
    """A file the archive placed but never indexed (it was killed in between) is
    found at the next start-up and queued for the coordinators, who file it."""
    data = next(ct_series(1, size=32))
    ds = pydicom.dcmread(io.BytesIO(data))
    storage = Storage(Path(settings.dicom_storage))
    rel = storage.relative_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    storage.absolute(rel).parent.mkdir(parents=True)
    storage.absolute(rel).write_bytes(data)
    with LiveServer(settings) as server:
        clients = []
        for username in ("urg_a", "rad", "man_a", "coord"):
            client = httpx.AsyncClient(base_url=server.url, timeout=10)
            client.headers["Authorization"] = f"Bearer {await login(client, username)}"
            clients.append(client)
        urg, rad, man, coord = clients
        try:
            groups: list[dict[str, Any]] = []
            for _ in range(200):
                groups = await queue(coord)
                if groups:
                    break
                await asyncio.sleep(0.05)
            [group] = groups
            assert group["reason"] == "interrupted_store" and group["count"] == 1
            assert group["items"][0]["sop_uid"] == ds.SOPInstanceUID
            assert not storage.absolute(rel).exists()
            # Not the site's to see: no establishment could be established for it.
            assert await queue(man) == []
            exam = await acquiring(urg, rad, man, LEROY)
            url = f"/api/reconciliation/{group['id']}/file"
            filed = await ok(await coord.post(url, json={"exam_id": exam["id"]}))
            assert len(filed["filed"]) == 1
            [study] = await studies(urg, exam["study_instance_uid"])
            assert study["00201208"]["Value"] == [1]
        finally:
            for client in clients:
                await client.aclose()
