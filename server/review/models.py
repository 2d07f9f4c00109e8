"""The peer reviews' table (docs/review.md)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.core.models import Base


class PeerReview(Base):
    """One second reading of a signed report: drawn or asked for by its author,
    assigned to another radiologist (or none yet), scored once."""

    __tablename__ = "peer_reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exam_id: Mapped[str] = mapped_column(
        ForeignKey("exams.id", ondelete="CASCADE"), unique=True, index=True
    )
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    reason: Mapped[str] = mapped_column(String(16))  # "drawn" or "requested"
    score: Mapped[str | None] = mapped_column(String(2))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    scored_at: Mapped[datetime | None]
