"""Escalation timers: `rooms.escalation` deadlines turned into engine timers.

The engine holds no truth. `sync_timers` recomputes an exam's deadlines from SQL after
every committed change and (re)schedules them under their stable keys; `rebuild`
does it for every open exam when a worker starts, so a flushed Redis or a killed
worker loses nothing. A timer that fires is raised by server/exams/firing.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.escalation import Deadline, deadline_keys, deadlines
from rooms.types import EventKind, ExamStatus
from server.core.context import AppContext
from server.core.models import Exam, ExamEvent
from server.exams.service import escalation_policy, escalation_snapshot

log = logging.getLogger("teleimagerie.escalation")

# The statuses in which the policy can have something pending.
WATCHED = (
    ExamStatus.REQUESTED,
    ExamStatus.PROTOCOLED,
    ExamStatus.IMAGES_COMPLETE,
    ExamStatus.REPORTED,
)
CONCURRENCY = 32  # schedules in flight at once during a rebuild


async def plan(
    db: AsyncSession, settings: Any, exams: Sequence[Exam]
) -> dict[str, tuple[list[Deadline], set[str]]]:
    """Per exam: its pending deadlines and the keys already raised (three queries)."""
    ids = [e.id for e in exams]
    signed: dict[str, tuple[dict[str, Any], datetime]] = {}
    raised: dict[str, set[str]] = {i: set() for i in ids}
    communicated: set[str] = set()  # a critical result received over the phone
    if not ids:
        return {}
    rows = await db.execute(
        select(ExamEvent.exam_id, ExamEvent.kind, ExamEvent.client_id, ExamEvent.body, ExamEvent.at)
        .where(
            ExamEvent.exam_id.in_(ids),
            ExamEvent.kind.in_(
                (
                    EventKind.REPORT_SIGNED,
                    EventKind.ESCALATION_RAISED,
                    EventKind.CRITICAL_COMMUNICATED,
                )
            ),
        )
        .order_by(ExamEvent.seq)
    )
    for exam_id, kind, client_id, body, at in rows:
        if kind == EventKind.REPORT_SIGNED:
            signed[exam_id] = (body or {}, at)  # the latest signature wins
        elif kind == EventKind.CRITICAL_COMMUNICATED:
            communicated.add(exam_id)
        elif client_id:
            raised[exam_id].add(client_id)
    out: dict[str, tuple[list[Deadline], set[str]]] = {}
    p = escalation_policy(settings)
    for exam in exams:
        body, at = signed.get(exam.id, (None, None))
        try:
            snapshot = escalation_snapshot(exam, body, at, exam.id in communicated)
            pending = deadlines(snapshot, p)
        except ValueError as exc:  # a status without its timestamp: nothing to time
            log.error("cannot plan escalations: %s", exc)
            pending = []
        out[exam.id] = (pending, raised[exam.id])
    return out


async def sync_timers(app: AppContext, exam: Exam | str) -> None:
    """Re-plan one exam's timers from SQL; cancel those whose condition has passed."""
    exam_id = exam if isinstance(exam, str) else exam.id
    async with app.read() as db:
        fresh = await db.get(Exam, exam_id)
        planned = await plan(db, app.settings, [fresh]) if fresh else {}
    pending, raised = planned.get(exam_id, ([], set()))
    keep = {d.key: d for d in pending if d.key not in raised}
    await asyncio.gather(
        *(app.bus.timer_schedule(k, d.due_at, {"exam_id": exam_id}) for k, d in keep.items()),
        *(app.bus.timer_cancel(k) for k in deadline_keys(exam_id) if k not in keep),
    )


async def schedule_new(app: AppContext, exam: Exam) -> None:
    """Plan the timers of an exam created by a transaction just committed, from the
    row in hand: a new exam has no signed report and no escalation raised yet, so
    its deadlines follow from its columns alone (what :func:`sync_timers` would read
    back from SQL), and no timer of its id exists to cancel."""
    await schedule_new_many(app, [exam])


async def schedule_new_many(app: AppContext, exams: Sequence[Exam]) -> None:
    """:func:`schedule_new` for several new exams, in one call of the engine (one
    round trip to Redis: the new orders of an HL7 group, docs/hl7.md)."""
    policy = escalation_policy(app.settings)
    timers: list[tuple[str, float, dict[str, Any]]] = []
    for exam in exams:
        try:
            pending = deadlines(escalation_snapshot(exam), policy)
        except ValueError as exc:  # a status without its timestamp: nothing to time
            log.error("cannot plan escalations: %s", exc)
            continue
        timers += [(d.key, d.due_at, {"exam_id": exam.id}) for d in pending]
    if timers:
        await app.bus.timer_schedule_many(timers)


async def rebuild(app: AppContext, batch: int = 500, stop: asyncio.Event | None = None) -> int:
    """Schedule every pending, not yet raised deadline of every open exam; returns the
    number scheduled. Stale timers left in the engine fire as no-ops, so none is
    cancelled here (that would cost a round trip per key). Once ``stop`` is set it
    ends after the batch under way (the next rebuild does the rest), so a process
    stopping waits for one batch at most and never cuts a query midway."""
    count, last_id = 0, ""
    while stop is None or not stop.is_set():
        async with app.read() as db:
            exams = (
                await db.scalars(
                    select(Exam)
                    .where(Exam.status.in_(WATCHED), Exam.id > last_id)
                    .order_by(Exam.id)
                    .limit(batch)
                )
            ).all()
            planned = await plan(db, app.settings, exams)
        todo = [
            app.bus.timer_schedule(d.key, d.due_at, {"exam_id": exam_id})
            for exam_id, (pending, raised) in planned.items()
            for d in pending
            if d.key not in raised
        ]
        for first in range(0, len(todo), CONCURRENCY):  # round trips overlap, bounded
            await asyncio.gather(*todo[first : first + CONCURRENCY])
        count += len(todo)
        if len(exams) < batch:
            return count
        last_id = exams[-1].id
    return count
