"""Routing a new request to a radiologist on duty (docs/roster.md "Routing").

The primary on duty for the establishment gets it unless they are at their cap of
exams in progress (the charter bounds a teleradiologist's activity); then the next
primary, then a backup. When nobody can take it, the request stays unassigned (every
radiologist still sees it in their worklist) and the coordinators are alerted at once
at once on their live channel with a level-0 ``escalation.raised`` notification:
nothing waits silently. It is a notification, not a room event (so the room's log
starts with ``exam.requested`` at seq 1 whatever the roster); the persisted trail
begins with the level-1 escalation at ``ACK_TIMEOUT_S``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.escalation import Reason, routing_key
from rooms.types import ExamStatus
from server.core.channels import notify
from server.core.context import AppContext
from server.core.models import Exam
from server.exams.service import exam_json
from server.roster.service import Duty, Roster, load_duties, roster_for

# An exam counts against a radiologist's cap from assignment until signature.
IN_PROGRESS = (
    ExamStatus.REQUESTED,
    ExamStatus.ACCEPTED,
    ExamStatus.PROTOCOLED,
    ExamStatus.ACQUIRING,
    ExamStatus.IMAGES_COMPLETE,
)


@dataclass(frozen=True)
class Choice:
    """Who gets the request; when nobody, `reason` says why (for the coordinators)."""

    duty: Duty | None
    reason: Reason | None = None

    @property
    def radiologist_id(self) -> int | None:
        return self.duty.radiologist_id if self.duty else None


def pick(roster: Roster, load: Mapping[int, int]) -> Choice:
    """Pure: the first primary under their cap, else the first backup under theirs."""
    for duty in [*roster.primary, *roster.backup]:
        if load.get(duty.radiologist_id, 0) < duty.max_in_progress:
            return Choice(duty)
    if roster.primary or roster.backup:
        return Choice(None, Reason.ALL_AT_CAPACITY)
    return Choice(None, Reason.NOBODY_ON_DUTY)


async def in_progress(db: AsyncSession, radiologist_ids: Iterable[int]) -> dict[int, int]:
    """How many exams each radiologist has between assignment and signature."""
    ids = list(set(radiologist_ids))
    if not ids:
        return {}
    rows = await db.execute(
        select(Exam.assigned_radiologist_id, func.count())
        .where(Exam.assigned_radiologist_id.in_(ids), Exam.status.in_(IN_PROGRESS))
        .group_by(Exam.assigned_radiologist_id)
    )
    return {rid: n for rid, n in rows if rid is not None}


async def route(db: AsyncSession, establishment_id: int, at: datetime) -> Choice:
    """Pick the radiologist for a request made now at this establishment."""
    roster = roster_for(await load_duties(db, at), establishment_id)
    load = await in_progress(db, (d.radiologist_id for d in [*roster.primary, *roster.backup]))
    return pick(roster, load)


def alert_body(choice: Choice, exam_id: str) -> dict[str, object]:
    return {
        "level": 0,
        "reason": str(choice.reason),
        "notified": ["coordinator"],
        "deadline": routing_key(exam_id),
    }


async def announce(app: AppContext, exam: Exam, choice: Choice) -> None:
    """After commit: tell the assignee, the coordinators' board and the radiologists."""
    body = exam_json(exam, app.settings)
    if choice.duty is not None:
        await notify(
            app,
            "exam.assigned",
            body,
            {
                "radiologist": choice.duty.radiologist_id,
                "source": choice.duty.source,
                "role": choice.duty.role,
            },
            users=[choice.duty.radiologist_id],
            roles=["coordinator"],
        )
    else:
        await notify(
            app, "escalation.raised", body, alert_body(choice, exam.id), roles=["coordinator"]
        )
    # Every radiologist's worklist lists the requests nobody has accepted yet.
    await notify(app, "exam.requested", body, {}, roles=["radiologist"])
