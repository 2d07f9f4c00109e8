"""The job that fetches an accepted exam's priors from its establishment's PACS
(docs/priors.md).

Not in the request path: the worker (or the web process with the memory engine,
like the outbox) looks for accepted exams of establishments with a PACS that have no
``prior_fetches`` row yet, claims each by inserting that row (the primary key makes
the claim atomic between workers; ``lease_until`` lets another worker take over an
exam whose worker died), then:

1. C-FIND the patient's studies of the last N years, by the establishment's
   identifier and, once the identity is qualified, by the INS too
   (``server.priors.pacs``); keep the relevant ones (``server.priors.relevance``);
2. for each, in turn: a ``prior.retrieval`` event (``retrieving``, position/total),
   a C-GET of the study whose instances are checked one by one (the queried patient,
   the study asked for: any other is refused, none of the study is kept, and the
   refusal is audited), stored in the archive under no exam (never filed into the
   current exam: the archive's study row has no exam and the establishment's id),
   then a ``done`` or ``failed`` event with a reason.

A PACS that does not answer, refuses the association or the query ends the job with
a ``failed`` event saying so; nothing is left half-written (a study's files are
stored only once all of it came and matched).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.exc import IntegrityError

from dicomweb.ingest import Ingestor
from dicomweb.storage import Storage
from dicomweb.tables import studies as archive_studies
from dicomweb.types import DicomwebConfig, InstanceAttrs, StoredInstance, StoreTarget
from rooms.types import EventKind, ExamStatus
from server.core import audit
from server.core.context import AppContext
from server.core.identity import SystemPrincipal
from server.core.models import Exam, PatientIdentity
from server.exams.publish import publish_events
from server.exams.service import append_event
from server.patients.service import IdentityStatus
from server.priors import pacs
from server.priors.models import HospitalPrior, PacsSource, PriorFetch
from server.priors.move import MoveReceiver, Unsolicited
from server.priors.relevance import Current, date_range, relevant
from server.priors.remote import Remote, remote_for

log = logging.getLogger("teleimagerie.priors")

RUNNING, DONE, FAILED = "running", "done", "failed"
LEASE_S = 900.0  # an exam's job held longer than this was abandoned by its worker
MAX_ATTEMPTS = 3  # then the job is given up (a study that kills its worker each time)
BATCH = 8
#: Accepted this long ago at most: a PACS configured today does not fetch for old exams.
LOOK_BACK = timedelta(days=2)
#: The statuses of an exam being read: the poll reads them through the index on
#: (establishment, status), not the whole exams table.
READING = (
    ExamStatus.ACCEPTED,
    ExamStatus.PROTOCOLED,
    ExamStatus.ACQUIRING,
    ExamStatus.IMAGES_COMPLETE,
)


@dataclass(frozen=True)
class PriorAccess:
    """The archive's ``Access`` for one retrieved study: it stores only that study,
    only for the queried patient, under no exam of ours and in the establishment
    (dicomweb/types.py ``Access``; checked again here after ``pacs.get_study``)."""

    establishment_id: int
    study_uid: str
    patient_ids: frozenset[str]

    async def authenticate(self, request: Any) -> Any:
        raise RuntimeError("a retrieval has no requests")

    def study_filter(self, principal: Any) -> None:
        return None

    async def authorize_store(self, principal: Any, attrs: InstanceAttrs) -> StoreTarget | None:
        if attrs.study_uid != self.study_uid or attrs.patient_id not in self.patient_ids:
            return None
        return StoreTarget(exam_id=None, establishment_id=self.establishment_id)


def _config(app: AppContext) -> DicomwebConfig:
    settings = app.settings
    return DicomwebConfig(
        storage_root=settings.dicom_storage,
        mount_path="/dicomweb",
        keep_cached=settings.dicom_cache_recent_mb * 1024 * 1024,
    )


# -- claiming --------------------------------------------------------------------


async def claim_due(app: AppContext, now: datetime | None = None) -> list[str]:
    """Claim the exams whose priors are due: accepted since their establishment's PACS
    was set and not reported nor cancelled yet, without a job row; or whose job's lease
    ran out."""
    now = now or app.now()
    async with app.read() as db:
        fresh = (
            await db.execute(
                select(Exam.id, Exam.establishment_id)
                .join(PacsSource, PacsSource.establishment_id == Exam.establishment_id)
                .where(
                    Exam.accepted_at.is_not(None),
                    Exam.accepted_at >= PacsSource.created_at,
                    Exam.accepted_at >= now - LOOK_BACK,
                    Exam.status.in_(READING),
                    ~exists().where(PriorFetch.exam_id == Exam.id),
                )
                .order_by(Exam.accepted_at)
                .limit(BATCH)
            )
        ).all()
        stale = (
            await db.execute(
                select(PriorFetch.exam_id, PriorFetch.attempts)
                .where(PriorFetch.status == RUNNING, PriorFetch.lease_until < now)
                .limit(BATCH)
            )
        ).all()
    claimed: list[str] = []
    lease = now + timedelta(seconds=LEASE_S)
    for exam_id, est in fresh:
        try:
            async with app.db() as db:
                db.add(
                    PriorFetch(
                        exam_id=exam_id,
                        establishment_id=est,
                        status=RUNNING,
                        attempts=1,
                        lease_until=lease,
                        created_at=now,
                        updated_at=now,
                    )
                )
                await db.commit()
            claimed.append(exam_id)
        except IntegrityError:  # another worker claimed it first
            continue
    for exam_id, attempts in stale:
        if attempts >= MAX_ATTEMPTS:
            await _finish(app, exam_id, FAILED, "abandoned", "the retrieval stopped repeatedly")
            continue
        async with app.db() as db:
            result = await db.execute(
                update(PriorFetch)
                .where(
                    PriorFetch.exam_id == exam_id,
                    PriorFetch.status == RUNNING,
                    PriorFetch.lease_until < now,
                )
                .values(lease_until=lease, attempts=PriorFetch.attempts + 1, updated_at=now)
            )
            await db.commit()
        if getattr(result, "rowcount", 0):
            claimed.append(exam_id)
    return claimed


async def fetch_due(app: AppContext, receiver: MoveReceiver | None = None) -> int:
    """Claim what is due and fetch it, one exam after the other; how many exams.
    ``receiver``: our C-MOVE destination, for the PACS retrieved by C-MOVE."""
    claimed = await claim_due(app)
    for exam_id in claimed:
        try:
            await fetch_priors(app, exam_id, receiver)
        except Exception:
            log.exception("fetching the priors of exam %s failed", exam_id)
            await _finish(app, exam_id, FAILED, "internal_error", "the retrieval stopped")
    return len(claimed)


async def prior_loop(app: AppContext, stop: asyncio.Event) -> None:
    """Fetch what is due until ``stop`` is set (the worker; the web process with the
    memory engine). With ``PRIORS_MOVE_PORT``, our C-MOVE destination listens meanwhile."""
    poll = app.settings.priors_poll_s
    receiver = await start_receiver(app)
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                if await fetch_due(app, receiver) == BATCH:
                    continue
            except Exception:
                log.exception("priors iteration failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, poll - (time.monotonic() - started)))
    finally:
        if receiver is not None:
            await asyncio.to_thread(receiver.stop)


async def start_receiver(app: AppContext) -> MoveReceiver | None:
    """Our Storage SCP for C-MOVE (docs/priors.md "C-MOVE"), if a port is set. An
    instance that comes with no move under way is refused there and audited here
    (``priors.unsolicited``, outcome ``denied``)."""
    settings = app.settings
    if not settings.priors_move_port:
        return None
    loop = asyncio.get_running_loop()

    def on_unsolicited(what: Unsolicited) -> None:
        log.warning("refused an instance nobody asked for from %s", what.calling_ae)
        asyncio.run_coroutine_threadsafe(
            audit.record(
                app,
                action="priors.unsolicited",
                outcome="denied",
                study_uid=what.study_uid or None,
                at=app.now(),
                detail={
                    "calling_ae": what.calling_ae,
                    "address": what.address,
                    "sop_instance_uid": what.sop_instance_uid,
                },
            ),
            loop,
        )

    receiver = MoveReceiver(
        settings.priors_move_ae_title or settings.dicom_ae_title,
        settings.priors_move_bind,
        settings.priors_move_port,
        on_unsolicited,
    )
    try:
        await asyncio.to_thread(receiver.start)
    except OSError:
        # The port is taken (another worker holds it): the loop goes on, and the
        # priors of a C-MOVE PACS fail here with ``no_move_destination``.
        log.exception("the C-MOVE destination cannot listen on port %d", receiver.port)
        return None
    return receiver


# -- one exam ----------------------------------------------------------------------


async def _event(app: AppContext, exam_id: str, body: dict[str, Any]) -> None:
    """A ``prior.retrieval`` event in the exam's room (committed, then published)."""
    async with app.db() as db:
        event = await append_event(db, exam_id, EventKind.PRIOR_RETRIEVAL, None, body, app.now())
        await db.commit()
    await publish_events(app, exam_id, [event])


