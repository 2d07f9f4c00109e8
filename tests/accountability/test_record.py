"""The exam's record, of an exam driven through the real server (docs/accountability.md)."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import httpx
import pypdf
from pypdf.generic import DictionaryObject
from sqlalchemy import select

from dicomweb.samples import ct_series, multipart
from server.accountability.record import local
from server.composition import app_context
from server.core.audit import AuditEntry
from server.core.config import Settings
from server.roomclient import RoomClient
from server.testing import LiveServer
from tests.helpers import PASSWORD, exam_payload, of_exam
from tests.reports.helpers import DRAFT, ClientFor, ok

SLICES = 4


async def _stow(client: httpx.AsyncClient, parts: list[bytes]) -> None:
    body, ctype = multipart(parts)
    resp = await client.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
    assert resp.status_code == 200, resp.text


async def complete_exam(live_server: LiveServer, client_for: ClientFor) -> dict[str, Any]:
    """Request, accept, protocol, acknowledgement, images by STOW, chat, report,
    signature, acknowledgement: every step through the real server."""
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await ok(await urg.post("/api/exams", json=exam_payload()), 201)
    base = f"/api/exams/{exam['id']}"
    await ok(await rad.post(f"{base}/accept"))
    await ok(await rad.post(f"{base}/protocol", json={"text": "TDM cérébrale sans injection"}))
    await ok(await man.post(f"{base}/protocol/ack"))
    token = rad.headers["Authorization"].removeprefix("Bearer ")
    async with RoomClient(live_server.ws_url, exam["id"], token, since=4) as room:
        await _stow(man, list(ct_series(SLICES, size=64, **of_exam(exam))))
        while True:  # the archive coalesces the burst: wait for the final count
            event = await room.next_event()
            if event["kind"] == "images.received" and event["body"]["count"] == SLICES:
                break
        await room.chat("Pas d'hémorragie visible, je rédige.")
    await ok(await man.post(f"{base}/images-complete"))
    await ok(await rad.put(f"{base}/report", json=DRAFT))
    await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
    await ok(await urg.post(f"{base}/acknowledge", json={"critical_acknowledged": True}))
    return dict(exam)


def _facts(pdf: bytes) -> dict[str, Any]:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    data: dict[str, Any] = json.loads(reader.attachments["record.json"][0])
    return data


def _fonts(reader: pypdf.PdfReader) -> list[DictionaryObject]:
    fonts = []
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            if font["/Subtype"] == "/Type0":
                font = font["/DescendantFonts"][0].get_object()
            fonts.append(font)
    return fonts


async def test_record_of_a_complete_exam(
    live_server: LiveServer, client_for: ClientFor, settings: Settings
) -> None:
    exam = await complete_exam(live_server, client_for)
    urg, coord = await client_for("urg_a"), await client_for("coord")
    events = (await ok(await urg.get(f"/api/exams/{exam['id']}/events")))["events"]
    kinds = [e["kind"] for e in events]
    for kind in (
        "exam.requested",
        "exam.accepted",
        "protocol.proposed",
        "protocol.acknowledged",
        "images.received",
        "chat.message",
        "exam.images_complete",
        "report.signed",
        "exam.delivered",
    ):
        assert kind in kinds

    resp = await urg.get(f"/api/exams/{exam['id']}/record.pdf")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/pdf"
    pdf = resp.content
    digest = hashlib.sha256(pdf).hexdigest()
    assert resp.headers["x-record-sha256"] == digest

    # Every step the hospital sees, in order, with the same times as the events.
    facts = _facts(pdf)
    assert [(e["seq"], e["kind"], e["at"]) for e in facts["events"]] == [
        (e["seq"], e["kind"], e["at"]) for e in events
    ]
    assert "report.draft" not in [e["kind"] for e in facts["events"]]
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    chronology = text[text.index("Chronologie") :]
    positions = [chronology.index(f"#{e['seq']}  {local(e['at'])}") for e in events]
    assert positions == sorted(positions)
    assert "Pas d'hémorragie visible, je rédige." in text
    assert DRAFT["conclusion"] in text.replace("\n", " ")
    assert facts["series"][0]["count"] == SLICES
    assert facts["report"]["sha256"] in text
    assert facts["report"]["acknowledged_at"] == next(
        e["at"] for e in events if e["kind"] == "exam.delivered"
    )
    assert facts["exam"]["consent"] is True and "Consentement du patient : recueilli" in text

    # The hash is in the audit trail, with who asked.
    async with app_context(settings) as app, app.db() as db:
        rows = (
            await db.scalars(select(AuditEntry).where(AuditEntry.action == "record.generated"))
        ).all()
    assert [(r.exam_id, r.username, r.detail["sha256"]) for r in rows] == [
        (exam["id"], "urg_a", digest)
    ]

    # Coordinators may have it too.
    assert (await coord.get(f"/api/exams/{exam['id']}/record.pdf")).status_code == 200


async def test_record_is_pdfa(live_server: LiveServer, client_for: ClientFor) -> None:
    exam = await complete_exam(live_server, client_for)
    urg = await client_for("urg_a")
    pdf = (await urg.get(f"/api/exams/{exam['id']}/record.pdf")).content
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    assert not reader.is_encrypted
    root = reader.trailer["/Root"]
    xmp = root["/Metadata"].get_object().get_data().decode()
    assert "<pdfaid:part>3</pdfaid:part>" in xmp
    assert "<pdfaid:conformance>B</pdfaid:conformance>" in xmp
    intent = root["/OutputIntents"][0].get_object()
    assert intent["/S"] == "/GTS_PDFA1" and "/DestOutputProfile" in intent
    fonts = _fonts(reader)
    assert fonts and all("/FontFile2" in f["/FontDescriptor"] for f in fonts)
    # The attached facts are an associated file (PDF/A-3).
    assert "/AF" in root


async def test_record_refused_to_others(live_server: LiveServer, client_for: ClientFor) -> None:
    urg = await client_for("urg_a")
    exam = await ok(await urg.post("/api/exams", json=exam_payload()), 201)
    url = f"/api/exams/{exam['id']}/record.pdf"
    other = await (await client_for("urg_b")).get(url)
    same_as_exam = await (await client_for("urg_b")).get(f"/api/exams/{exam['id']}")
    assert other.status_code == same_as_exam.status_code == 404
    assert other.json()["error"]["code"] == same_as_exam.json()["error"]["code"]
    # Radiologists read the exam but the record is the hospital's.
    rad = await (await client_for("rad")).get(url)
    assert rad.status_code == 403
    assert (await (await client_for("man_a")).get(url)).status_code == 200
