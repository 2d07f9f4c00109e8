"""The critical-result record (docs/stroke.md "The critical-result record"): opened by a
critical signature, completed by a logged phone call with read-back (which stops the
critical escalation) or by the urgentist's acknowledgement in the room."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from server.composition import app_context
from server.core.config import Settings
from server.core.models import Exam
from server.exams.escalation import plan
from server.exams.firing import fire
from tests.helpers import PASSWORD
from tests.reports.helpers import DRAFT, ClientFor, exam_images_complete, ok


async def signed_critical(client_for: ClientFor, critical: bool = True) -> dict[str, Any]:
    urg, rad, man = await client_for("urg_a"), await client_for("rad"), await client_for("man_a")
    exam = await exam_images_complete(urg, rad, man)
    base = f"/api/exams/{exam['id']}"
    await ok(await rad.put(f"{base}/report", json={**DRAFT, "critical": critical}))
    await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
    return exam


async def pending_keys(settings: Settings, exam_id: str) -> list[str]:
    async with app_context(settings) as app, app.read() as db:
        exam = await db.get_one(Exam, exam_id)
        pending, _raised = (await plan(db, settings, [exam]))[exam_id]
    return [d.key for d in pending]


def now_iso(delta_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_s)).isoformat()


async def test_a_logged_call_completes_the_record_and_stops_the_escalation(
    client_for: ClientFor, settings: Settings
) -> None:
    exam = await signed_critical(client_for)
    rad = await client_for("rad")
    base = f"/api/exams/{exam['id']}"
    record = await ok(await rad.get(f"{base}/critical-result"))
    assert record["finding"] == DRAFT["conclusion"] and record["complete"] is False
    assert record["method"] is None and record["identified_at"] is not None

    # The escalation is live: due at once with a zero delay, it is raised.
    now_due = settings.with_(critical_ack_timeout_s=0)
    key = f"{exam['id']}:critical:1"
    assert await pending_keys(now_due, exam["id"]) == [key, f"{exam['id']}:critical:2"]
    async with app_context(now_due) as app:
        assert await fire(app, key, {"exam_id": exam["id"]}) is not None

    call = {
        "recipient_name": "Dr Urgences Martin",
        "recipient_role": "urgentiste de garde",
        "received_at": now_iso(),
        "read_back": True,
    }
    record = await ok(await rad.post(f"{base}/critical-result/call", json=call))
    assert record["complete"] is True and record["method"] == "phone"
    assert record["recipient"] == {
        "name": "Dr Urgences Martin",
        "role": "urgentiste de garde",
        "user_id": None,
    }
    assert record["read_back"] is True
    # Stopped: nothing pending, the next level is not raised.
    assert await pending_keys(now_due, exam["id"]) == []
    async with app_context(now_due) as app:
        assert await fire(app, f"{exam['id']}:critical:2", {"exam_id": exam["id"]}) is None
    events = (await ok(await rad.get(f"{base}/events")))["events"]
    logged = [e for e in events if e["kind"] == "critical.communicated"]
    assert len(logged) == 1 and logged[0]["body"]["recipient_name"] == "Dr Urgences Martin"
    # Complete: a second call is refused and the urgentist's acknowledgement keeps the call.
    again = await rad.post(f"{base}/critical-result/call", json=call)
    assert again.status_code == 409 and again.json()["error"]["code"] == "critical_result_complete"
    urg = await client_for("urg_a")
    await ok(await urg.post(f"{base}/acknowledge", json={"critical_acknowledged": True}))
    assert (await ok(await rad.get(f"{base}/critical-result")))["method"] == "phone"


async def test_the_room_acknowledgement_completes_the_record(client_for: ClientFor) -> None:
    exam = await signed_critical(client_for)
    urg = await client_for("urg_a")
    base = f"/api/exams/{exam['id']}"
    await ok(await urg.post(f"{base}/acknowledge", json={"critical_acknowledged": True}))
    record = await ok(await urg.get(f"{base}/critical-result"))
    assert record["complete"] is True and record["method"] == "room"
    assert record["recipient"]["name"] == "URG_A" and record["recipient"]["user_id"] is not None


async def test_bad_calls_change_nothing(client_for: ClientFor) -> None:
    exam = await signed_critical(client_for)
    rad, urg = await client_for("rad"), await client_for("urg_a")
    base = f"/api/exams/{exam['id']}"
    good = {"recipient_name": "Dr Martin", "received_at": now_iso(), "read_back": True}
    for body, status, code in (
        ({**good, "read_back": False}, 422, "invalid_fields"),
        ({**good, "received_at": now_iso(3600)}, 422, "invalid_fields"),
        ({**good, "received_at": now_iso(-3600)}, 422, "invalid_fields"),  # before the finding
        ({**good, "received_at": "2026-12-06T10:00:00"}, 422, "invalid_fields"),  # no offset
        ({**good, "recipient_name": " "}, 422, "invalid_fields"),
    ):
        resp = await rad.post(f"{base}/critical-result/call", json=body)
        assert (resp.status_code, resp.json()["error"]["code"]) == (status, code), body
    resp = await urg.post(f"{base}/critical-result/call", json=good)
    assert resp.status_code == 403
    assert (await ok(await rad.get(f"{base}/critical-result")))["complete"] is False
    plain = await signed_critical(client_for, critical=False)
    resp = await rad.post(f"/api/exams/{plain['id']}/critical-result/call", json=good)
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "no_critical_result"
    assert (await rad.get(f"/api/exams/{plain['id']}/critical-result")).status_code == 404
