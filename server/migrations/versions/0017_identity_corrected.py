"""The archive's studies whose patient identity was corrected after their instances
were stored, handed out with it (docs/dicomweb.md "Identity on the way out").

A study whose index row already carries another identity than its files (corrected
before this revision, when only QIDO-RS followed it) is marked too: a row whose
PatientID differs from the one in its first instance's metadata.

Revision ID: 0017_identity_corrected
Revises: 0016_pacs_retrieve
Create Date: 2026-12-06 15:30:00
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0017_identity_corrected"
down_revision: str | Sequence[str] | None = "0016_pacs_retrieve"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _value(meta: dict[str, object], tag: str) -> str:
    element = meta.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    if not isinstance(values, list) or not values:
        return ""
    first = values[0]
    if isinstance(first, dict):
        return str(first.get("Alphabetic", ""))
    return str(first)


def upgrade() -> None:
    with op.batch_alter_table("dicomweb_studies") as batch:
        batch.add_column(sa.Column("identity_corrected_at", sa.String(length=26), nullable=True))
    conn = op.get_bind()
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S.%f%z")
    rows = conn.execute(
        sa.text(
            "SELECT s.id, s.patient_id, s.patient_name, s.patient_birth_date, s.patient_sex,"
            " (SELECT i.metadata FROM dicomweb_instances i WHERE i.study_pk = s.id"
            "  ORDER BY i.id LIMIT 1) AS metadata"
            " FROM dicomweb_studies s WHERE s.exam_id IS NOT NULL"
        )
    )
    changed = []
    for row in rows:
        if row.metadata is None:
            continue
        meta = json.loads(row.metadata)
        stored = (
            _value(meta, "00100020"),
            _value(meta, "00100010"),
            _value(meta, "00100030"),
            _value(meta, "00100040"),
        )
        index = (row.patient_id, row.patient_name, row.patient_birth_date, row.patient_sex)
        if stored != index:
            changed.append(row.id)
    for pk in changed:
        conn.execute(
            sa.text("UPDATE dicomweb_studies SET identity_corrected_at = :at WHERE id = :id"),
            {"at": now, "id": pk},
        )


def downgrade() -> None:
    with op.batch_alter_table("dicomweb_studies") as batch:
        batch.drop_column("identity_corrected_at")
