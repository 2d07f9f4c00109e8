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

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from rooms.escalation import Reason, routing_key
from rooms.types import ExamStatus
from server.core.channels import notifications
from server.core.context import AppContext
from server.core.models import Exam
from server.exams.service import exam_json
from server.roster.service import (
    SHIFTS_COVERING,
    TEMPLATES_COVERING,
    Duty,
    Roster,
    Shift,
    ShiftTemplate,
    covering,
    duties_at,
    roster_for,
)

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


def in_progress(radiologist_id: InstrumentedAttribute[int]) -> ScalarSelect[int]:
    """How many exams the radiologist of `radiologist_id` has between assignment and
    signature (uses ``ix_exams_radiologist_status``)."""
    return (
        select(func.count())
        .where(Exam.assigned_radiologist_id == radiologist_id, Exam.status.in_(IN_PROGRESS))
        .scalar_subquery()
    )


# The roster's rows that can cover a time, each with its radiologist's load.
_SHIFTS = SHIFTS_COVERING.add_columns(in_progress(Shift.radiologist_id))
_TEMPLATES = TEMPLATES_COVERING.add_columns(in_progress(ShiftTemplate.radiologist_id))


async def _read(db: AsyncSession, at: datetime) -> tuple[list[Duty], dict[int, int]]:
    """Two reads: the shifts and the templates that can cover `at`, each row with the
    number of exams its radiologist has in progress; the duties and those loads."""
    params = covering(at)
    load: dict[int, int] = {}
    rows: tuple[list[Shift], list[ShiftTemplate]] = ([], [])
    for row, count in await db.execute(_SHIFTS, params):
        rows[0].append(row)
        load[row.radiologist_id] = count
    for row, count in await db.execute(_TEMPLATES, params):
        rows[1].append(row)
        load[row.radiologist_id] = count
    return duties_at(at, *rows), load


async def route(db: AsyncSession, establishment_id: int, at: datetime) -> Choice:
    """Pick the radiologist for a request made now at this establishment."""
    duties, load = await _read(db, at)
    return pick(roster_for(duties, establishment_id), load)


class Router:
    """Routing for the requests of one transaction made at the same time `at` (the
    orders of a group, server/interfaces/group.py): the roster and the loads are read
    once, and each request routed counts in its assignee's load for the next ones,
    as a read after its insert would count it. Valid while nothing else in the
    transaction changes an exam's status or assignee: :meth:`forget` then, and the
    next request reads again."""

    def __init__(self, at: datetime) -> None:
        self.at = at
        self._read: tuple[list[Duty], dict[int, int]] | None = None

    async def route(self, db: AsyncSession, establishment_id: int) -> Choice:
        if self._read is None:
            self._read = await _read(db, self.at)
        duties, load = self._read
        choice = pick(roster_for(duties, establishment_id), load)
        if choice.radiologist_id is not None:
            load[choice.radiologist_id] = load.get(choice.radiologist_id, 0) + 1
        return choice

    def forget(self) -> None:
        self._read = None


def alert_body(choice: Choice, exam_id: str) -> dict[str, object]:
    return {
        "level": 0,
        "reason": str(choice.reason),
        "notified": ["coordinator"],
        "deadline": routing_key(exam_id),
    }


async def announce(app: AppContext, exam: Exam, choice: Choice) -> None:
    """After commit: tell the assignee, the coordinators' board and the radiologists,
    in one round trip to the engine."""
    await app.bus.publish_many(announcements(app, exam, choice))


def announcements(app: AppContext, exam: Exam, choice: Choice) -> list[tuple[str, dict[str, Any]]]:
    """What :func:`announce` publishes, as (channel, message) pairs, in order."""
    body = exam_json(exam, app.settings)
    if choice.duty is not None:
        told = notifications(
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
        told = notifications(
            "escalation.raised", body, alert_body(choice, exam.id), roles=["coordinator"]
        )
    # Every radiologist's worklist lists the requests nobody has accepted yet.
    return told + notifications("exam.requested", body, {}, roles=["radiologist"])
