"""Escalation timers: `rooms.escalation` deadlines turned into engine timers, and fired.

The engine holds no truth. `sync_timers` recomputes an exam's deadlines from SQL after
every committed change and (re)schedules them under their stable keys; `rebuild`
does it for every open exam when a worker starts, so a flushed Redis or a killed
worker loses nothing. `fire` re-reads the exam and raises only if the condition
still holds; the deadline key is the event's `client_id`, unique per exam, so an
escalation is written at most once however many times its timer fires.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.escalation import Deadline, deadline_keys, deadlines, find, parse_key
from rooms.types import EventKind, ExamStatus, Role
from server.context import AppContext
from server.errors import ApiError
from server.exams import append_event, escalation_policy, escalation_snapshot, exam_json
from server.models import Exam, ExamEvent, User
from server.notifications import notify
from server.roster import load_duties, roster_for

log = logging.getLogger("teleimagerie.escalation")

# The statuses in which the policy can have something pending.
WATCHED = (
    ExamStatus.REQUESTED,
    ExamStatus.PROTOCOLED,
    ExamStatus.IMAGES_COMPLETE,
    ExamStatus.REPORTED,
)
COORDINATOR = str(Role.COORDINATOR)
CONCURRENCY = 32  # schedules in flight at once during a rebuild


async def plan(
    db: AsyncSession, settings: Any, exams: Sequence[Exam]
) -> dict[str, tuple[list[Deadline], set[str]]]:
    """Per exam: its pending deadlines and the keys already raised (three queries)."""
    ids = [e.id for e in exams]
    signed: dict[str, tuple[dict[str, Any], datetime]] = {}
    raised: dict[str, set[str]] = {i: set() for i in ids}
    if not ids:
        return {}
    rows = await db.execute(
        select(ExamEvent.exam_id, ExamEvent.kind, ExamEvent.client_id, ExamEvent.body, ExamEvent.at)
        .where(
            ExamEvent.exam_id.in_(ids),
            ExamEvent.kind.in_((EventKind.REPORT_SIGNED, EventKind.ESCALATION_RAISED)),
        )
        .order_by(ExamEvent.seq)
    )
    for exam_id, kind, client_id, body, at in rows:
        if kind == EventKind.REPORT_SIGNED:
            signed[exam_id] = (body or {}, at)  # the latest signature wins
        elif client_id:
            raised[exam_id].add(client_id)
    out: dict[str, tuple[list[Deadline], set[str]]] = {}
    p = escalation_policy(settings)
    for exam in exams:
        body, at = signed.get(exam.id, (None, None))
        try:
            pending = deadlines(escalation_snapshot(exam, body, at), p)
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


async def rebuild(app: AppContext, batch: int = 500) -> int:
    """Schedule every pending, not yet raised deadline of every open exam; returns the
    number scheduled. Stale timers left in the engine fire as no-ops, so none is
    cancelled here (that would cost a round trip per key)."""
    count, last_id = 0, ""
    while True:
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


async def recipients(
    db: AsyncSession, exam: Exam, deadline: Deadline, at: datetime
) -> tuple[list[int], list[str]]:
    """Resolve the policy's groups to user ids and role channels at `at`.

    A group with nobody in it (no backup on duty, no radiologist assigned) falls back
    to the coordinators: an escalation must always reach someone.
    """
    users: list[int] = []
    roles: list[str] = []

    async def site(role: Role) -> list[int]:
        return list(
            (
                await db.scalars(
                    select(User.id).where(
                        User.role == role,
                        User.establishment_id == exam.establishment_id,
                        User.active.is_(True),
                    )
                )
            ).all()
        )

    for group in deadline.notify:
        found: list[int] = []
        if group == "backup":
            roster = roster_for(await load_duties(db, at), exam.establishment_id)
            found = [d.radiologist_id for d in roster.backup]
        elif group == "radiologist" and exam.assigned_radiologist_id is not None:
            found = [exam.assigned_radiologist_id]
        elif group == "urgentist":
            found = [exam.requester_id]
        elif group == "site_manipulators":
            found = await site(Role.MANIPULATOR)
        elif group == "site_urgentists":
            found = await site(Role.URGENTIST)
        users += found
        if not found:
            roles.append(COORDINATOR)
    return list(dict.fromkeys(users)), list(dict.fromkeys(roles))


async def fire(
    app: AppContext, key: str, payload: dict[str, Any], *, _again: bool = True
) -> ExamEvent | None:
    """Raise the escalation `key` if it is still pending; None when it is not (or was
    already raised). Safe to call any number of times, from any number of workers."""
    exam_id, _step, _level = parse_key(key)
    now = time.time()
    # Decide on a read session (most claims of a stale schedule end here), then write;
    # `from_status` makes the write fail if the exam moved on in between.
    async with app.read() as db:
        exam = await db.get(Exam, exam_id)
        if exam is None:
            return None
        pending, raised = (await plan(db, app.settings, [exam]))[exam_id]
        deadline = find(pending, key)
        if deadline is None or key in raised:
            return None
        if deadline.due_at > now:  # claimed early from a stale schedule: put it back
            await app.bus.timer_schedule(key, deadline.due_at, payload)
            return None
        step = key.rsplit(":", 1)[0]
        lower = [
            d.key
            for d in pending
            if d.key.startswith(step + ":") and d.level < deadline.level and d.key not in raised
        ]
        catch_up = bool(lower) and _again
        if not catch_up:
            at = datetime.fromtimestamp(now, UTC)
            users, roles = await recipients(db, exam, deadline, at)
            status = exam.status
    if catch_up:
        # A backlog (or another worker) reached a higher level first: raise the levels
        # below it before it, so the room reads 1 then 2 and the backup is not skipped.
        for lower_key in lower:
            await fire(app, lower_key, payload, _again=False)
        return await fire(app, key, payload, _again=False)
    body = {
        "level": deadline.level,
        "reason": str(deadline.reason),
        "notified": [*users, *roles],
        "deadline": key,
        "due_at": datetime.fromtimestamp(deadline.due_at, UTC).isoformat(),
    }
    async with app.db() as db:
        try:
            event = await append_event(
                db,
                exam_id,
                EventKind.ESCALATION_RAISED,
                None,
                body,
                at,
                client_id=key,
                from_status=(status,),
            )
            await db.commit()
        except (IntegrityError, ApiError):
            # Raised meanwhile by another worker, or the exam moved on: nothing to do.
            await db.rollback()
            return None
        exam = await db.get_one(Exam, exam_id, populate_existing=True)
        exam_body = exam_json(exam, app.settings)
    from server.publish import publish_events  # publish imports this module

    await publish_events(app, exam, [event])
    await notify(app, "escalation.raised", exam_body, body, users=users, roles=roles)
    log.info("escalation %s raised, notified %s", key, body["notified"])
    return event
