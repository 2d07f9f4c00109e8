"""Authorisation in one place: role and establishment scoping for every route.

Site staff (urgentists, manipulators) see their establishment's exams.
Radiologists see the exams assigned to them and the requests nobody has
accepted yet at establishments under contract. Coordinators see every exam.
Admins manage establishments and users and see no patient data. An exam
outside the caller's scope answers 404, so that its existence is not revealed.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.types import ExamStatus, Role
from server.core.errors import ApiError, not_found
from server.core.identity import Principal
from server.core.models import Establishment, Exam

SITE_ROLES = frozenset({Role.URGENTIST, Role.MANIPULATOR})
CENTRE_ROLES = frozenset({Role.RADIOLOGIST, Role.COORDINATOR})


def exam_scope(principal: Principal) -> ColumnElement[bool]:
    """A SQL condition true for exactly the exams the caller may see."""
    role = principal.role
    if role in SITE_ROLES:
        if principal.establishment_id is None:
            return false()
        return Exam.establishment_id == principal.establishment_id
    if role == Role.RADIOLOGIST:
        under_contract = select(Establishment.id).where(Establishment.contract_active.is_(True))
        return or_(
            Exam.assigned_radiologist_id == principal.user.id,
            and_(
                Exam.status == ExamStatus.REQUESTED,
                Exam.establishment_id.in_(under_contract),
            ),
        )
    if role == Role.COORDINATOR:
        return true()
    return false()


async def load_exam(db: AsyncSession, principal: Principal, exam_id: str) -> Exam:
    """The exam if the caller may see it; 404 otherwise (never 403)."""
    exam = await db.scalar(select(Exam).where(Exam.id == exam_id, exam_scope(principal)))
    if exam is None:
        raise not_found()
    return exam


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        allowed = ", ".join(sorted(r.value for r in roles))
        raise ApiError(403, "forbidden", f"only {allowed} may do this")
