"""Exams keep the figures of the scanner's Radiation Dose SR (docs/reports.md
"The dose from the scanner").

Revision ID: 0013_radiation_dose
Revises: 0012_stroke
Create Date: 2026-12-06 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_radiation_dose"
down_revision: str | Sequence[str] | None = "0012_stroke"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("exams", sa.Column("radiation_dose", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("exams", "radiation_dose")
