"""Fan committed events out to the exam's room, after the transaction."""

from __future__ import annotations

from collections.abc import Iterable

from server.context import AppContext
from server.exams import event_json
from server.models import Exam, ExamEvent


def room_channel(exam_id: str) -> str:
    return f"exam:{exam_id}"


async def publish_events(app: AppContext, exam: Exam, events: Iterable[ExamEvent]) -> None:
    """Publish only what is committed: a subscriber that misses it replays it from SQL."""
    for event in events:
        await app.bus.publish(room_channel(exam.id), {"type": "event", "event": event_json(event)})
