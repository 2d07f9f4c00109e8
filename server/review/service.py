"""Peer review in the database (docs/review.md): a review opened at the signature,
scored by its reviewer, counted per month."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from rooms.types import Role
from server.core.config import Settings
from server.core.identity import Principal
from server.core.models import User
from server.review.models import PeerReview
from server.review.policy import drawn, reviewer_for


async def open_review(
    db: AsyncSession,
    settings: Settings,
    exam_id: str,
    author_id: int,
    requested: bool,
    now: datetime,
) -> PeerReview | None:
    """At a signature: a review when the report is drawn or its author asked for one,
    assigned to another active radiologist of the network (None when there is none:
    it waits for the coordinators). No review otherwise."""
    reason = "requested" if requested else None
    if reason is None and drawn(exam_id, settings.peer_review_share, settings.peer_review_seed):
        reason = "drawn"
    if reason is None:
        return None
    candidates = await db.scalars(
        select(User.id).where(User.role == Role.RADIOLOGIST, User.active.is_(True))
    )
    review = PeerReview(
        exam_id=exam_id,
        author_id=author_id,
        reviewer_id=reviewer_for(exam_id, author_id, list(candidates), settings.peer_review_seed),
        reason=reason,
        created_at=now,
    )
    db.add(review)
    await db.flush()
    return review


def review_json(review: PeerReview) -> dict[str, object]:
    def ts(value: datetime | None) -> str | None:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None

    return {
        "id": review.id,
        "exam_id": review.exam_id,
        "author_id": review.author_id,
        "reviewer_id": review.reviewer_id,
        "reason": review.reason,
        "score": review.score,
        "comment": review.comment,
        "created_at": ts(review.created_at),
        "scored_at": ts(review.scored_at),
    }


def reviewed_exam_ids(principal: Principal) -> Select[Any] | None:
    """The exams whose images a radiologist reads as their peer reviewer (the archive
    lets them read those studies, ``server.archive.service.ExamReaders``); None for
    the other roles."""
    if principal.role != Role.RADIOLOGIST:
        return None
    return select(PeerReview.exam_id).where(PeerReview.reviewer_id == principal.user.id)