async def _finish(
    app: AppContext,
    exam_id: str,
    status: str,
    reason: str | None = None,
    message: str | None = None,
) -> None:
    """The job's end; a failure's event is written in the same transaction as the
    failed status, so the room cannot miss it (then published)."""
    event = None
    async with app.db() as db:
        await db.execute(
            update(PriorFetch)
            .where(PriorFetch.exam_id == exam_id)
            .values(
                status=status,
                reason=reason,
                message=(message or "")[:300] or None,
                lease_until=None,
                updated_at=app.now(),
            )
        )
        if status == FAILED:  # a prior left midway by the job's failure fails with it
            await db.execute(
                update(HospitalPrior)
                .where(
                    HospitalPrior.exam_id == exam_id,
                    HospitalPrior.status.in_(("pending", "retrieving")),
                )
                .values(status=FAILED, reason=reason, message=(message or "")[:300] or None)
            )
            body = {
                "status": FAILED,
                "position": 0,
                "total": 0,
                "reason": reason,
                "message": message,
            }
            kind = EventKind.PRIOR_RETRIEVAL
            event = await append_event(db, exam_id, kind, None, body, app.now())
        await db.commit()
    if event is not None:
        await publish_events(app, exam_id, [event])


def _queries(exam: Exam, identity: PatientIdentity | None) -> list[pacs.Query]:
    """The establishment's identifier, and the INS once the identity is qualified
    (docs/patients.md)."""
    queries = [pacs.Query(exam.patient_id)]
    if (
        identity is not None
        and identity.identity_status == IdentityStatus.QUALIFIED
        and identity.ins
        and identity.ins_oid
    ):
        queries.append(pacs.Query(identity.ins, identity.ins_oid))
    return queries


