"""Fan committed events out to the exam's room, after the transaction."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from server.core.channels import room_channel
from server.core.context import AppContext
from server.core.models import Exam, ExamEvent
from server.exams.escalation import sync_timers
from server.exams.service import event_json

log = logging.getLogger("teleimagerie.publish")

# Kinds that never move a deadline: no need to re-plan the timers after them. (An
# escalation was claimed from the engine to be raised; its next level is scheduled.)
NO_DEADLINE_CHANGE = frozenset(
    {"chat.message", "images.received", "report.draft", "escalation.raised"}
)


async def publish_events(app: AppContext, exam: Exam, events: Iterable[ExamEvent]) -> None:
    """Publish only what is committed: a subscriber that misses it replays it from SQL."""
    events = list(events)
    for event in events:
        await app.bus.publish(room_channel(exam.id), {"type": "event", "event": event_json(event)})
    if any(e.kind not in NO_DEADLINE_CHANGE for e in events):
        # Every committed state change re-plans the exam's escalation timers. The change
        # is committed whatever happens here; the worker's periodic rebuild repairs a
        # failed re-plan, so it must not turn a done command into an error.
        try:
            await sync_timers(app, exam)
        except Exception:
            log.exception("re-planning the timers of exam %s failed", exam.id)
