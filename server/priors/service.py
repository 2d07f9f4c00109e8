"""The earlier exams of an exam's patient in our archive, and the studies fetched for
it from the hospital's PACS (docs/api.md "Priors", docs/priors.md).

A prior is an exam of the same establishment with the same patient identifier,
requested before the exam being read and not cancelled. Establishments assign their
own identifiers, so an identifier is never matched across establishments (docs/security.md
"Priors").

Who sees a prior: whoever sees it anyway (site staff of the establishment,
coordinators), and the radiologist assigned to an exam of that patient, for the
comparison, in the room's list and in the archive (the studies filed under a prior
are readable through DICOMweb by that radiologist: ``prior_exam_ids``). The studies
retrieved from the hospital's PACS for an exam are stored under no exam, in its
establishment (its site staff see them as they see every study of the site), and
readable by the radiologist assigned to that exam (``prior_study_uids``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from dicomweb.tables import studies
from rooms.types import ExamStatus, Role
from server.core.identity import Principal
from server.core.models import Exam, PatientIdentity
from server.exams.authz import scope_of
from server.patients.service import study_identity
from server.priors.models import HospitalPrior


def prior_exam_ids(principal: Principal) -> Select[Any] | None:
    """The ids of the exams a radiologist may read as priors: those of the patients
    (same establishment, same patient identifier) of the exams assigned to them.
    None for the other roles, whose scope already holds what they may compare."""
    if principal.role != Role.RADIOLOGIST:
        return None
    current = aliased(Exam)
    return (
        select(Exam.id)
        .join(
            current,
            and_(
                current.establishment_id == Exam.establishment_id,
                current.patient_id == Exam.patient_id,
            ),
        )
        .where(current.assigned_radiologist_id == principal.user.id)
    )


def visible_as_prior(principal: Principal) -> ColumnElement[bool]:
    """True for the exams the caller may open as a prior."""
    scope = scope_of(principal)
    if scope is None:
        return true()
    priors = prior_exam_ids(principal)
    return scope if priors is None else or_(scope, Exam.id.in_(priors))


async def priors_of(db: AsyncSession, principal: Principal, exam: Exam) -> list[Exam]:
    """The patient's earlier exams the caller may open, newest first."""
    stmt = (
        select(Exam)
        .where(
            Exam.establishment_id == exam.establishment_id,
            Exam.patient_id == exam.patient_id,
            Exam.id != exam.id,
            Exam.created_at < exam.created_at,
            Exam.status != ExamStatus.CANCELLED,
            visible_as_prior(principal),
        )
        .order_by(Exam.created_at.desc())
        .limit(50)
    )
    return list((await db.scalars(stmt)).unique().all())


def prior_json(exam: Exam) -> dict[str, Any]:
    """What the room lists of a prior (docs/api.md "Priors")."""
    return {
        "id": exam.id,
        "source": "archive",
        "study_instance_uid": exam.study_instance_uid,
        "accession_number": exam.accession_number,
        "modality": exam.modality,
        "body_part": exam.body_part,
        "status": exam.status,
        "requested_at": exam.created_at.isoformat(),
        "reported_at": exam.reported_at.isoformat() if exam.reported_at else None,
    }


def prior_study_uids(principal: Principal) -> Select[Any] | None:
    """The StudyInstanceUIDs of the hospital priors a radiologist may read: those
    fetched for the exams assigned to them. None for the other roles (site staff see
    their establishment's studies, coordinators every study)."""
    if principal.role != Role.RADIOLOGIST:
        return None
    return (
        select(HospitalPrior.study_instance_uid)
        .join(Exam, Exam.id == HospitalPrior.exam_id)
        .where(Exam.assigned_radiologist_id == principal.user.id, HospitalPrior.status == "done")
    )


async def hospital_priors_of(db: AsyncSession, exam: Exam) -> list[HospitalPrior]:
    """The studies found in the hospital's PACS for this exam, newest first (the caller
    has checked that they may see the exam)."""
    stmt = (
        select(HospitalPrior)
        .where(HospitalPrior.exam_id == exam.id)
        .order_by(HospitalPrior.position)
    )
    return list((await db.scalars(stmt)).all())


def hospital_prior_json(prior: HospitalPrior) -> dict[str, Any]:
    """What the room lists of a prior from the hospital's PACS (docs/api.md "Priors")."""
    day = prior.study_date
    iso = f"{day[:4]}-{day[4:6]}-{day[6:8]}" if len(day) == 8 and day.isdigit() else None
    modalities = prior.modalities.split("\\") if prior.modalities else []
    return {
        "id": f"pacs-{prior.id}",
        "source": "hospital",
        "study_instance_uid": prior.study_instance_uid,
        "accession_number": prior.accession_number or None,
        "modality": modalities[0] if modalities else None,
        "modalities": modalities,
        "description": prior.description,
        "study_date": iso,
        "requested_at": iso,
        "position": prior.position,
        "total": prior.total,
        "retrieval": prior.status,
        "instances": prior.instances,
        "reason": prior.reason,
        "message": prior.message,
    }


async def follow_identity(
    db: AsyncSession,
    establishment_id: int,
    exam_ids: list[str],
    identity: PatientIdentity,
    now: datetime,
) -> None:
    """The studies fetched from the hospital's PACS as priors of these exams show the
    identity the exams now have (a merge, a new identifier, an update: the hospital's
    own systems made the change), like the exams' own studies
    (docs/dicomweb.md "Identity on the way out")."""
    if not exam_ids:
        return
    fetched = select(HospitalPrior.study_instance_uid).where(HospitalPrior.exam_id.in_(exam_ids))
    await db.execute(
        update(studies)
        .where(
            studies.c.exam_id.is_(None),
            studies.c.establishment_id == establishment_id,
            studies.c.study_uid.in_(fetched),
        )
        .values(study_identity(identity, now))
    )
