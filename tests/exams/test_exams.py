"""Exam requests, the worklist and tenancy (docs/design.md "Tenancy and roles")."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from rooms import escalation
from rooms.escalation import SHOWN, parse_key
from rooms.types import ExamStatus
from server.composition import app_context
from server.core.config import Settings
from server.core.models import Exam, ExamEvent
from server.exams.service import deadlines, escalation_policy, escalation_snapshot
from tests.helpers import exam_payload

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]


async def _request(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    resp = await client.post("/api/exams", json=exam_payload(**overrides))
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def test_urgentist_requests_an_exam(api_for: ClientFor, settings: Settings) -> None:
    urg = await api_for("urg_a")
    resp = await urg.post("/api/exams", json=exam_payload())
    assert resp.status_code == 201
    exam = resp.json()
    assert resp.headers["location"] == f"/api/exams/{exam['id']}"
    assert exam["status"] == "requested"
    assert exam["establishment"]["code"] == "HOPA"
    assert exam["requester"]["display_name"] == "URG_A"
    assert re.fullmatch(r"TI\d{14}", exam["accession_number"])
    assert re.fullmatch(r"2\.25\.\d+", exam["study_instance_uid"])
    assert len(exam["study_instance_uid"]) <= 64
    assert exam["patient"] == {**exam_payload()["patient"], "identity": None}
    assert exam["placer_order_number"] is None
    assert exam["consent"] is True
    assert exam["deadlines"]["accept_by"] is not None
    assert exam["last_seq"] == 1

    events = (await urg.get(f"/api/exams/{exam['id']}/events")).json()
    assert [e["kind"] for e in events["events"]] == ["exam.requested"]
    assert events["events"][0]["seq"] == 1


async def test_configured_uid_root(
    make_settings: Callable[..., Settings], accounts: object
) -> None:
    from server.testing import LiveServer
    from tests.helpers import login

    with LiveServer(make_settings(uid_root="1.2.826.0.1.3680043.10.999")) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            client.headers["Authorization"] = f"Bearer {await login(client, 'urg_a')}"
            exam = await _request(client)
    assert exam["study_instance_uid"].startswith("1.2.826.0.1.3680043.10.999.")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"consent": False}, "consent"),
        ({"modality": "PET"}, "modality"),
        ({"urgency": "whenever"}, "urgency"),
        ({"clinical_question": "   "}, "clinical_question"),
        (
            {"patient": {"id": "1", "name": "X", "birth_date": "2999-01-01", "sex": "F"}},
            "patient.birth_date",
        ),
        ({"patient": {"id": "1", "name": "X", "birth_date": "1970-01-01"}}, "patient.sex"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_invalid_requests_get_422_naming_the_field(
    api_for: ClientFor, settings: Settings, overrides: dict[str, Any], field: str
) -> None:
    urg = await api_for("urg_a")
    resp = await urg.post("/api/exams", json=exam_payload(**overrides))
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "invalid_fields"
    assert [f["field"] for f in err["fields"]] == [field]
    assert field in err["message"]
    async with app_context(settings) as app, app.db() as db:
        assert await db.scalar(select(func.count()).select_from(Exam)) == 0


async def test_missing_field_is_named(api_for: ClientFor) -> None:
    urg = await api_for("urg_a")
    body = exam_payload()
    del body["clinical_question"]
    resp = await urg.post("/api/exams", json=body)
    assert resp.status_code == 422
    assert resp.json()["error"]["fields"][0]["field"] == "clinical_question"


async def test_only_urgentists_request_exams(api_for: ClientFor) -> None:
    for username in ("man_a", "rad", "coord", "admin"):
        client = await api_for(username)
        resp = await client.post("/api/exams", json=exam_payload())
        assert resp.status_code == 403, username
        assert resp.json()["error"]["code"] == "forbidden"


async def test_oversized_body_is_413_and_stores_nothing(
    api_for: ClientFor, settings: Settings
) -> None:
    urg = await api_for("urg_a")
    huge = exam_payload(clinical_question="x" * (settings.max_body_bytes + 1))
    resp = await urg.post("/api/exams", json=huge)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "body_too_large"
    resp = await urg.post("/api/exams", content=b"{}", headers={"content-type": "text/plain"})
    assert resp.status_code == 415
    async with app_context(settings) as app, app.db() as db:
        assert await db.scalar(select(func.count()).select_from(Exam)) == 0
        assert await db.scalar(select(func.count()).select_from(ExamEvent)) == 0


async def test_establishments_never_see_each_other(api_for: ClientFor) -> None:
    urg_a, urg_b, man_b = [await api_for(u) for u in ("urg_a", "urg_b", "man_b")]
    exam_a = await _request(urg_a)
    exam_b = await _request(urg_b)

    listed_b = (await urg_b.get("/api/exams")).json()["exams"]
    assert [e["id"] for e in listed_b] == [exam_b["id"]]
    assert [e["id"] for e in (await man_b.get("/api/exams")).json()["exams"]] == [exam_b["id"]]
    # Filtering by the other establishment's code does not widen the scope.
    assert (await urg_b.get("/api/exams", params={"establishment": "HOPA"})).json()["exams"] == []
    for client in (urg_b, man_b):
        for path in (f"/api/exams/{exam_a['id']}", f"/api/exams/{exam_a['id']}/events"):
            resp = await client.get(path)
            assert resp.status_code == 404, path
            assert resp.json()["error"]["code"] == "not_found"
    # An exam that does not exist answers exactly like one of another establishment.
    missing = await urg_b.get("/api/exams/00000000-0000-0000-0000-000000000000")
    assert missing.json() == (await urg_b.get(f"/api/exams/{exam_a['id']}")).json()


async def test_centre_roles_scope(api_for: ClientFor) -> None:
    urg_a, urg_b, rad, coord, admin = [
        await api_for(u) for u in ("urg_a", "urg_b", "rad", "coord", "admin")
    ]
    exam_a = await _request(urg_a)
    exam_b = await _request(urg_b, urgency="scheduled")
    # Requests nobody has accepted are visible to every radiologist.
    ids = {e["id"] for e in (await rad.get("/api/exams")).json()["exams"]}
    assert ids == {exam_a["id"], exam_b["id"]}
    assert (await rad.get(f"/api/exams/{exam_a['id']}")).status_code == 200
    # Coordinators see everything, filtered by establishment on request.
    listed = (await coord.get("/api/exams", params={"establishment": "HOPB"})).json()["exams"]
    assert [e["id"] for e in listed] == [exam_b["id"]]
    # The platform admin manages accounts, not patients.
    assert (await admin.get("/api/exams")).json()["exams"] == []
    assert (await admin.get(f"/api/exams/{exam_a['id']}")).status_code == 404


async def test_worklist_filters_and_parameters(api_for: ClientFor) -> None:
    urg = await api_for("urg_a")
    await _request(urg)
    assert len((await urg.get("/api/exams", params={"status": "requested"})).json()["exams"]) == 1
    assert (await urg.get("/api/exams", params={"status": "delivered"})).json()["exams"] == []
    bad = await urg.get("/api/exams", params={"status": "lost"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_parameter"
    assert (await urg.get("/api/exams", params={"limit": "0"})).status_code == 400
    assert (await urg.get("/api/exams/x/events", params={"since": "abc"})).status_code == 400


async def test_events_since(api_for: ClientFor) -> None:
    urg = await api_for("urg_a")
    exam = await _request(urg)
    resp = await urg.get(f"/api/exams/{exam['id']}/events", params={"since": 1})
    assert resp.json() == {"events": [], "last_seq": 1}


T0 = datetime(2026, 3, 1, 7, 58, 12, 345678, tzinfo=UTC)
# When each step of the lifecycle happened in `_exam_in` (seconds after the request).
STEPS = {
    "accepted_at": (ExamStatus.ACCEPTED, 61),
    "protocoled_at": (ExamStatus.PROTOCOLED, 122),
    "protocol_ack_at": (ExamStatus.ACQUIRING, 183),
    "images_complete_at": (ExamStatus.IMAGES_COMPLETE, 904),
    "reported_at": (ExamStatus.REPORTED, 1805),
    "delivered_at": (ExamStatus.DELIVERED, 1906),
}
ORDER = list(ExamStatus)


def _exam_in(status: ExamStatus) -> Exam:
    """A transient exam that went through every step up to `status` (none after)."""
    times = {
        field: T0 + timedelta(seconds=after)
        for field, (reached, after) in STEPS.items()
        if status is not ExamStatus.CANCELLED and ORDER.index(reached) <= ORDER.index(status)
    }
    return Exam(id="e-1", status=status, created_at=T0, **times)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("status", list(ExamStatus))
def test_the_deadlines_shown_are_those_the_worker_times(status: ExamStatus) -> None:
    settings = Settings(ack_timeout_s=300, report_warn_s=2700, report_sla_s=3600)
    exam = _exam_in(status)
    shown = deadlines(exam, settings)
    # By hand (docs/configuration.md): the request must be accepted within ACK_TIMEOUT_S; the
    # report clock starts when the acquisition is complete.
    expected: dict[str, str | None] = dict.fromkeys(SHOWN)
    if status is ExamStatus.REQUESTED:
        expected["accept_by"] = _iso(T0 + timedelta(seconds=300))
    if status is ExamStatus.IMAGES_COMPLETE:
        done = T0 + timedelta(seconds=904)
        expected["report_warning_at"] = _iso(done + timedelta(seconds=2700))
        expected["report_due_at"] = _iso(done + timedelta(seconds=3600))
    assert shown == expected
    # The timers the worker schedules for the same exam (server/escalation.py `plan`).
    timed = {
        parse_key(d.key)[1:]: d.due_at
        for d in escalation.deadlines(escalation_snapshot(exam), escalation_policy(settings))
    }
    names = {"accept_by": ("accept", 1), "report_warning_at": ("report", 1)}
    for name, step in {**names, "report_due_at": ("report", 2)}.items():
        at = shown[name]
        assert (at is not None) == (step in timed), name
        if at is not None:
            assert datetime.fromisoformat(at).timestamp() == timed[step]


def test_a_status_without_its_timestamp_shows_no_deadline() -> None:
    exam = _exam_in(ExamStatus.IMAGES_COMPLETE)
    exam.images_complete_at = None
    assert deadlines(exam, Settings()) == dict.fromkeys(SHOWN)
