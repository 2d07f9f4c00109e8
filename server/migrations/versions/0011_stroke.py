"""Exams gain the stroke alert: the time of onset (or last seen well) and its kind;
reports gain the structured stroke report (docs/stroke.md).

Revision ID: 0011_stroke
Revises: 0010_patients_hl7
Create Date: 2026-12-06 10:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_stroke"
down_revision: str | Sequence[str] | None = "0010_patients_hl7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("exams", sa.Column("stroke_onset_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("exams", sa.Column("stroke_onset_kind", sa.String(length=16), nullable=True))
    op.add_column("reports", sa.Column("stroke", sa.JSON(), nullable=True))


def downgrade() -> None:
    # A batch copy is avoided on SQLite (see 0010): its DROP COLUMN works in place.
    op.drop_column("reports", "stroke")
    op.drop_column("exams", "stroke_onset_kind")
    op.drop_column("exams", "stroke_onset_at")
