"""Peer reviews of signed reports (docs/review.md).

Revision ID: 0015_peer_review
Revises: 0014_pacs_priors
Create Date: 2026-12-06 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_peer_review"
down_revision: str | Sequence[str] | None = "0014_pacs_priors"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "peer_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exam_id", sa.String(length=36), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("score", sa.String(length=2), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("scored_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["exam_id"],
            ["exams.id"],
            name=op.f("fk_peer_reviews_exam_id_exams"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_peer_reviews_author_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["users.id"], name=op.f("fk_peer_reviews_reviewer_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_peer_reviews")),
    )
    op.create_index(op.f("ix_peer_reviews_exam_id"), "peer_reviews", ["exam_id"], unique=True)
    op.create_index(op.f("ix_peer_reviews_author_id"), "peer_reviews", ["author_id"])
    op.create_index(op.f("ix_peer_reviews_reviewer_id"), "peer_reviews", ["reviewer_id"])


def downgrade() -> None:
    op.drop_table("peer_reviews")
