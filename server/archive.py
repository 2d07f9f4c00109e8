"""The server's side of the DICOMweb archive: who sees and stores which study,
and the live ``images.received`` events of the exam room (docs/dicomweb.md).

The archive package knows nothing of sessions or exams; this module gives it
an :class:`Access` built on the same authentication and exam scope as every
other route, and :class:`ImageEvents`, the ingest hook that links stored
instances to their exam's room. Which exam an instance is filed into is
``server.filing``'s rule; what it keeps aside goes to ``server.reconciliation``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, true
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from dicomweb.app import create_dicomweb_app
from dicomweb.tables import studies
from dicomweb.types import (
    DicomwebConfig,
    DicomwebError,
    InstanceAttrs,
    KeepAside,
    Quarantined,
    StoredInstance,
    StoreTarget,
)
from rooms.types import EventKind, Role
from server import reconciliation
from server.auth import Principal, authenticate
from server.authz import exam_scope, scope_of
from server.context import AppContext
from server.errors import ApiError
from server.exams import append_event, event_json
from server.filing import LATE, Aside, ExamFacts, Patient, Seen, decide
from server.models import Exam
from server.publish import room_channel

log = logging.getLogger("teleimagerie.archive")

# Encapsulated documents (the signed report as PDF, PS3.4 A.45) are not images.
ENCAPSULATED_DOCUMENT = "1.2.840.10008.5.1.4.1.1.104."


@dataclass(frozen=True)
class SystemPrincipal:
    """The platform itself storing into one exam (signed report PDFs, the
    modality gateway after it has matched the calling AE's establishment)."""

    exam_id: str | None = None
    establishment_id: int | None = None
    role: str = "system"
    source: str = "system"  # what a queue item names as its origin ("dicom:<AE>")


class ServerAccess:
    def __init__(self, app: AppContext) -> None:
        self.app = app

    async def authenticate(self, request: HTTPConnection) -> Principal:
        try:
            return await authenticate(request)
        except ApiError as exc:
            raise DicomwebError(exc.status, exc.code, exc.message) from None

    def cache_key(self, principal: Principal | SystemPrincipal) -> Hashable | None:
        """What ``study_filter`` depends on, for the archive's frames cache (an
        allowed study is remembered for a few seconds per key): the session, so a
        new login or a changed role starts afresh; a radiologist's exam scope is
        asked of SQL again once the entry expires."""
        if isinstance(principal, SystemPrincipal):
            return None
        user = principal.user
        return ("session", principal.session_id, user.id, user.role, user.establishment_id)

    def study_filter(self, principal: Principal | SystemPrincipal) -> ColumnElement[bool] | None:
        """The studies the caller may see: the exam scope of ``server.authz``."""
        if isinstance(principal, SystemPrincipal):
            return None
        return scope_of(
            principal, establishment_id=studies.c.establishment_id, exam_id=studies.c.exam_id
        )

    def store_key(
        self, _principal: Principal | SystemPrincipal, attrs: InstanceAttrs
    ) -> Hashable | None:
        """What ``authorize_store`` reads of an instance: the slices of a series
        in one ingest batch share one query."""
        return (
            attrs.study_uid,
            attrs.accession_number,
            attrs.patient_id,
            attrs.patient_name,
            attrs.patient_birth_date,
            attrs.patient_sex,
            attrs.expected_study,
        )

    @staticmethod
    def actable(principal: Principal | SystemPrincipal) -> ColumnElement[bool] | None:
        """The exams the caller may store into (None: stores nothing). Narrower
        than what they may see: a radiologist sees the unaccepted requests of
        every site but stores only into the exams assigned to them."""
        if isinstance(principal, SystemPrincipal):
            where: list[ColumnElement[bool]] = [true()]
            if principal.exam_id is not None:
                where.append(Exam.id == principal.exam_id)
            if principal.establishment_id is not None:
                where.append(Exam.establishment_id == principal.establishment_id)
            return and_(*where)
        if principal.role == Role.MANIPULATOR:
            return exam_scope(principal)
        if principal.role == Role.RADIOLOGIST:
            return Exam.assigned_radiologist_id == principal.user.id
        return None

    async def authorize_store(
        self, principal: Principal | SystemPrincipal, attrs: InstanceAttrs
    ) -> StoreTarget | KeepAside | None:
        """File the instance by ``server.filing.decide`` among the exams the
        caller may store into, or keep it aside; refuse callers who store nothing."""
        scope = self.actable(principal)
        if scope is None:
            return None
        keys = [Exam.study_instance_uid == attrs.study_uid]
        if attrs.accession_number:
            keys.append(Exam.accession_number == attrs.accession_number)
        if attrs.expected_study:
            keys.append(Exam.study_instance_uid == attrs.expected_study)
        if isinstance(principal, SystemPrincipal) and principal.exam_id is not None:
            keys.append(Exam.id == principal.exam_id)
        async with self.app.read() as db:
            rows = (await db.scalars(select(Exam).where(or_(*keys), scope).limit(8))).all()
        exams = [_facts(e) for e in rows]
        bound = None
        if isinstance(principal, SystemPrincipal) and principal.exam_id is not None:
            bound = next((e for e in exams if e.id == principal.exam_id), None)
        elif attrs.expected_study:
            bound = next((e for e in exams if e.study_uid == attrs.expected_study), None)
        seen = Seen(
            attrs.study_uid,
            attrs.accession_number,
            Patient(
                attrs.patient_id, attrs.patient_name, attrs.patient_birth_date, attrs.patient_sex
            ),
        )
        outcome = decide(seen, exams, bound)
        if isinstance(outcome, Aside):
            place = reconciliation.Place(
                establishment_id=_aside_establishment(principal, bound),
                candidate_exam_id=outcome.candidate.id if outcome.candidate else None,
            )
            return KeepAside(str(outcome.reason), outcome.message, place)
        exam = outcome.exam
        return StoreTarget(exam_id=exam.id, establishment_id=exam.establishment_id)

    async def keep_aside(
        self, principal: Principal | SystemPrincipal, kept: list[Quarantined]
    ) -> list[str]:
        """Record instances kept aside (server/reconciliation.py)."""
        return await reconciliation.record(self.app, principal, kept)


def _facts(exam: Exam) -> ExamFacts:
    return ExamFacts(
        id=exam.id,
        establishment_id=exam.establishment_id,
        status=exam.status,
        study_uid=exam.study_instance_uid,
        accession=exam.accession_number,
        patient=Patient(
            exam.patient_id,
            exam.patient_name,
            exam.patient_birth_date.strftime("%Y%m%d"),
            exam.patient_sex,
        ),
    )


def _aside_establishment(
    principal: Principal | SystemPrincipal, bound: ExamFacts | None
) -> int | None:
    """Whose queue an instance kept aside joins: the uploader's establishment;
    for centre staff, the one of the exam the upload was bound to; else none
    (the coordinators only)."""
    if principal.establishment_id is not None:
        return int(principal.establishment_id)
    return bound.establishment_id if bound is not None else None


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

    async def on_stored(self, stored: StoredInstance) -> None:
        if stored.exam_id is None or stored.duplicate:
            return
        if stored.sop_class_uid.startswith(ENCAPSULATED_DOCUMENT):
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
            await app.bus.publish(room_channel(stored.exam_id), {"type": "event", "event": payload})
        except Exception:
            # The images are stored whatever happens here; the next update of the
            # series carries the count.
            log.exception("could not announce images of exam %s", stored.exam_id)

    async def close(self) -> None:
        for state in self._series.values():
            if state.flush is not None:
                state.flush.cancel()
        for task in list(self._tasks):
            await task


def attach(app: AppContext) -> None:
    """Build the archive over the app's database, storage and room events."""
    settings = app.settings
    config = DicomwebConfig(
        storage_root=settings.dicom_storage,
        max_body_bytes=settings.max_dicom_body_bytes,
        public_base_url=f"{settings.public_url}/dicomweb" if settings.public_url else None,
        allowed_origins=settings.allowed_origins,
        mount_path="/dicomweb",
    )
    app.images = ImageEvents(app)
    archive = create_dicomweb_app(config, app.db, ServerAccess(app), app.images)
    archive.state.ctx = app  # its requests authenticate like the rest of the server
    app.archive = archive
    app.ingestor = archive.state.dicomweb.ingestor


async def mount(scope: Scope, receive: Receive, send: Send) -> None:
    """``/dicomweb``: the archive built at start-up for this process."""
    archive = scope["app"].state.ctx.archive
    await archive(scope, receive, send)
