"""The one way committed exam events leave for the rooms (docs/architecture.md,
docs/rooms.md).

Every writer of exam events (commands, escalations, stored images, calls, chat)
commits first, then hands the events here: a room never hears of a change that
could still roll back, and a subscriber that misses a frame replays it from SQL.
After an event whose kind may move a deadline (``rooms.types.MOVES_DEADLINES``,
declared with the kinds), the exam's escalation timers are re-planned from SQL,
or from the row in hand for an exam its transaction created.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from rooms.types import moves_deadlines
from server.core.channels import room_channel
from server.core.context import AppContext
from server.core.models import Exam, ExamEvent
from server.exams.escalation import schedule_new, schedule_new_many, sync_timers
from server.exams.service import event_json

log = logging.getLogger("teleimagerie.publish")

EventJson = dict[str, Any]


def _frame(event: EventJson) -> dict[str, Any]:
    return {"type": "event", "event": event}


def event_frames(
    exam_id: str, events: Iterable[ExamEvent | EventJson]
) -> tuple[list[tuple[str, dict[str, Any]]], list[EventJson]]:
    """One exam's committed events as (channel, frame) pairs for the engine's
    ``publish_many``, and the events rendered (for :func:`replan`). ``events`` are
    rows, or their JSON already rendered (with the author's name, for instance)."""
    rendered = [event_json(e) if isinstance(e, ExamEvent) else e for e in events]
    channel = room_channel(exam_id)
    return [(channel, _frame(event)) for event in rendered], rendered


def _move_deadlines(rendered: Sequence[EventJson]) -> bool:
    """Whether one of an exam's events may have moved one of its deadlines."""
    return any(moves_deadlines(e["kind"]) for e in rendered)


async def replan(
    app: AppContext, exam: Exam | str, rendered: Sequence[EventJson], *, created: bool = False
) -> None:
    """After its events are published: re-plan the exam's escalation timers if one of
    them may have moved a deadline (``created``: see :func:`publish_events`)."""
    if not _move_deadlines(rendered):
        return
    # Every committed state change re-plans the exam's escalation timers. The change
    # is committed whatever happens here; the worker's periodic rebuild repairs a
    # failed re-plan, so it must not turn a done command into an error.
    exam_id = exam if isinstance(exam, str) else exam.id
    try:
        if created and isinstance(exam, Exam):
            await schedule_new(app, exam)
        else:
            await sync_timers(app, exam)
    except Exception:
        log.exception("re-planning the timers of exam %s failed", exam_id)


async def replan_many(
    app: AppContext, exams: Sequence[tuple[Exam | str, Sequence[EventJson]]]
) -> None:
    """:func:`replan` for several exams, each with its rendered events: those given
    as rows are exams their transaction created (``created``), whose timers are
    planned together, in one call of the engine; the others are re-planned from SQL
    one by one, after them (an exam is created before any other change of it)."""
    new = [exam for exam, rendered in exams if isinstance(exam, Exam) and _move_deadlines(rendered)]
    if new:
        try:
            await schedule_new_many(app, new)
        except Exception:
            log.exception("planning the timers of %d new exams failed", len(new))
    for exam, rendered in exams:
        if isinstance(exam, str):
            await replan(app, exam, rendered)


async def publish_events(
    app: AppContext,
    exam: Exam | str,
    events: Iterable[ExamEvent | EventJson],
    *,
    created: bool = False,
) -> None:
    """Publish one exam's committed events, in order and in one round trip, then
    re-plan its timers if one of them may have moved a deadline. ``events`` are
    rows, or their JSON already rendered (with the author's name, for instance).
    ``created``: ``exam`` is the row of an exam its transaction created, loaded
    before the commit, and its timers are planned from it without reading it back."""
    exam_id = exam if isinstance(exam, str) else exam.id
    frames, rendered = event_frames(exam_id, events)
    await app.bus.publish_many(frames)
    await replan(app, exam, rendered, created=created)


async def publish_batch(app: AppContext, events: Sequence[tuple[str, EventJson]]) -> None:
    """Publish committed events of many exams in one round trip (the chat log's
    groups), then re-plan the timers of the exams whose deadlines may have moved."""
    await app.bus.publish_many([(room_channel(exam_id), _frame(e)) for exam_id, e in events])
    moved = dict.fromkeys(x for x, e in events if moves_deadlines(e["kind"]))
    for exam_id in moved:
        try:
            await sync_timers(app, exam_id)
        except Exception:
            log.exception("re-planning the timers of exam %s failed", exam_id)
