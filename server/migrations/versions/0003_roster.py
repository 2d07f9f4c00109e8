"""Roster: concrete shifts and recurring shift templates (server/roster/service.py).

Revision ID: 0003_roster
Revises: 0001_foundation
Create Date: 2026-11-29 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_roster"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shifts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("radiologist_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("establishment_ids", sa.JSON(), nullable=False),
        sa.Column("max_in_progress", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["radiologist_id"], ["users.id"], name=op.f("fk_shifts_radiologist_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_shifts_created_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shifts")),
    )
    with op.batch_alter_table("shifts", schema=None) as batch_op:
        batch_op.create_index("ix_shifts_window", ["starts_at", "ends_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_shifts_radiologist_id"), ["radiologist_id"], unique=False
        )

    op.create_table(
        "shift_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("radiologist_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("pattern", sa.String(length=16), nullable=False),
        sa.Column("start_time", sa.String(length=5), nullable=True),
        sa.Column("end_time", sa.String(length=5), nullable=True),
        sa.Column("establishment_ids", sa.JSON(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("max_in_progress", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["radiologist_id"], ["users.id"], name=op.f("fk_shift_templates_radiologist_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_shift_templates_created_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shift_templates")),
    )
    with op.batch_alter_table("shift_templates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_shift_templates_radiologist_id"), ["radiologist_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("shift_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shift_templates_radiologist_id"))
    op.drop_table("shift_templates")
    with op.batch_alter_table("shifts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shifts_radiologist_id"))
        batch_op.drop_index("ix_shifts_window")
    op.drop_table("shifts")
