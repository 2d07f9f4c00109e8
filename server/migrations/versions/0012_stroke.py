"""Exams gain the stroke alert: the time of onset (or last seen well) and its kind;
reports gain the structured stroke report (docs/stroke.md).

Revision ID: 0012_stroke
Revises: 0011_outbox
Create Date: 2026-12-06 10:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_stroke"
down_revision: str | Sequence[str] | None = "0011_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("exams", sa.Column("stroke_onset_at", TS, nullable=True))
    op.add_column("exams", sa.Column("stroke_onset_kind", sa.String(length=16), nullable=True))
    op.add_column("reports", sa.Column("stroke", sa.JSON(), nullable=True))
    op.create_table(
        "critical_results",
        sa.Column("exam_id", sa.String(length=36), nullable=False),
        sa.Column("finding", sa.Text(), nullable=False),
        sa.Column("identified_at", TS, nullable=False),
        sa.Column("communicated_by_id", sa.Integer(), nullable=False),
        sa.Column("recipient_name", sa.String(length=200), nullable=True),
        sa.Column("recipient_role", sa.String(length=200), nullable=True),
        sa.Column("recipient_user_id", sa.Integer(), nullable=True),
        sa.Column("received_at", TS, nullable=True),
        sa.Column("method", sa.String(length=8), nullable=True),
        sa.Column("read_back", sa.Boolean(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["exam_id"],
            ["exams.id"],
            name=op.f("fk_critical_results_exam_id_exams"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["communicated_by_id"],
            ["users.id"],
            name=op.f("fk_critical_results_communicated_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["recipient_user_id"],
            ["users.id"],
            name=op.f("fk_critical_results_recipient_user_id_users"),
        ),
        sa.PrimaryKeyConstraint("exam_id", name=op.f("pk_critical_results")),
    )


def downgrade() -> None:
    # A batch copy is avoided on SQLite (see 0010): its DROP COLUMN works in place.
    op.drop_table("critical_results")
    op.drop_column("reports", "stroke")
    op.drop_column("exams", "stroke_onset_kind")
    op.drop_column("exams", "stroke_onset_at")
