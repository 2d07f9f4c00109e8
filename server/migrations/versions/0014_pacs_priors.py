"""Priors from the hospitals' PACS: each establishment's PACS, the job of each accepted
exam, the studies found and retrieved (docs/priors.md).

Revision ID: 0014_pacs_priors
Revises: 0013_radiation_dose
Create Date: 2026-12-06 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_pacs_priors"
down_revision: str | Sequence[str] | None = "0013_radiation_dose"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pacs_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("establishment_id", sa.Integer(), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("calling_ae_title", sa.String(length=16), nullable=False),
        sa.Column("years", sa.Integer(), nullable=False),
        sa.Column("max_studies", sa.Integer(), nullable=False),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["establishment_id"],
            ["establishments.id"],
            name=op.f("fk_pacs_sources_establishment_id_establishments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_sources")),
        sa.UniqueConstraint("establishment_id", name=op.f("uq_pacs_sources_establishment_id")),
    )
    op.create_table(
        "prior_fetches",
        sa.Column("exam_id", sa.String(length=36), nullable=False),
        sa.Column("establishment_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("message", sa.String(length=300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["establishment_id"],
            ["establishments.id"],
            name=op.f("fk_prior_fetches_establishment_id_establishments"),
        ),
        sa.ForeignKeyConstraint(
            ["exam_id"],
            ["exams.id"],
            name=op.f("fk_prior_fetches_exam_id_exams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("exam_id", name=op.f("pk_prior_fetches")),
    )
    op.create_table(
        "hospital_priors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exam_id", sa.String(length=36), nullable=False),
        sa.Column("establishment_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_date", sa.String(length=8), nullable=False),
        sa.Column("accession_number", sa.String(length=64), nullable=False),
        sa.Column("modalities", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("message", sa.String(length=300), nullable=True),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["establishment_id"],
            ["establishments.id"],
            name=op.f("fk_hospital_priors_establishment_id_establishments"),
        ),
        sa.ForeignKeyConstraint(
            ["exam_id"],
            ["exams.id"],
            name=op.f("fk_hospital_priors_exam_id_exams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hospital_priors")),
        sa.UniqueConstraint(
            "exam_id",
            "study_instance_uid",
            name=op.f("uq_hospital_priors_exam_id_study_instance_uid"),
        ),
    )
    op.create_index(
        "ix_hospital_priors_establishment_patient",
        "hospital_priors",
        ["establishment_id", "patient_id"],
    )
    op.create_index(
        "ix_hospital_priors_study_instance_uid", "hospital_priors", ["study_instance_uid"]
    )


def downgrade() -> None:
    op.drop_index("ix_hospital_priors_study_instance_uid", table_name="hospital_priors")
    op.drop_index("ix_hospital_priors_establishment_patient", table_name="hospital_priors")
    op.drop_table("hospital_priors")
    op.drop_table("prior_fetches")
    op.drop_table("pacs_sources")
