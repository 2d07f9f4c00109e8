"""Reports over real HTTP: draft, signature, immutability, addenda, acknowledgement."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
from typing import Any

import httpx
import pydicom
import pytest
from sqlalchemy import select
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.composition import app_context
from server.core.audit import AuditEntry
from server.core.config import Settings
from server.reports.formats import ENCAPSULATED_PDF, report_sha256_of_dicom
from server.testing import LiveServer
from tests.helpers import PASSWORD
from tests.reports.helpers import DRAFT, ClientFor, exam_images_complete, ok


async def _audit_rows(settings: Settings, action: str) -> list[AuditEntry]:
    async with app_context(settings) as app, app.db() as db:
        rows = await db.scalars(select(AuditEntry).where(AuditEntry.action == action))
        return list(rows.all())


async def test_full_report_lifecycle(api_for: ClientFor, settings: Settings) -> None:
    urg, rad, man, coord = [await api_for(u) for u in ("urg_a", "rad", "man_a", "coord")]
    exam = await exam_images_complete(urg, rad, man)
    base = f"/api/exams/{exam['id']}"

    # The radiologist starts from the template of the exam's modality and body part.
    start = await ok(await rad.get(f"{base}/report"))
    assert start["status"] == "none"
    assert start["template"]["template_id"] == "ct-head"
    assert start["template"]["indication"] == exam["clinical_question"]

    saved = await ok(await rad.put(f"{base}/report", json={**DRAFT, "critical": False}))
    assert saved["exam"]["status"] == "images_complete"
    await ok(await rad.put(f"{base}/report", json=DRAFT))

    # Drafts: radiologists and coordinators see them; site staff only know one exists.
    rad_events = (await ok(await rad.get(f"{base}/events")))["events"]
    urg_events = (await ok(await urg.get(f"{base}/events")))["events"]
    assert [e["kind"] for e in rad_events].count("report.draft") == 2
    assert "report.draft" not in [e["kind"] for e in urg_events]
    assert (await ok(await coord.get(f"{base}/report")))["findings"] == DRAFT["findings"]
    seen_by_urg = await ok(await urg.get(f"{base}/report"))
    assert seen_by_urg == {
        "status": "draft",
        "in_progress": True,
        "updated_at": seen_by_urg["updated_at"],
    }

    # A wrong password signs nothing and is audited.
    bad = await rad.post(f"{base}/report/sign", json={"password": "not it"})
    assert bad.status_code == 403 and bad.json()["error"]["code"] == "wrong_password"
    assert (await ok(await rad.get(base)))["status"] == "images_complete"
    denied = await _audit_rows(settings, "report.sign")
    assert [(r.outcome, r.detail["reason"], r.exam_id) for r in denied] == [
        ("denied", "wrong password", exam["id"])
    ]

    signed = await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
    digest = signed["sha256"]
    assert len(digest) == 64 and signed["exam"]["status"] == "reported"
    assert signed["exam"]["times"]["reported_at"] is not None

    # Frozen: no route changes it.
    for resp in (
        await rad.put(f"{base}/report", json={**DRAFT, "conclusion": "changed"}),
        await rad.post(f"{base}/report/sign", json={"password": PASSWORD}),
    ):
        assert resp.status_code == 409, resp.text
    report = await ok(await urg.get(f"{base}/report"))
    assert report["status"] == "signed" and report["conclusion"] == DRAFT["conclusion"]
    assert report["sha256"] == digest and report["signer"]["name"] == "RAD"
    assert report["archived_at"] is not None

    urg_events = (await ok(await urg.get(f"{base}/events")))["events"]
    signed_event = [e for e in urg_events if e["kind"] == "report.signed"][0]
    assert signed_event["body"]["sha256"] == digest and signed_event["body"]["critical"] is True

    # The three formats carry the same hash; PDF and DICOM carry the same PDF.
    pdf = (await urg.get(f"{base}/report.pdf")).content
    assert pdf.startswith(b"%PDF-") and f"sha256:{digest}".encode() in pdf
    assert (await urg.get(f"{base}/report.pdf")).content == pdf
    fhir_resp = await urg.get(f"{base}/report.fhir.json")
    assert fhir_resp.headers["content-type"].startswith("application/fhir+json")
    fhir = fhir_resp.json()
    assert fhir["resourceType"] == "DiagnosticReport" and fhir["status"] == "final"
    assert {"system": "urn:teleimagerie:report-sha256", "value": digest} in fhir["identifier"]
    assert base64.b64decode(fhir["presentedForm"][0]["data"]) == pdf
    dcm = (await urg.get(f"{base}/report.dcm")).content
    ds = pydicom.dcmread(io.BytesIO(dcm))
    assert ds.SOPClassUID == ENCAPSULATED_PDF
    assert ds.StudyInstanceUID == exam["study_instance_uid"]
    assert ds.PatientID == exam["patient"]["id"] and ds.AccessionNumber == exam["accession_number"]
    assert report_sha256_of_dicom(ds) == digest
    assert bytes(ds.EncapsulatedDocument)[: ds.EncapsulatedDocumentLength] == pdf
    # The hospital's PACS finds the same DICOM PDF in the exam's study (WADO-RS).
    study = exam["study_instance_uid"]
    series = (await urg.get(f"/dicomweb/studies/{study}/series")).json()
    assert [s["00080060"]["Value"] for s in series] == [["DOC"]]
    retrieved = await urg.get(
        f"/dicomweb/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
        headers={"Accept": 'multipart/related; type="application/dicom"'},
    )
    assert retrieved.status_code == 200
    assert dcm in retrieved.content

    # A critical finding needs an explicit acknowledgement by the urgentist.
    refused = await urg.post(f"{base}/acknowledge")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "critical_ack_required"
    assert (await man.post(f"{base}/acknowledge", json={})).status_code == 403
    delivered = await ok(
        await urg.post(f"{base}/acknowledge", json={"critical_acknowledged": True})
    )
    assert delivered["status"] == "delivered" and delivered["times"]["delivered_at"]
    report = await ok(await urg.get(f"{base}/report"))
    assert report["critical_acknowledged"] is True
    assert report["acknowledged_by"] == delivered["requester"]["id"]

    # Corrections are signed addenda, chained to the report; the formats follow.
    bad = await rad.post(f"{base}/report/addenda", json={"text": "x", "password": "no"})
    assert bad.status_code == 403
    add = await ok(
        await rad.post(
            f"{base}/report/addenda",
            json={"text": "Précision : pas de thrombus visible.", "password": PASSWORD},
        ),
        201,
    )
    assert add["number"] == 1 and add["report_sha256"] == digest and add["sha256"] != digest
    fhir2 = (await urg.get(f"{base}/report.fhir.json")).json()
    assert fhir2["status"] == "appended"
    assert {"system": "urn:teleimagerie:report-sha256", "value": digest} in fhir2["identifier"]
    ds2 = pydicom.dcmread(io.BytesIO((await urg.get(f"{base}/report.dcm")).content))
    assert report_sha256_of_dicom(ds2) == digest
    assert ds2.SOPInstanceUID != ds.SOPInstanceUID and ds2.SeriesInstanceUID == ds.SeriesInstanceUID
    assert ds2.InstanceNumber == 2
    kinds = [e["kind"] for e in (await ok(await urg.get(f"{base}/events")))["events"]]
    assert kinds[-3:] == ["report.signed", "exam.delivered", "report.addendum"]


async def test_sign_needs_a_complete_report_in_the_right_state(api_for: ClientFor) -> None:
    urg, rad, man = [await api_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await exam_images_complete(urg, rad, man)
    base = f"/api/exams/{exam['id']}"
    no_draft = await rad.post(f"{base}/report/sign", json={"password": PASSWORD})
    assert no_draft.status_code == 409 and no_draft.json()["error"]["code"] == "no_draft"
    await ok(await rad.put(f"{base}/report", json={**DRAFT, "conclusion": " ", "dose": None}))
    incomplete = await rad.post(f"{base}/report/sign", json={"password": PASSWORD})
    assert incomplete.status_code == 422
    assert {f["field"] for f in incomplete.json()["error"]["fields"]} == {"conclusion", "dose"}
    # Nothing signed, nothing billed: the draft can still be completed and signed.
    await ok(await rad.put(f"{base}/report", json=DRAFT))
    await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
    # Non-critical acknowledgement needs no flag; an acknowledged exam stays delivered.
    assert (await urg.post(f"{base}/acknowledge", json={"critical_acknowledged": True})).is_success
    assert (await urg.post(f"{base}/acknowledge")).status_code == 409

    bad = await rad.put(f"{base}/report", json={**DRAFT, "surprise": 1})
    assert bad.status_code == 422


async def test_drafts_and_formats_respect_roles_and_tenancy(
    api_for: ClientFor, settings: Settings
) -> None:
    urg, rad, man, rad2, urg_b, admin = [
        await api_for(u) for u in ("urg_a", "rad", "man_a", "rad2", "urg_b", "admin")
    ]
    exam = await exam_images_complete(urg, rad, man)
    base = f"/api/exams/{exam['id']}"
    assert (await urg.put(f"{base}/report", json=DRAFT)).status_code == 403
    for client in (rad2, urg_b, admin):  # not theirs: 404, whatever they ask
        assert (await client.put(f"{base}/report", json=DRAFT)).status_code == 404
        assert (await client.get(f"{base}/report.pdf")).status_code == 404
        assert (await client.post(f"{base}/report/sign", json={"password": "x"})).status_code == 404
    missing = await urg.get(f"{base}/report.pdf")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "report_not_signed"
    denied = await _audit_rows(settings, "access.denied")
    assert len(denied) >= 9
    assert {r.username for r in denied} >= {"rad2", "urg_b", "admin"}
    assert all(r.outcome == "denied" and r.exam_id == exam["id"] for r in denied)


async def test_templates_route(api_for: ClientFor) -> None:
    rad = await api_for("rad")
    found = await ok(await rad.get("/api/report-templates?modality=CT&body_part=chest"))
    assert found["templates"][0]["id"] == "ct-chest"
    assert found["templates"][-1]["id"] == "generic"
    mr = await ok(await rad.get("/api/report-templates?modality=MR&body_part=KNEE"))
    assert [t["id"] for t in mr["templates"]] == ["mr-generic", "generic"]


async def test_reads_and_commands_are_audited(
    api_for: ClientFor, settings: Settings, api: httpx.AsyncClient
) -> None:
    bad_login = await api.post("/api/session", json={"username": "rad", "password": "nope"})
    assert bad_login.status_code == 401
    urg, rad, man, coord = [await api_for(u) for u in ("urg_a", "rad", "man_a", "coord")]
    exam = await exam_images_complete(urg, rad, man)
    await ok(await urg.get(f"/api/exams/{exam['id']}"))
    trail = await ok(await coord.get(f"/api/audit?exam={exam['id']}"))
    actions = [(e["action"], e["user"]["username"]) for e in reversed(trail["entries"])]
    assert actions == [
        ("exam.request", "urg_a"),
        ("command.accept", "rad"),
        ("command.protocol", "rad"),
        ("command.protocol_ack", "man_a"),
        ("command.images_complete", "man_a"),
        ("exam.read", "urg_a"),
    ]
    assert trail["entries"][0]["addr"] == "127.0.0.1"
    logins = await ok(await coord.get("/api/audit?user=rad&limit=1000"))
    outcomes = [e["outcome"] for e in logins["entries"] if e["action"] == "login"]
    assert outcomes == ["ok", "failed"]  # newest first
    assert (await urg.get("/api/audit")).status_code == 403
    assert (await coord.get("/api/audit?limit=0")).status_code == 400
    body = json.dumps(trail)
    assert exam["patient"]["name"] not in body  # the trail holds ids, not patient data
    assert hashlib.sha256(b"").hexdigest() not in body


async def _kinds_until(ws: Any, last: str) -> list[str]:
    kinds: list[str] = []
    while not kinds or kinds[-1] != last:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] == "event":
            kinds.append(frame["event"]["kind"])
    return kinds


async def test_live_room_hides_drafts_from_site_staff(
    client_for: ClientFor, live_server: LiveServer
) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await exam_images_complete(urg, rad, man)
    base = f"/api/exams/{exam['id']}"
    url = f"{live_server.ws_url}/ws/exams/{exam['id']}?since={exam['last_seq']}"
    async with (
        connect(url, additional_headers={"Authorization": urg.headers["Authorization"]}) as u_ws,
        connect(url, additional_headers={"Authorization": rad.headers["Authorization"]}) as r_ws,
    ):
        for ws in (u_ws, r_ws):
            assert json.loads(await ws.recv())["type"] == "welcome"
        await ok(await rad.put(f"{base}/report", json=DRAFT))
        await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
        assert await _kinds_until(r_ws, "report.signed") == ["report.draft", "report.signed"]
        assert await _kinds_until(u_ws, "report.signed") == ["report.signed"]
    urg_b = await client_for("urg_b")
    async with connect(
        url, additional_headers={"Authorization": urg_b.headers["Authorization"]}
    ) as b_ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(b_ws.recv(), 10)
        assert b_ws.close_code == 4404
    coord = await client_for("coord")
    trail = (await ok(await coord.get(f"/api/audit?exam={exam['id']}")))["entries"]
    joins = {(e["user"]["username"], e["outcome"]) for e in trail if e["action"] == "room.join"}
    assert joins == {("urg_a", "ok"), ("rad", "ok")}
    refused = [e for e in trail if e["action"] == "access.denied"]
    assert [(e["user"]["username"], e["detail"]["code"]) for e in refused] == [
        ("urg_b", "not_found")
    ]


async def test_a_template_placeholder_left_in_the_report_blocks_the_signature(
    api_for: ClientFor,
) -> None:
    urg, rad, man = [await api_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await exam_images_complete(urg, rad, man)
    base = f"/api/exams/{exam['id']}"
    # The radiologist keeps the template's dose line as it came, placeholders included.
    template = (await ok(await rad.get(f"{base}/report")))["template"]
    assert "[…]" in template["dose"]
    draft = {**DRAFT, "dose": template["dose"]}
    await ok(await rad.put(f"{base}/report", json=draft))
    refused = await rad.post(f"{base}/report/sign", json={"password": PASSWORD})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "incomplete_report"
    assert [(f["field"], f["reason"]) for f in error["fields"]] == [("dose", "placeholder")]
    assert "dose" in error["message"] and "placeholder" in error["message"]
    # The older templates' bare ellipsis, in the dose line and a conclusion, is refused too.
    old = {**DRAFT, "dose": "PDL : … mGy.cm ; CTDIvol : 55 mGy", "conclusion": "AVC [...]"}
    await ok(await rad.put(f"{base}/report", json=old))
    refused = await rad.post(f"{base}/report/sign", json={"password": PASSWORD})
    assert refused.status_code == 422
    assert [f["field"] for f in refused.json()["error"]["fields"]] == ["conclusion", "dose"]
    # Nothing was signed: the draft is completed, then signed.
    assert (await ok(await rad.get(f"{base}/report")))["status"] == "draft"
    await ok(await rad.put(f"{base}/report", json=DRAFT))
    signed = await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
    assert signed["exam"]["status"] == "reported"
