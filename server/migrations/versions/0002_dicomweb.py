"""DICOMweb archive index: studies, series, instances.

Revision ID: 0002_dicomweb
Revises: 0001_foundation
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_dicomweb"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dicomweb_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=320), nullable=False),
        sa.Column("patient_name_key", sa.String(length=320), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("patient_birth_date", sa.String(length=8), nullable=False),
        sa.Column("patient_sex", sa.String(length=16), nullable=False),
        sa.Column("study_date", sa.String(length=8), nullable=False),
        sa.Column("study_time", sa.String(length=16), nullable=False),
        sa.Column("accession_number", sa.String(length=64), nullable=False),
        sa.Column("study_description", sa.String(length=320), nullable=False),
        sa.Column("modalities", sa.String(length=160), nullable=False),
        sa.Column("referring_physician_name", sa.String(length=320), nullable=False),
        sa.Column("referring_physician_key", sa.String(length=320), nullable=False),
        sa.Column("study_id", sa.String(length=64), nullable=False),
        sa.Column("num_series", sa.Integer(), nullable=False),
        sa.Column("num_instances", sa.Integer(), nullable=False),
        sa.Column("exam_id", sa.String(length=36), nullable=True),
        sa.Column("establishment_id", sa.Integer(), nullable=True),
        sa.Column("attrs", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicomweb_studies")),
        sa.UniqueConstraint("study_uid", name=op.f("uq_dicomweb_studies_study_uid")),
    )
    for col in (
        "patient_id",
        "patient_name_key",
        "study_date",
        "accession_number",
        "exam_id",
        "establishment_id",
    ):
        op.create_index(f"ix_dicomweb_studies_{col}", "dicomweb_studies", [col])
    op.create_table(
        "dicomweb_series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_pk", sa.Integer(), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("series_description", sa.String(length=320), nullable=False),
        sa.Column("body_part_examined", sa.String(length=64), nullable=False),
        sa.Column("series_date", sa.String(length=8), nullable=False),
        sa.Column("series_time", sa.String(length=16), nullable=False),
        sa.Column("num_instances", sa.Integer(), nullable=False),
        sa.Column("attrs", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_pk"],
            ["dicomweb_studies.id"],
            name=op.f("fk_dicomweb_series_study_pk_dicomweb_studies"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicomweb_series")),
        sa.UniqueConstraint("series_uid", name=op.f("uq_dicomweb_series_series_uid")),
    )
    op.create_index("ix_dicomweb_series_study_pk", "dicomweb_series", ["study_pk"])
    op.create_index("ix_dicomweb_series_modality", "dicomweb_series", ["modality"])
    op.create_table(
        "dicomweb_instances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_pk", sa.Integer(), nullable=False),
        sa.Column("series_pk", sa.Integer(), nullable=False),
        sa.Column("sop_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("columns", sa.Integer(), nullable=True),
        sa.Column("number_of_frames", sa.Integer(), nullable=True),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frames", sa.Text(), nullable=True),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_pk"],
            ["dicomweb_studies.id"],
            name=op.f("fk_dicomweb_instances_study_pk_dicomweb_studies"),
        ),
        sa.ForeignKeyConstraint(
            ["series_pk"],
            ["dicomweb_series.id"],
            name=op.f("fk_dicomweb_instances_series_pk_dicomweb_series"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicomweb_instances")),
        sa.UniqueConstraint("sop_uid", name=op.f("uq_dicomweb_instances_sop_uid")),
    )
    for col in ("series_pk", "study_pk", "sop_class_uid"):
        op.create_index(f"ix_dicomweb_instances_{col}", "dicomweb_instances", [col])


def downgrade() -> None:
    op.drop_table("dicomweb_instances")
    op.drop_table("dicomweb_series")
    op.drop_table("dicomweb_studies")