async def fetch_priors(app: AppContext, exam_id: str, receiver: MoveReceiver | None = None) -> None:
    """Look for the exam's relevant priors in its establishment's PACS and retrieve
    them (see the module's docstring)."""
    async with app.read() as db:
        row = (
            await db.execute(
                select(Exam, PacsSource)
                .join(PacsSource, PacsSource.establishment_id == Exam.establishment_id)
                .where(Exam.id == exam_id)
            )
        ).first()
        if row is None:  # the PACS was removed meanwhile
            await _finish(app, exam_id, DONE, "no_pacs")
            return
        exam, source = row
        identity = (
            await db.get(PatientIdentity, exam.patient_identity_id)
            if exam.patient_identity_id
            else None
        )
    remote = remote_for(source, receiver)
    current = Current(
        study_uid=exam.study_instance_uid,
        accession_number=exam.accession_number,
        modality=exam.modality,
        body_part=exam.body_part,
        day=exam.created_at.date(),
    )
    span = date_range(current, source.years)
    found: dict[str, tuple[pacs.Study, pacs.Query]] = {}
    try:
        for query in _queries(exam, identity):
            for study in await asyncio.to_thread(remote.find_studies, query, span):
                # An answer for another patient than the one asked for is not ours
                # to take (a PACS matching loosely): left out.
                if study.patient_id == query.patient_id:
                    found.setdefault(study.study_uid, (study, query))
    except pacs.PacsError as exc:
        await _finish(app, exam_id, FAILED, exc.code, exc.message)
        return
    chosen = relevant(current, [s for s, _ in found.values()], source.years, source.max_studies)
    async with app.read() as db:
        ours = set(
            (
                await db.scalars(
                    select(archive_studies.c.study_uid).where(
                        archive_studies.c.study_uid.in_([s.study_uid for s in chosen]),
                        or_(
                            archive_studies.c.exam_id.is_not(None),
                            archive_studies.c.establishment_id != exam.establishment_id,
                        ),
                    )
                )
            ).all()
        )
    # A study filed under one of our exams already is listed as that exam (our own
    # priors); one of another establishment is not this patient's to take.
    chosen = [s for s in chosen if s.study_uid not in ours]
    # Taken over from a worker that stopped midway: what it retrieved stays, the rest
    # is looked up again.
    async with app.db() as db:
        kept = set(
            (
                await db.scalars(
                    select(HospitalPrior.study_instance_uid).where(
                        HospitalPrior.exam_id == exam_id, HospitalPrior.status == DONE
                    )
                )
            ).all()
        )
        await db.execute(
            delete(HospitalPrior).where(
                HospitalPrior.exam_id == exam_id, HospitalPrior.status != DONE
            )
        )
        await db.commit()
    chosen = [s for s in chosen if s.study_uid not in kept]
    if not chosen:
        await _finish(app, exam_id, DONE)
        if not kept:
            await _event(app, exam_id, {"status": "none", "position": 0, "total": 0})
        return
    now = app.now()
    async with app.db() as db:
        rows = [
            HospitalPrior(
                exam_id=exam.id,
                establishment_id=exam.establishment_id,
                patient_id=found[s.study_uid][1].patient_id,
                study_instance_uid=s.study_uid,
                study_date=s.study_date[:8],
                accession_number=s.accession_number[:64],
                modalities="\\".join(s.modalities)[:64],
                description=s.description[:200],
                position=i,
                total=len(chosen),
                status="pending",
                instances=0,
                created_at=now,
                updated_at=now,
            )
            for i, s in enumerate(chosen, start=1)
        ]
        db.add_all(rows)
        await db.commit()
        ids = [r.id for r in rows]
    storage = Storage(_config(app).storage_root)
    for prior_id, study in zip(ids, chosen, strict=True):
        await _retrieve_one(app, exam, remote, storage, prior_id, study, found)
    await _finish(app, exam_id, DONE)


