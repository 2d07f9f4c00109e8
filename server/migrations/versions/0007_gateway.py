"""Modality gateway: the calling AE titles registered per establishment (server/gateway).

Revision ID: 0007_gateway
Revises: 0006_merge
Create Date: 2026-11-29 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_gateway"
down_revision: str | Sequence[str] | None = "0006_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "modality_aes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("establishment_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["establishment_id"],
            ["establishments.id"],
            name=op.f("fk_modality_aes_establishment_id_establishments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_modality_aes")),
        sa.UniqueConstraint("ae_title", name=op.f("uq_modality_aes_ae_title")),
    )


def downgrade() -> None:
    op.drop_table("modality_aes")
