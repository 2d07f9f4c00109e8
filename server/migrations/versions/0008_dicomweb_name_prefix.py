"""DICOMweb: an index for person-name prefix searches on PostgreSQL.

QIDO matches PatientName with ``LIKE 'PREFIX%'`` on the upper-cased key column.
Under a non-C collation PostgreSQL cannot use the plain btree index for it (a
sequential scan: 1.2 ms at 10,000 studies, growing with the archive); a
``text_pattern_ops`` index can (0.13 ms). SQLite has no such index (its LIKE is
case-insensitive and used with ESCAPE): nothing to do there.

Revision ID: 0008_dicomweb_name_prefix
Revises: 0007_gateway
Create Date: 2026-11-29 22:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_dicomweb_name_prefix"
down_revision: str | Sequence[str] | None = "0007_gateway"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_dicomweb_studies_patient_name_key_prefix"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            NAME,
            "dicomweb_studies",
            ["patient_name_key"],
            postgresql_ops={"patient_name_key": "text_pattern_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(NAME, table_name="dicomweb_studies")
