"""An event whose kind is declared not to move deadlines (``rooms.types.MOVES_DEADLINES``)
never changes its exam's escalation plan: the plan (``rooms.escalation`` over the
exam in SQL) is compared before and after every step of an exam's life, so a kind
declared wrongly, or a command that starts moving a deadline, fails here
(docs/architecture.md "Events leave a transaction in one place")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy import select

from rooms.escalation import Deadline
from rooms.types import MOVES_DEADLINES, EventKind
from server.core.models import Exam, ExamEvent
from server.exams.escalation import plan
from server.web.app import App
from tests.helpers import PASSWORD, exam_payload
from tests.reports.helpers import DRAFT, ok

ClientFor = Callable[[str], Awaitable[httpx.AsyncClient]]


async def pending(app: App, exam_id: str) -> tuple[list[Deadline], set[str], list[str]]:
    """The exam's pending deadlines and raised keys, and the kinds of its events."""
    ctx = app.state.ctx
    async with ctx.read() as db:
        exam = await db.get_one(Exam, exam_id)
        deadlines, raised = (await plan(db, ctx.settings, [exam]))[exam_id]
        kinds = (
            await db.scalars(
                select(ExamEvent.kind).where(ExamEvent.exam_id == exam_id).order_by(ExamEvent.seq)
            )
        ).all()
    return deadlines, raised, list(kinds)


async def test_no_event_declared_neutral_moves_a_deadline(
    asgi_app: App, api_for: ClientFor
) -> None:
    urg, rad, man = [await api_for(u) for u in ("urg_a", "rad", "man_a")]
    first = await ok(await urg.post("/api/exams", json=exam_payload()), 201)
    other = await ok(await urg.post("/api/exams", json=exam_payload()), 201)
    base = f"/api/exams/{first['id']}"
    steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        (first["id"], lambda: rad.post(f"{base}/accept")),
        (first["id"], lambda: rad.post(f"{base}/protocol", json={"text": "Sans injection"})),
        (first["id"], lambda: rad.post(f"{base}/protocol", json={"text": "Avec injection"})),
        (first["id"], lambda: man.post(f"{base}/protocol/ack")),
        (first["id"], lambda: rad.put(f"{base}/report", json=DRAFT)),
        (first["id"], lambda: man.post(f"{base}/images-complete")),
        (first["id"], lambda: rad.put(f"{base}/report", json=DRAFT)),
        (first["id"], lambda: rad.post(f"{base}/report/sign", json={"password": PASSWORD})),
        (
            first["id"],
            lambda: rad.post(
                f"{base}/report/addenda", json={"text": "Complément", "password": PASSWORD}
            ),
        ),
        (
            first["id"],
            lambda: urg.post(f"{base}/acknowledge", json={"critical_acknowledged": True}),
        ),
        (first["id"], lambda: rad.post(f"{base}/report/addenda", json={
            "text": "Second complément", "password": PASSWORD})),
        (other["id"], lambda: urg.post(f"/api/exams/{other['id']}/cancel", json={"reason": "x"})),
    ]  # fmt: skip
    seen: set[str] = set()
    for exam_id, step in steps:
        before, raised_before, kinds_before = await pending(asgi_app, exam_id)
        resp = await step()
        assert resp.status_code in (200, 201), resp.text
        after, raised_after, kinds_after = await pending(asgi_app, exam_id)
        new = kinds_after[len(kinds_before) :]
        assert new, "every step appends an event"
        seen.update(new)
        if (before, raised_before) != (after, raised_after):
            assert any(MOVES_DEADLINES[EventKind(k)] for k in new), (new, before, after)
    # Every kind a command writes was exercised (the others are not the lifecycle's).
    assert seen >= {
        "exam.accepted",
        "protocol.proposed",
        "protocol.acknowledged",
        "report.draft",
        "exam.images_complete",
        "report.signed",
        "report.addendum",
        "exam.delivered",
        "exam.cancelled",
    }
