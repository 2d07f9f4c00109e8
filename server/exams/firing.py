"""Raising an escalation when its engine timer fires (docs/roster.md "Timers").

`fire` re-reads the exam and raises only if the condition still holds; the
deadline key is the event's `client_id`, unique per exam, so an escalation is
written at most once however many times its timer fires. The raised event
leaves through the one publishing path (server/exams/publish.py), which
schedules the next level.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.escalation import Deadline, find, parse_key
from rooms.types import EventKind, Role
from server.core.channels import notify
from server.core.context import AppContext
from server.core.errors import ApiError
from server.core.models import Exam, ExamEvent, User
from server.exams.escalation import plan
from server.exams.publish import publish_events
from server.exams.service import append_event, exam_json
from server.roster.service import load_duties, roster_for

log = logging.getLogger("teleimagerie.escalation")

COORDINATOR = str(Role.COORDINATOR)


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
    await publish_events(app, exam, [event])
    await notify(app, "escalation.raised", exam_body, body, users=users, roles=roles)
    log.info("escalation %s raised, notified %s", key, body["notified"])
    return event
