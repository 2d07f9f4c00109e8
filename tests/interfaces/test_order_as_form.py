"""An order over MLLP and the same request through the form give the same exam
(docs/hl7.md "Orders"): the order path's shortcuts (the interface account not read
back, the radiologists' load read with the roster, the exam inserted without a
savepoint) must not change what is requested, who gets it, nor its timers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from server.core.models import Exam, ExamEvent, PatientIdentity, User
from server.exams import service
from server.exams.escalation import plan
from server.exams.service import ExamRequest, create_exam
from server.roster.service import Shift
from tests.helpers import exam_payload
from tests.interfaces import messages as m
from tests.interfaces.conftest import Hl7Listener, ack_code

ApiFor = Callable[[str], Awaitable[httpx.AsyncClient]]
RPPS = "10101010101"
# What differs between two exams by construction: their ids, numbers and times.
OWN = {"id", "accession_number", "study_instance_uid", "created_at", "updated_at"}


async def _roster(listener: Hl7Listener) -> tuple[int, int]:
    """rad primary at his cap (one exam in progress, at most one), rad2 primary under
    hers: a request goes to rad2 only if the load of each is read right."""
    app, now = listener.app, listener.app.now()
    async with app.db() as db:
        urg = await db.scalar(select(User).where(User.username == "urg_a"))
        rad = await db.scalar(select(User.id).where(User.username == "rad"))
        rad2 = await db.scalar(select(User.id).where(User.username == "rad2"))
        assert urg is not None and rad is not None and rad2 is not None
        urg.professional_id = RPPS
        for radiologist, cap in ((rad, 1), (rad2, 5)):
            db.add(
                Shift(
                    radiologist_id=radiologist, role="primary", kind="oncall",
                    starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=12),
                    establishment_ids=[], max_in_progress=cap, created_at=now,
                )
            )  # fmt: skip
        req = ExamRequest.model_validate(exam_payload())
        await create_exam(db, app.settings, urg, req, now, rad)
        await db.commit()
    return rad, rad2


def _columns(exam: Exam) -> dict[str, Any]:
    return {c.key: getattr(exam, c.key) for c in Exam.__table__.columns if c.key not in OWN}


async def _deadlines(listener: Hl7Listener, exam: Exam) -> list[tuple[str, float]]:
    """The exam's pending deadlines from SQL, as offsets from its request."""
    async with listener.app.read() as db:
        planned = await plan(db, listener.app.settings, [exam])
    pending, _raised = planned[exam.id]
    start = exam.created_at.timestamp()
    return sorted((d.key.replace(exam.id, "*"), round(d.due_at - start, 3)) for d in pending)


async def test_an_order_and_the_form_give_the_same_exam_assignee_and_timers(
    hl7_listener: Hl7Listener, api_for: ApiFor
) -> None:
    _rad, rad2 = await _roster(hl7_listener)
    [ack] = await hl7_listener.send(
        m.order(m.control_id(), "CMD-F1", m.pid("IPP900"), provider=f"{RPPS}^URG^A")
    )
    assert ack_code(ack) == "AA", str(ack)
    async with hl7_listener.app.read() as db:
        ordered = await db.scalar(select(Exam).where(Exam.placer_order_number == "CMD-F1"))
        identity = await db.scalar(select(PatientIdentity).where(PatientIdentity.ipp == "IPP900"))
        assert ordered is not None and identity is not None
        requested = await db.scalar(select(ExamEvent).where(ExamEvent.exam_id == ordered.id))
        assert requested is not None
    # The same request typed in the form, for the identity the order brought.
    urg = await api_for("urg_a")
    form = await urg.post(
        "/api/exams",
        json={
            "patient": {
                "id": "typed",
                "name": "TYPED^Name",
                "birth_date": "1950-01-01",
                "sex": "U",
                "identity_id": identity.id,
            },
            "modality": ordered.modality,
            "body_part": ordered.body_part,
            "clinical_question": ordered.clinical_question,
            "urgency": ordered.urgency,
            "consent": True,
        },
    )
    assert form.status_code == 201, form.text
    async with hl7_listener.app.read() as db:
        typed = await db.get_one(Exam, form.json()["id"])
        typed_event = await db.scalar(select(ExamEvent).where(ExamEvent.exam_id == typed.id))
        assert typed_event is not None
    assert ordered.assigned_radiologist_id == rad2  # rad is at his cap
    assert _columns(ordered) == {**_columns(typed), "placer_order_number": "CMD-F1"}
    assert requested.kind == typed_event.kind and requested.author_id == typed_event.author_id
    body = {k: v for k, v in requested.body.items() if k != "placer_order_number"}
    assert {**body, "accession_number": None} == {
        **typed_event.body,
        "accession_number": None,
    }
    assert await _deadlines(hl7_listener, ordered) == await _deadlines(hl7_listener, typed)
    # The listener scheduled exactly the timers planned from SQL.
    claimed = await hl7_listener.app.bus.timer_claim_due(ordered.created_at.timestamp() + 10**6)
    assert sorted(k.replace(ordered.id, "*") for k, _ in claimed) == [
        k for k, _ in await _deadlines(hl7_listener, ordered)
    ]


async def test_an_accession_number_taken_is_drawn_again_in_the_same_transaction(
    hl7_listener: Hl7Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exam is inserted with ``ON CONFLICT DO NOTHING``: a number already taken
    (drawn again by chance) leaves the transaction usable and another is drawn."""
    app = hl7_listener.app
    draws: list[str] = []
    real = service.new_accession

    def draw(now: datetime) -> str:
        number = draws[0] if len(draws) == 1 else real(now)
        draws.append(number)
        return number

    async with app.db() as db:
        urg = await db.scalar(select(User).where(User.username == "urg_a"))
        assert urg is not None
        req = ExamRequest.model_validate(exam_payload())
        first, _ = await create_exam(db, app.settings, urg, req, app.now())
        draws.append(first.accession_number)
        monkeypatch.setattr(service, "new_accession", draw)
        second, event = await create_exam(db, app.settings, urg, req, app.now())
        await db.commit()
    assert draws[1] == first.accession_number  # the collision happened
    assert second.accession_number == draws[2] != first.accession_number
    assert event.body["accession_number"] == second.accession_number
    async with app.read() as db:
        numbers = set(await db.scalars(select(Exam.accession_number)))
        assert numbers == {first.accession_number, second.accession_number}
        again = await db.get_one(Exam, second.id)
    assert _columns(again) == _columns(second)
