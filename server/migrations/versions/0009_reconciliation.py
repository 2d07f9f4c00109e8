"""Reconciliation queue: instances kept aside instead of filed into an exam
(docs/dicomweb.md "Filing and reconciliation").

Revision ID: 0009_reconciliation
Revises: 0008_dicomweb_name_prefix
Create Date: 2026-12-06 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_reconciliation"
down_revision: str | Sequence[str] | None = "0008_dicomweb_name_prefix"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "reconciliation_items"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("establishment_id", sa.Integer(), nullable=True),
        sa.Column("uploader_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("accession_number", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=False),
        sa.Column("patient_birth_date", sa.String(length=16), nullable=False),
        sa.Column("patient_sex", sa.String(length=16), nullable=False),
        sa.Column("candidate_exam_id", sa.String(length=36), nullable=True),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("resolved_by", sa.Integer(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("filed_exam_id", sa.String(length=36), nullable=True),
        sa.Column("discard_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["establishment_id"],
            ["establishments.id"],
            name=op.f("fk_reconciliation_items_establishment_id_establishments"),
        ),
        sa.ForeignKeyConstraint(
            ["uploader_id"], ["users.id"], name=op.f("fk_reconciliation_items_uploader_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["candidate_exam_id"],
            ["exams.id"],
            name=op.f("fk_reconciliation_items_candidate_exam_id_exams"),
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by"], ["users.id"], name=op.f("fk_reconciliation_items_resolved_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["filed_exam_id"],
            ["exams.id"],
            name=op.f("fk_reconciliation_items_filed_exam_id_exams"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_items")),
    )
    op.create_index(
        "ix_reconciliation_items_status_establishment", TABLE, ["status", "establishment_id"]
    )
    op.create_index("ix_reconciliation_items_series_uid", TABLE, ["series_uid"])


def downgrade() -> None:
    op.drop_index("ix_reconciliation_items_series_uid", table_name=TABLE)
    op.drop_index("ix_reconciliation_items_status_establishment", table_name=TABLE)
    op.drop_table(TABLE)
