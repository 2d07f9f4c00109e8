"""Outbound interfaces: the hospitals' HL7 destinations and the outbox of messages
owed to them (docs/hl7.md "Outbound").

Revision ID: 0011_outbox
Revises: 0009_reconciliation
Create Date: 2026-12-06 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_outbox"
down_revision: str | Sequence[str] | None = "0010_patients_hl7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hl7_destinations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("establishment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("kinds", sa.String(length=32), nullable=False),
        sa.Column("receiving_application", sa.String(length=64), nullable=False),
        sa.Column("receiving_facility", sa.String(length=64), nullable=False),
        sa.Column("tls", sa.Boolean(), nullable=False),
        sa.Column("tls_ca_file", sa.String(length=255), nullable=True),
        sa.Column("tls_cert_file", sa.String(length=255), nullable=True),
        sa.Column("tls_key_file", sa.String(length=255), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["establishment_id"],
            ["establishments.id"],
            name=op.f("fk_hl7_destinations_establishment_id_establishments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_destinations")),
        sa.UniqueConstraint(
            "establishment_id", "name", name=op.f("uq_hl7_destinations_establishment_id_name")
        ),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("control_id", sa.String(length=20), nullable=False),
        sa.Column("destination_id", sa.Integer(), nullable=False),
        sa.Column("establishment_id", sa.Integer(), nullable=False),
        sa.Column("exam_id", sa.String(length=36), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("message_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ack_code", sa.String(length=2), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["destination_id"],
            ["hl7_destinations.id"],
            name=op.f("fk_outbox_destination_id_hl7_destinations"),
        ),
        sa.ForeignKeyConstraint(
            ["establishment_id"],
            ["establishments.id"],
            name=op.f("fk_outbox_establishment_id_establishments"),
        ),
        sa.ForeignKeyConstraint(
            ["exam_id"], ["exams.id"], name=op.f("fk_outbox_exam_id_exams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("control_id", name=op.f("uq_outbox_control_id")),
        sa.UniqueConstraint(
            "destination_id",
            "exam_id",
            "event",
            "version",
            "message_type",
            name=op.f("uq_outbox_destination_id_exam_id_event_version_message_type"),
        ),
    )
    op.create_index("ix_outbox_status_next_attempt_at", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_exam_id", "outbox", ["exam_id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_exam_id", table_name="outbox")
    op.drop_index("ix_outbox_status_next_attempt_at", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("hl7_destinations")
