"""The server's side of the DICOMweb archive: who sees and stores which study,
and the live ``images.received`` events of the exam room (docs/dicomweb.md).

The archive package knows nothing of sessions or exams; this module gives it
an :class:`Access` built on the same authentication and exam scope as every
other route, and :class:`ImageEvents`, the ingest hook that links stored
instances to their exam's room. Which exam an instance is filed into is
``server.archive.filing``'s rule; what it keeps aside goes to ``server.archive.reconciliation``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Select, and_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from dicomweb.app import create_dicomweb_app
from dicomweb.tables import studies
from dicomweb.types import (
    DicomwebConfig,
    DicomwebError,
    InstanceAttrs,
    KeepAside,
    Quarantined,
    StoreTarget,
)
from rooms.types import Role
from server.accounts import auth
from server.archive import reconciliation
from server.archive.context import ArchiveContext
from server.archive.filing import Aside, ExamFacts, Patient, Seen, decide, patient_conflicts
from server.archive.images import ImageEvents
from server.core.context import AppContext, core_fields
from server.core.errors import ApiError
from server.core.identity import Principal, SystemPrincipal
from server.core.models import Exam
from server.exams.authz import exam_scope, scope_of
from server.priors.service import prior_exam_ids, prior_study_uids

log = logging.getLogger("teleimagerie.archive")


class Caller(Protocol):
    """What the archive reads of a request to know its caller: the archive's
    requests come as the web framework's, which have these."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def cookies(self) -> Mapping[str, str]: ...

    @property
    def scope(self) -> MutableMapping[str, Any]: ...


#: Who else reads an exam's images: given a caller, the ids of further exams whose
#: studies they may read (a peer reviewer's, ``server.review``), or None. Passed in by
#: the composition, so that the archive does not import the domains above it.
ExamReaders = Sequence[Callable[[Principal], Select[Any] | None]]


class ServerAccess:
    def __init__(self, app: AppContext, readers: ExamReaders = ()) -> None:
        self.app = app
        self.readers = readers

    async def authenticate(self, request: Caller) -> Principal:
        """The caller, by the session token every route accepts (docs/api.md
        "Conventions")."""
        cached: Principal | None = request.scope.get(auth.SCOPE_KEY)
        if cached is not None:
            return cached
        token = auth.session_token(
            request.headers.get("authorization"), request.cookies.get(auth.COOKIE)
        )
        try:
            principal = await auth.authenticate(self.app, token, reuse=True)
        except ApiError as exc:
            raise DicomwebError(exc.status, exc.code, exc.message) from None
        request.scope[auth.SCOPE_KEY] = principal
        return principal

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
        """The studies the caller may see: the exam scope of ``server.authz``, and for
        a radiologist the studies of the priors of their patients and those retrieved
        from the hospital's PACS for their exams (``server.priors``), and the exams the
        other ``readers`` name (a peer reviewer's)."""
        if isinstance(principal, SystemPrincipal):
            return None
        scope = scope_of(
            principal, establishment_id=studies.c.establishment_id, exam_id=studies.c.exam_id
        )
        if scope is None:
            return None
        also: list[ColumnElement[bool]] = []
        priors = prior_exam_ids(principal)
        fetched = prior_study_uids(principal)
        if priors is not None and fetched is not None:
            also += [studies.c.exam_id.in_(priors), studies.c.study_uid.in_(fetched)]
        for reader in self.readers:
            exams = reader(principal)
            if exams is not None:
                also.append(studies.c.exam_id.in_(exams))
        return or_(scope, *also) if also else scope

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
        """File the instance by ``server.archive.filing.decide`` among the exams the
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

    async def study_identity(
        self, session: AsyncSession, exam_id: str, stored: Mapping[str, str]
    ) -> dict[str, str] | None:
        """The exam's patient identity for a new study row, when the instance's
        contradicts it (a merge or new identifier committed after the instance was
        filed): read under a shared lock of the exam row, which the correction
        updates first (server/patients/service.py), so one waits for the other."""
        row = (
            await session.execute(
                select(
                    Exam.patient_id, Exam.patient_name, Exam.patient_birth_date, Exam.patient_sex
                )
                .where(Exam.id == exam_id)
                .with_for_update(read=True)
            )
        ).one_or_none()
        if row is None:
            return None
        now = {
            "patient_id": row.patient_id[:64],
            "patient_name": row.patient_name[:320],
            "patient_birth_date": row.patient_birth_date.strftime("%Y%m%d"),
            "patient_sex": row.patient_sex[:16],
        }
        seen = Patient(*(stored[k] for k in now))
        if not patient_conflicts(seen, Patient(*now.values())):
            return None
        return now

    async def keep_aside(
        self, principal: Principal | SystemPrincipal, kept: list[Quarantined]
    ) -> list[str]:
        """Record instances kept aside (server/archive/reconciliation.py)."""
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


def build(app: AppContext, readers: ExamReaders = ()) -> ArchiveContext:
    """Build the archive over the core services: its ingest path announces stored
    images in the exam rooms, and its requests authenticate like the rest of the
    server (``readers``: who else may read an exam's images, ``ServerAccess``). The
    context returned holds all of it (docs/architecture.md)."""
    settings = app.settings
    config = DicomwebConfig(
        storage_root=settings.dicom_storage,
        max_body_bytes=settings.max_dicom_body_bytes,
        public_base_url=f"{settings.public_url}/dicomweb" if settings.public_url else None,
        allowed_origins=settings.allowed_origins,
        mount_path="/dicomweb",
        keep_cached=settings.dicom_cache_recent_mb * 1024 * 1024,
    )
    images = ImageEvents(app)
    archive = create_dicomweb_app(config, app.db, ServerAccess(app, readers), images)
    storage = archive.state.dicomweb.ingestor.storage
    images.locate = lambda s: storage.absolute(
        storage.relative_path(s.study_uid, s.series_uid, s.sop_uid)
    )
    context = ArchiveContext(
        **core_fields(app),
        archive=archive,
        ingestor=archive.state.dicomweb.ingestor,
        images=images,
    )
    return context