async def _set(app: AppContext, prior_id: int, **values: Any) -> HospitalPrior:
    async with app.db() as db:
        row = await db.get(HospitalPrior, prior_id)
        assert row is not None
        for key, value in values.items():
            setattr(row, key, value)
        row.updated_at = app.now()
        await db.commit()
        return row


def _body(row: HospitalPrior) -> dict[str, Any]:
    return {
        "prior_id": row.id,
        "study_instance_uid": row.study_instance_uid,
        "position": row.position,
        "total": row.total,
        "status": row.status,
        "study_date": row.study_date,
        "modalities": row.modalities.split("\\") if row.modalities else [],
        "description": row.description,
        "instances": row.instances,
        "reason": row.reason,
        "message": row.message,
    }


async def _retrieve_one(
    app: AppContext,
    exam: Exam,
    remote: Remote,
    storage: Storage,
    prior_id: int,
    study: pacs.Study,
    found: dict[str, tuple[pacs.Study, pacs.Query]],
) -> None:
    row = await _set(app, prior_id, status="retrieving")
    await _event(app, exam.id, _body(row))
    query = found[study.study_uid][1]
    patient_ids = frozenset({query.patient_id})
    written: list[Path] = []

    def sink(data: bytes) -> Path:
        fd, path = storage.new_temp()
        written.append(path)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return path

    def discard() -> None:
        for path in written:
            Storage.discard(path)

    try:
        got = await asyncio.to_thread(remote.retrieve, study.study_uid, query, sink)
    except pacs.PacsError as exc:
        await asyncio.to_thread(discard)
        row = await _set(app, prior_id, status=FAILED, reason=exc.code, message=exc.message)
        await _event(app, exam.id, _body(row))
        return
    if got.mismatched:
        await asyncio.to_thread(discard)
        await audit.record(
            app,
            action="priors.retrieve",
            outcome="denied",
            exam_id=exam.id,
            study_uid=study.study_uid,
            at=app.now(),
            detail={
                "reason": "patient_mismatch",
                "pacs": remote.name,
                "refused": got.mismatched,
                "received": len(written),
            },
        )
        message = (
            f"{got.mismatched} image(s) of the study name another patient than the one "
            "queried: nothing of it was kept"
        )
        row = await _set(app, prior_id, status=FAILED, reason="patient_mismatch", message=message)
        await _event(app, exam.id, _body(row))
        return
    if got.failed:
        await asyncio.to_thread(discard)
        message = f"{got.failed} image(s) of the study could not be read or written: none kept"
        row = await _set(app, prior_id, status=FAILED, reason="incomplete", message=message)
        await _event(app, exam.id, _body(row))
        return
    if not written:
        row = await _set(
            app,
            prior_id,
            status=FAILED,
            reason="empty",
            message="the PACS sent no image of the study",
        )
        await _event(app, exam.id, _body(row))
        return
    access = PriorAccess(exam.establishment_id, study.study_uid, patient_ids)
    ingestor = Ingestor(_config(app), app.db, access, hooks=None, storage=storage)
    principal = SystemPrincipal(
        establishment_id=exam.establishment_id, source=f"pacs:{remote.name}"
    )
    results = await ingestor.store_many(list(written), principal, owned=True)
    stored = sum(1 for r in results if isinstance(r, StoredInstance))
    await audit.record(
        app,
        action="priors.retrieve",
        outcome="ok" if stored == len(results) else "failed",
        exam_id=exam.id,
        study_uid=study.study_uid,
        at=app.now(),
        detail={"pacs": remote.name, "stored": stored, "failed": len(results) - stored},
    )
    if stored == 0:
        row = await _set(
            app,
            prior_id,
            status=FAILED,
            reason="store_failed",
            message="the archive could not store the study",
        )
    else:
        row = await _set(app, prior_id, status=DONE, instances=stored)
    await _event(app, exam.id, _body(row))
