"""Authorisation in one place: role and establishment scoping for every route.

Site staff (urgentists, manipulators) see their establishment's exams.
Radiologists see the exams assigned to them and the requests nobody has
accepted yet at establishments under contract. Coordinators see every exam.
Admins manage establishments and users and see no patient data. An exam
outside the caller's scope answers 404, so that its existence is not revealed.

`scope_of` is the one statement of that rule: the exam routes filter the exams with
it, the DICOMweb archive its studies (docs/dicomweb.md, "`Access` (the server implements it)").
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.types import ExamStatus, Role
from server.core.errors import ApiError, not_found
from server.core.identity import Principal
from server.core.models import Establishment, Exam

SITE_ROLES = frozenset({Role.URGENTIST, Role.MANIPULATOR})
CENTRE_ROLES = frozenset({Role.RADIOLOGIST, Role.COORDINATOR})


def scope_of(
    principal: Principal,
    *,
    establishment_id: ColumnElement[Any] | None = None,
    exam_id: ColumnElement[Any] | None = None,
) -> ColumnElement[bool] | None:
    """A SQL condition true for exactly the rows the caller may see; None: every row.

    Without columns the rows are the exams themselves. For the rows of another table
    (the archive's studies), `establishment_id` and `exam_id` are its columns naming
    the establishment a row belongs to and the exam it is filed under: site staff see
    their establishment's rows, radiologists those filed under an exam they may see,
    coordinators every row, anyone else none.
    """
    if (establishment_id is None) != (exam_id is None):
        raise ValueError("give both columns (another table's rows) or neither (the exams)")
    role = principal.role
    if role in SITE_ROLES:
        if principal.establishment_id is None:
            return false()
        site = Exam.establishment_id if establishment_id is None else establishment_id
        return site == principal.establishment_id
    if role == Role.RADIOLOGIST:
        under_contract = select(Establishment.id).where(Establishment.contract_active.is_(True))
        theirs = or_(
            Exam.assigned_radiologist_id == principal.user.id,
            and_(
                Exam.status == ExamStatus.REQUESTED,
                Exam.establishment_id.in_(under_contract),
            ),
        )
        return theirs if exam_id is None else exam_id.in_(select(Exam.id).where(theirs))
    if role == Role.COORDINATOR:
        return None
    return false()


def scope_key(principal: Principal) -> Hashable:
    """Equal for two callers exactly when :func:`scope_of` gives them the same
    condition (the same rows): site staff of one establishment, one radiologist,
    every coordinator, everyone who sees nothing. Keep the two side by side."""
    role = principal.role
    if role in SITE_ROLES:
        return ("site", principal.establishment_id)
    if role == Role.RADIOLOGIST:
        return ("radiologist", principal.user.id)
    if role == Role.COORDINATOR:
        return ("all",)
    return ("none",)


def exam_scope(principal: Principal) -> ColumnElement[bool]:
    """A SQL condition true for exactly the exams the caller may see."""
    condition = scope_of(principal)
    return true() if condition is None else condition


async def load_exam(db: AsyncSession, principal: Principal, exam_id: str) -> Exam:
    """The exam if the caller may see it; 404 otherwise (never 403)."""
    exam = await db.scalar(select(Exam).where(Exam.id == exam_id, exam_scope(principal)))
    if exam is None:
        raise not_found()
    return exam


async def load_exams(
    db: AsyncSession, wanted: Sequence[tuple[Principal, str]]
) -> list[Exam | None]:
    """:func:`load_exam` for many callers at once (the joins of a burst): for each
    (caller, exam id), the exam if that caller may see it, else None. One query per
    distinct scope (:func:`scope_key`), whatever the number of callers."""
    groups: dict[Hashable, tuple[Principal, set[str]]] = {}
    for principal, exam_id in wanted:
        groups.setdefault(scope_key(principal), (principal, set()))[1].add(exam_id)
    seen: dict[Hashable, dict[str, Exam]] = {}
    for key, (principal, ids) in groups.items():
        rows = await db.scalars(select(Exam).where(Exam.id.in_(ids), exam_scope(principal)))
        seen[key] = {exam.id: exam for exam in rows}
    return [seen[scope_key(principal)].get(exam_id) for principal, exam_id in wanted]


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        allowed = ", ".join(sorted(r.value for r in roles))
        raise ApiError(403, "forbidden", f"only {allowed} may do this")
