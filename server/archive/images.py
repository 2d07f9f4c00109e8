"""``images.received`` events: the exam room hears of stored images as they come
(docs/dicomweb.md, docs/rooms.md).

The archive calls :meth:`ImageEvents.on_stored` for each stored instance (its
ingest hook); a series is announced at its first instance, then at most once a
second with the running count, so that a modality sending hundreds of
instances does not flood the room. A Radiation Dose SR among them is not an
image: it is read (server/archive/dose.py) and its figures kept on the exam
(docs/reports.md "The dose from the scanner"), without ``images.received``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dicomweb.types import StoredInstance
from rooms.types import EventKind
from server.archive.dose import RDSR_CLASSES, NotADoseReport, read_rdsr
from server.archive.filing import LATE
from server.core import audit
from server.core.context import AppContext
from server.core.models import Exam
from server.exams.publish import publish_events
from server.exams.service import append_event, event_json

log = logging.getLogger("teleimagerie.archive")

# Encapsulated documents (the signed report as PDF, PS3.4 A.45) are not images.
ENCAPSULATED_DOCUMENT = "1.2.840.10008.5.1.4.1.1.104."
# Key objects and measurement reports (server/reports/keyobjects.py) are not images either.
NOT_SHOWN = frozenset({"1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.5.1.4.1.1.88.34"})


@dataclass
class _Series:
    exam_id: str
    last_emit: float = 0.0
    pending: StoredInstance | None = None
    flush: asyncio.TimerHandle | None = None


class ImageEvents:
    """``images.received`` at the first instance of a series, then at most once
    a second per series with the running count (coalesced in this process)."""

    def __init__(self, app: AppContext, interval_s: float = 1.0) -> None:
        self.app = app
        self.interval_s = interval_s
        self._series: dict[str, _Series] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Where a stored instance's file is (set by server.archive.service.build).
        self.locate: Callable[[StoredInstance], Path] | None = None

    async def on_stored(self, stored: StoredInstance) -> None:
        if stored.exam_id is None or stored.duplicate:
            return
        if stored.sop_class_uid in RDSR_CLASSES:  # a dose report, not an image to show
            await self._record_dose(stored)
            return
        if stored.sop_class_uid.startswith(ENCAPSULATED_DOCUMENT):
            return
        if stored.sop_class_uid in NOT_SHOWN:
            return
        now = time.monotonic()
        if len(self._series) > 10_000:  # forget finished series, not busy ones
            self._series = {
                uid: s
                for uid, s in self._series.items()
                if s.flush is not None or now - s.last_emit < 60
            }
        state = self._series.setdefault(stored.series_uid, _Series(stored.exam_id))
        if now - state.last_emit >= self.interval_s and state.flush is None:
            state.last_emit = now
            await self._emit(stored)
            return
        state.pending = stored
        if state.flush is None:
            delay = max(0.0, state.last_emit + self.interval_s - now)
            state.flush = asyncio.get_running_loop().call_later(
                delay, self._spawn_flush, stored.series_uid
            )

    def _spawn_flush(self, series_uid: str) -> None:
        task = asyncio.get_running_loop().create_task(self._flush(series_uid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, series_uid: str) -> None:
        state = self._series[series_uid]
        state.flush = None
        pending, state.pending = state.pending, None
        if pending is not None:
            state.last_emit = time.monotonic()
            await self._emit(pending)

    async def _emit(self, stored: StoredInstance) -> None:
        assert stored.exam_id is not None
        body: dict[str, Any] = {
            "study_uid": stored.study_uid,
            "series_uid": stored.series_uid,
            "modality": stored.modality,
            "count": stored.series_instance_count,
            "thumbnail_url": stored.thumbnail_url,
        }
        app = self.app
        try:
            async with app.db() as db:
                # Images after the report: a late series, announced as such.
                status = await db.scalar(select(Exam.status).where(Exam.id == stored.exam_id))
                body["late"] = status in LATE
                event = await append_event(
                    db, stored.exam_id, EventKind.IMAGES_RECEIVED, None, body, app.now()
                )
                await db.commit()
                payload = event_json(event)
            await publish_events(app, stored.exam_id, [payload])
        except Exception:
            # The images are stored whatever happens here; the next update of the
            # series carries the count.
            log.exception("could not announce images of exam %s", stored.exam_id)

    async def _record_dose(self, stored: StoredInstance) -> None:
        """Keep the figures of a dose SR on its exam (the latest one sent wins),
        audited as ``exam.dose.recorded``. A dose SR that cannot be read leaves the
        exam as it was: the radiologist types the dose as before."""
        assert stored.exam_id is not None
        if self.locate is None:
            return
        try:
            figures = await asyncio.to_thread(read_rdsr, self.locate(stored))
        except NotADoseReport as exc:
            log.info("dose SR %s of exam %s not read: %s", stored.sop_uid, stored.exam_id, exc)
            return
        except Exception:
            log.exception("could not read dose SR %s", stored.sop_uid)
            return
        app = self.app
        try:
            async with app.db() as db:
                exam = await db.get(Exam, stored.exam_id)
                if exam is None:
                    return
                exam.radiation_dose = figures
                await audit.record(
                    db,
                    action="exam.dose.recorded",
                    exam_id=exam.id,
                    study_uid=stored.study_uid,
                    detail={"sop_instance_uid": stored.sop_uid, "kind": figures["kind"]},
                    at=app.now(),
                )
                await db.commit()
        except Exception:
            log.exception("could not record the dose of exam %s", stored.exam_id)

    async def close(self) -> None:
        for state in self._series.values():
            if state.flush is not None:
                state.flush.cancel()
        for task in list(self._tasks):
            await task
