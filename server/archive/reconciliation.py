"""The reconciliation queue: instances kept aside instead of filed, until a person
files them into an exam or discards them (docs/dicomweb.md "Filing and
reconciliation").

An item's bytes wait in the storage's quarantine area, never indexed (no QIDO,
no WADO, no study row that could take an exam's StudyInstanceUID). Who sees an
item: the radiographers of its establishment and the coordinators; an item
without establishment (kept aside from centre staff outside any exam) only the
coordinators. Items are handled by series: filing or discarding one item acts on
every pending item of its series in the same queue, since a series belongs to
one exam. Each change is audited and announced on the personal channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dicomweb.storage import Storage
from dicomweb.types import KeptAside, Quarantined, StoredInstance
from rooms.types import ExamStatus, Role
from server.archive.coercion import Identity, coerce
from server.core import audit
from server.core.channels import notify
from server.core.context import AppContext
from server.core.errors import ApiError, forbidden, not_found
from server.core.identity import Principal, SystemPrincipal
from server.core.models import Exam, ReconciliationItem, User, new_id

if TYPE_CHECKING:
    from server.archive.context import ArchiveContext

PENDING, FILED, DISCARDED = "pending", "filed", "discarded"
#: Exams a person may file into: accepted or later; late series after the report.
FILEABLE = frozenset(
    {
        ExamStatus.ACCEPTED,
        ExamStatus.PROTOCOLED,
        ExamStatus.ACQUIRING,
        ExamStatus.IMAGES_COMPLETE,
        ExamStatus.REPORTED,
        ExamStatus.DELIVERED,
    }
)
REVIEWERS = frozenset({Role.MANIPULATOR, Role.COORDINATOR})
#: Instances coerced and ingested at a time when a series is filed.
FILE_BATCH = 32


@dataclass(frozen=True)
class Place:
    """Where an instance kept aside is queued, decided with it (server/archive/service.py)."""

    establishment_id: int | None = None
    candidate_exam_id: str | None = None


def _clip(value: str, size: int) -> str:
    """Header text as a column takes it (PostgreSQL refuses NUL in text)."""
    return value.replace("\x00", "")[:size]


def stored_path(app: AppContext, relative: str) -> Path:
    """Where a kept-aside file lies under the archive's storage root (DICOM_STORAGE),
    refusing a path that would lead out of it."""
    root = Path(app.settings.dicom_storage).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ValueError("path outside the storage root")
    return path


async def record(app: AppContext, principal: Any, kept: Sequence[Quarantined]) -> list[str]:
    """Queue instances already moved to the quarantine area; one transaction,
    one audit row, one notification per establishment."""
    now = app.now()
    user_id = principal.user.id if isinstance(principal, Principal) else None
    source = "stow" if isinstance(principal, Principal) else getattr(principal, "source", "system")
    items = []
    for q in kept:
        place = q.decision.context if isinstance(q.decision.context, Place) else Place()
        a = q.attrs
        items.append(
            ReconciliationItem(
                id=new_id(),
                establishment_id=place.establishment_id,
                uploader_id=user_id,
                source=_clip(source, 64),
                received_at=now,
                reason=_clip(q.decision.reason, 32),
                message=_clip(q.decision.message, 2000),
                study_uid=_clip(a.study_uid, 64),
                series_uid=_clip(a.series_uid, 64),
                sop_uid=_clip(a.sop_uid, 64),
                sop_class_uid=_clip(a.sop_class_uid, 64),
                accession_number=_clip(a.accession_number, 64),
                modality=_clip(a.modality, 16),
                patient_id=_clip(a.patient_id, 64),
                patient_name=_clip(a.patient_name, 200),
                patient_birth_date=_clip(a.patient_birth_date, 16),
                patient_sex=_clip(a.patient_sex, 16),
                candidate_exam_id=place.candidate_exam_id,
                path=q.path,
                size=q.size,
                status=PENDING,
            )
        )
    async with app.db() as db:
        # A resend (a modality retrying after a lost response) joins the pending
        # item of the same instance in the same queue instead of doubling it.
        again = await _pending_copies(db, items)
        fresh = [i for i in items if _key(i) not in again]
        db.add_all(fresh)
        await audit.record(
            db,
            action="reconciliation.aside",
            who=principal if isinstance(principal, Principal) else None,
            username=None if isinstance(principal, Principal) else source,
            at=now,
            detail={
                "count": len(items),
                "resent": len(items) - len(fresh),
                "reasons": sorted({i.reason for i in items}),
                "series": sorted({i.series_uid for i in items})[:20],
                "source": source,
            },
        )
        await db.commit()
    for item in items:
        if _key(item) in again:
            Storage.discard(stored_path(app, item.path))
    if fresh:
        await announce(app, "reconciliation.added", fresh)
    return [again.get(_key(i), i.id) for i in items]


def _key(item: ReconciliationItem) -> tuple[str, int | None]:
    return (item.sop_uid, item.establishment_id)


async def _pending_copies(
    db: AsyncSession, items: list[ReconciliationItem]
) -> dict[tuple[str, int | None], str]:
    """(SOP Instance UID, establishment) -> id of a pending item already holding
    that instance in that queue."""
    if not items:
        return {}
    rows = await db.execute(
        select(
            ReconciliationItem.sop_uid,
            ReconciliationItem.establishment_id,
            ReconciliationItem.id,
        ).where(
            ReconciliationItem.status == PENDING,
            ReconciliationItem.sop_uid.in_([i.sop_uid for i in items]),
        )
    )
    return {(sop, site): item_id for sop, site, item_id in rows}


async def announce(app: AppContext, kind: str, items: Sequence[ReconciliationItem]) -> None:
    """Tell the radiographers of each establishment concerned and the coordinators
    (a nudge: the view reloads ``GET /api/reconciliation``; no patient data)."""
    by_site: dict[int | None, list[ReconciliationItem]] = {}
    for item in items:
        by_site.setdefault(item.establishment_id, []).append(item)
    for site, group in by_site.items():
        users: list[int] = []
        if site is not None:
            async with app.read() as db:
                users = list(
                    await db.scalars(
                        select(User.id).where(
                            User.role == Role.MANIPULATOR,
                            User.establishment_id == site,
                            User.active.is_(True),
                        )
                    )
                )
        body = {
            "establishment_id": site,
            "count": len(group),
            "items": [i.id for i in group][:100],
            "status": group[0].status,
        }
        await notify(app, kind, None, body, users=users, roles=[Role.COORDINATOR])


def visible(principal: Principal) -> Any:
    """A SQL condition on the items the caller may see and act on; 403 for roles
    that have no queue."""
    if principal.role == Role.COORDINATOR:
        return ReconciliationItem.id.is_not(None)
    if principal.role == Role.MANIPULATOR and principal.establishment_id is not None:
        return ReconciliationItem.establishment_id == principal.establishment_id
    raise forbidden("only radiographers and coordinators reconcile images")


async def load_group(
    db: AsyncSession, principal: Principal, item_id: str
) -> list[ReconciliationItem]:
    """The pending items of ``item_id``'s series in its queue; 404 if the caller
    may not see it, 409 if it is resolved already."""
    item = await db.scalar(
        select(ReconciliationItem).where(ReconciliationItem.id == item_id, visible(principal))
    )
    if item is None:
        raise not_found("reconciliation item")
    if item.status != PENDING:
        raise ApiError(409, "already_resolved", f"this item is {item.status} already")
    rows = await db.scalars(
        select(ReconciliationItem)
        .where(
            ReconciliationItem.status == PENDING,
            ReconciliationItem.series_uid == item.series_uid,
            ReconciliationItem.establishment_id == item.establishment_id
            if item.establishment_id is not None
            else ReconciliationItem.establishment_id.is_(None),
        )
        .order_by(ReconciliationItem.received_at, ReconciliationItem.id)
    )
    return list(rows.all())


async def target_exam(
    db: AsyncSession, principal: Principal, site: int | None, exam_id: str
) -> Exam:
    """The exam to file into: of the item's establishment (any, for an item of no
    establishment, which only coordinators see) and taking images."""
    query = select(Exam).where(Exam.id == exam_id)
    if principal.role == Role.MANIPULATOR:
        query = query.where(Exam.establishment_id == principal.establishment_id)
    exam = await db.scalar(query)
    if exam is None:
        raise not_found()
    if site is not None and exam.establishment_id != site:
        raise ApiError(409, "other_establishment", "the exam is not of this item's establishment")
    if exam.status not in FILEABLE:
        raise ApiError(409, "exam_not_storable", f"the exam is {exam.status}: no images")
    return exam


def identity(exam: Exam) -> Identity:
    return Identity(
        patient_id=exam.patient_id,
        patient_name=exam.patient_name,
        patient_birth_date=exam.patient_birth_date.strftime("%Y%m%d"),
        patient_sex=exam.patient_sex,
        study_uid=exam.study_instance_uid,
        accession_number=exam.accession_number,
    )


def _read_and_coerce(
    storage: Storage, items: list[ReconciliationItem], who: Identity, at: datetime
) -> list[bytes]:
    """The items' bytes with the exam's identity applied. Blocking."""
    return [coerce(storage.absolute(i.path).read_bytes(), who, at) for i in items]


async def file_group(
    app: ArchiveContext, principal: Principal, items: list[ReconciliationItem], exam: Exam
) -> dict[str, Any]:
    """Coerce the items to ``exam`` and ingest them bound to it (the normal path:
    index, room event); mark those stored as filed and remove their bytes."""
    storage = app.ingestor.storage
    now = app.now()
    system = SystemPrincipal(
        exam_id=exam.id, establishment_id=exam.establishment_id, source="reconciliation"
    )
    results: list[Any] = []
    for start in range(0, len(items), FILE_BATCH):  # a long series, not all in memory
        chunk = items[start : start + FILE_BATCH]
        data = await asyncio.to_thread(_read_and_coerce, storage, chunk, identity(exam), now)
        results += await app.ingestor.store_many(
            data, system, expected_study=exam.study_instance_uid
        )
    filed, failed = [], []
    for item, result in zip(items, results, strict=True):
        if isinstance(result, StoredInstance):
            filed.append(item)
        else:
            if isinstance(result, KeptAside):  # the exam changed meanwhile: one copy only
                await _drop(app, result.item_id)
            failed.append({"id": item.id, "message": getattr(result, "message", "not filed")})
    async with app.db() as db:
        for item in filed:
            row = await db.get(ReconciliationItem, item.id)
            assert row is not None
            row.status, row.resolved_by, row.resolved_at = FILED, principal.user.id, now
            row.filed_exam_id = exam.id
        await audit.record(
            db,
            action="reconciliation.file",
            who=principal,
            exam_id=exam.id,
            study_uid=exam.study_instance_uid,
            at=now,
            detail={
                "items": [i.id for i in filed],
                "failed": len(failed),
                "series_uid": items[0].series_uid,
                "reason": items[0].reason,
            },
        )
        await db.commit()
    for item in filed:
        Storage.discard(storage.absolute(item.path))
        item.status = FILED
    if filed:
        await announce(app, "reconciliation.resolved", filed)
    return {"exam_id": exam.id, "filed": [i.id for i in filed], "failed": failed}


async def discard_group(
    app: AppContext, principal: Principal, items: list[ReconciliationItem], reason: str
) -> dict[str, Any]:
    """Discard the items: the rows stay (resolved, with the reason), the bytes go."""
    now = app.now()
    async with app.db() as db:
        for item in items:
            row = await db.get(ReconciliationItem, item.id)
            assert row is not None
            row.status, row.resolved_by, row.resolved_at = DISCARDED, principal.user.id, now
            row.discard_reason = reason
        await audit.record(
            db,
            action="reconciliation.discard",
            who=principal,
            at=now,
            detail={
                "items": [i.id for i in items],
                "series_uid": items[0].series_uid,
                "reason": items[0].reason,
                "why": reason[:500],
            },
        )
        await db.commit()
    for item in items:
        Storage.discard(stored_path(app, item.path))
        item.status = DISCARDED
    await announce(app, "reconciliation.resolved", items)
    return {"discarded": [i.id for i in items]}


async def _drop(app: AppContext, item_id: str) -> None:
    """Remove an item made by mistake while filing (row and bytes)."""
    async with app.db() as db:
        row = await db.get(ReconciliationItem, item_id)
        if row is None:
            return
        path = row.path
        await db.delete(row)
        await db.commit()
    Storage.discard(stored_path(app, path))
