"""The stroke alert: the request, the worklist order, the protocol preselected, the
clock's windows and the escalation at the stroke delays (docs/stroke.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from rooms.types import EventKind
from server.composition import app_context
from server.core.config import Settings
from server.core.models import Exam, ExamEvent
from server.exams.escalation import sync_timers
from server.exams.firing import fire
from tests.conftest import Accounts
from tests.helpers import exam_payload
from tests.roster.conftest import new_exam

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def stroke(minutes_ago: float, kind: str = "witnessed") -> dict[str, Any]:
    onset = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {"onset_at": iso(onset), "onset_kind": kind}


async def test_a_stroke_alert_carries_its_clock_and_protocol(api_for: ClientFor) -> None:
    urg = await api_for("urg_a")
    alert = stroke(80)
    resp = await urg.post("/api/exams", json=exam_payload(stroke=alert))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    onset = datetime.fromisoformat(alert["onset_at"])
    assert body["stroke"] == {
        "onset_at": iso(onset),
        "onset_kind": "witnessed",
        "windows": {
            "thrombolysis_until": iso(onset + timedelta(hours=4, minutes=30)),
            "thrombectomy_until": iso(onset + timedelta(hours=6)),
            "thrombectomy_selected_until": iso(onset + timedelta(hours=24)),
        },
        "protocol_id": "ct-head-stroke",
    }
    events = (await urg.get(f"/api/exams/{body['id']}/events")).json()["events"]
    assert events[0]["body"]["stroke"]["onset_kind"] == "witnessed"
    plain = await urg.post("/api/exams", json=exam_payload())
    assert plain.json()["stroke"] is None


async def test_perfusion_when_onset_is_unknown_or_late_mri_when_asked(api_for: ClientFor) -> None:
    urg = await api_for("urg_a")
    cases = [
        (exam_payload(stroke=stroke(60, "last_seen_well")), "ct-head-stroke-perfusion"),
        (exam_payload(stroke=stroke(5 * 60)), "ct-head-stroke-perfusion"),
        (exam_payload(modality="MR", stroke=stroke(60)), "mr-brain-stroke"),
    ]
    catalogue = {p["id"] for p in (await urg.get("/api/protocols")).json()["protocols"]}
    for payload, expected in cases:
        resp = await urg.post("/api/exams", json=payload)
        assert resp.status_code == 201, resp.text
        assert resp.json()["stroke"]["protocol_id"] == expected
        assert expected in catalogue


async def test_an_alert_with_onset_unknown_counts_no_window(api_for: ClientFor) -> None:
    urg = await api_for("urg_a")
    resp = await urg.post("/api/exams", json=exam_payload(stroke={"onset_kind": "unknown"}))
    assert resp.status_code == 201, resp.text
    assert resp.json()["stroke"] == {
        "onset_at": None,
        "onset_kind": "unknown",
        "windows": None,
        "protocol_id": "ct-head-stroke-perfusion",
    }


async def test_a_bad_stroke_alert_is_refused_and_creates_nothing(
    api_for: ClientFor, settings: Settings
) -> None:
    urg = await api_for("urg_a")
    future = iso(datetime.now(UTC) + timedelta(hours=1))
    bad = [
        (exam_payload(stroke={"onset_at": future, "onset_kind": "witnessed"}), "stroke.onset_at"),
        (exam_payload(stroke=stroke(8 * 24 * 60)), "stroke.onset_at"),
        (
            exam_payload(stroke={"onset_at": "2026-12-06T08:00:00", "onset_kind": "witnessed"}),
            "stroke.onset_at",
        ),
        (exam_payload(stroke={**stroke(30), "onset_kind": "guessed"}), "stroke.onset_kind"),
        (exam_payload(stroke=stroke(30), urgency="urgent"), "stroke"),
        (exam_payload(stroke=stroke(30), modality="CR"), "stroke"),
        (exam_payload(stroke={**stroke(30), "extra": 1}), "stroke.extra"),
        # A time goes with witnessed / last seen well, none with unknown.
        (exam_payload(stroke={"onset_kind": "witnessed"}), "stroke"),
        (exam_payload(stroke={**stroke(30), "onset_kind": "unknown"}), "stroke"),
    ]
    for payload, field in bad:
        resp = await urg.post("/api/exams", json=payload)
        assert resp.status_code == 422, payload
        error = resp.json()["error"]
        assert error["code"] == "invalid_fields"
        assert [f["field"] for f in error["fields"]] == [field], error
    async with app_context(settings) as app, app.db() as db:
        assert await db.scalar(select(func.count()).select_from(Exam)) == 0


async def test_an_open_stroke_alert_tops_a_full_worklist(api_for: ClientFor) -> None:
    urg = await api_for("urg_a")
    rad = await api_for("rad")
    for _ in range(12):
        assert (await urg.post("/api/exams", json=exam_payload())).status_code == 201
    alert = (await urg.post("/api/exams", json=exam_payload(stroke=stroke(40)))).json()
    for _ in range(3):  # newer ordinary requests do not pass it
        assert (await urg.post("/api/exams", json=exam_payload())).status_code == 201
    for client in (urg, rad):
        listed = (await client.get("/api/exams", params={"limit": 5})).json()["exams"]
        assert listed[0]["id"] == alert["id"]
        assert [e["stroke"] is not None for e in listed] == [True, False, False, False, False]


async def test_a_stroke_alert_escalates_at_the_stroke_delays(
    settings: Settings, accounts: Accounts
) -> None:
    # Ordinary delays long, stroke ones short: 90 s after the request only the alert is due.
    tuned = settings.with_(ack_timeout_s=3600, stroke_ack_timeout_s=60)
    past = datetime.now(UTC) - timedelta(seconds=90)
    async with app_context(tuned) as app:
        async with app.db() as db:
            alert = await new_exam(app, db, past, stroke=stroke(30))
            plain = await new_exam(app, db, past)
            row = await db.get_one(Exam, alert)
            assert row.stroke_onset_kind == "witnessed"
        for exam_id in (alert, plain):
            await sync_timers(app, exam_id)
        payload = {"exam_id": alert}
        raised = await fire(app, f"{alert}:accept:1", payload)
        assert raised is not None
        assert raised.body["due_at"] == (past + timedelta(seconds=60)).isoformat()
        assert await fire(app, f"{alert}:accept:2", payload) is None  # 120 s: not yet
        assert await fire(app, f"{plain}:accept:1", {"exam_id": plain}) is None
        async with app.db() as db:
            kinds = (
                await db.scalars(
                    select(ExamEvent.exam_id).where(ExamEvent.kind == EventKind.ESCALATION_RAISED)
                )
            ).all()
        assert kinds == [alert]
