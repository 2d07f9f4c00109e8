"""Patient identities per establishment, the HL7 senders, the messages received
with their acknowledgements, the order drafts; exams gain their identity and the
placer order number (docs/hl7.md "Inbound", docs/patients.md).

Revision ID: 0010_patients_hl7
Revises: 0009_reconciliation
Create Date: 2026-12-06 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_patients_hl7"
down_revision: str | Sequence[str] | None = "0009_reconciliation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
EXAM_FK = "fk_exams_patient_identity_id_patient_identities"


def upgrade() -> None:
    op.create_table(
        "patient_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("establishment_id", sa.Integer(), nullable=False),
        sa.Column("ipp", sa.String(length=64), nullable=False),
        sa.Column("ins", sa.String(length=15), nullable=True),
        sa.Column("ins_oid", sa.String(length=64), nullable=True),
        sa.Column("identity_status", sa.String(length=16), nullable=False),
        sa.Column("birth_name", sa.String(length=100), nullable=False),
        sa.Column("first_names", sa.String(length=200), nullable=False),
        sa.Column("used_name", sa.String(length=100), nullable=True),
        sa.Column("used_first_name", sa.String(length=100), nullable=True),
        sa.Column("sex", sa.String(length=1), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("birthplace_code", sa.String(length=5), nullable=True),
        sa.Column("merged_into_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["establishment_id"],
            ["establishments.id"],
            name=op.f("fk_patient_identities_establishment_id_establishments"),
        ),
        sa.ForeignKeyConstraint(
            ["merged_into_id"],
            ["patient_identities.id"],
            name=op.f("fk_patient_identities_merged_into_id_patient_identities"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_identities")),
        sa.UniqueConstraint(
            "establishment_id", "ipp", name=op.f("uq_patient_identities_establishment_id_ipp")
        ),
    )
    op.create_index(
        "ix_patient_identities_establishment_ins", "patient_identities", ["establishment_id", "ins"]
    )
    op.create_index(
        "ix_patient_identities_establishment_birth_name",
        "patient_identities",
        ["establishment_id", "birth_name"],
    )

    op.create_table(
        "hl7_senders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application", sa.String(length=180), nullable=False),
        sa.Column("facility", sa.String(length=180), nullable=False),
        sa.Column("establishment_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("cert_subject", sa.String(length=200), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["establishment_id"],
            ["establishments.id"],
            name=op.f("fk_hl7_senders_establishment_id_establishments"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["users.id"], name=op.f("fk_hl7_senders_account_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_senders")),
        sa.UniqueConstraint(
            "application", "facility", name=op.f("uq_hl7_senders_application_facility")
        ),
    )

    op.create_table(
        "hl7_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.Integer(), nullable=False),
        sa.Column("control_id", sa.String(length=199), nullable=False),
        sa.Column("message_type", sa.String(length=16), nullable=False),
        sa.Column("ack_code", sa.String(length=2), nullable=False),
        sa.Column("ack", sa.Text(), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["sender_id"], ["hl7_senders.id"], name=op.f("fk_hl7_messages_sender_id_hl7_senders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_messages")),
        sa.UniqueConstraint(
            "sender_id", "control_id", name=op.f("uq_hl7_messages_sender_id_control_id")
        ),
    )

    op.create_table(
        "order_drafts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("establishment_id", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.Integer(), nullable=False),
        sa.Column("patient_identity_id", sa.Integer(), nullable=False),
        sa.Column("placer_order_number", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=4), nullable=True),
        sa.Column("body_part", sa.String(length=64), nullable=True),
        sa.Column("clinical_question", sa.Text(), nullable=True),
        sa.Column("urgency", sa.String(length=16), nullable=True),
        sa.Column("consent", sa.Boolean(), nullable=False),
        sa.Column("contraindications", sa.Text(), nullable=True),
        sa.Column("missing", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("exam_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["establishment_id"],
            ["establishments.id"],
            name=op.f("fk_order_drafts_establishment_id_establishments"),
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"], ["hl7_senders.id"], name=op.f("fk_order_drafts_sender_id_hl7_senders")
        ),
        sa.ForeignKeyConstraint(
            ["patient_identity_id"],
            ["patient_identities.id"],
            name=op.f("fk_order_drafts_patient_identity_id_patient_identities"),
        ),
        sa.ForeignKeyConstraint(
            ["exam_id"], ["exams.id"], name=op.f("fk_order_drafts_exam_id_exams")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_drafts")),
    )
    op.create_index(
        "ix_order_drafts_establishment_status", "order_drafts", ["establishment_id", "status"]
    )
    op.create_index(
        "ix_order_drafts_establishment_placer",
        "order_drafts",
        ["establishment_id", "placer_order_number"],
    )

    # New nullable columns of exams. SQLite adds a column with its REFERENCES clause
    # in place; a batch copy of the table is avoided, as dropping the old copy with
    # foreign keys on would cascade to the exams' events.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE exams ADD COLUMN patient_identity_id INTEGER "
            f"CONSTRAINT {EXAM_FK} REFERENCES patient_identities (id)"
        )
    else:
        op.add_column("exams", sa.Column("patient_identity_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            EXAM_FK, "exams", "patient_identities", ["patient_identity_id"], ["id"]
        )
    op.add_column("exams", sa.Column("placer_order_number", sa.String(length=64), nullable=True))
    op.create_index("ix_exams_patient_identity_id", "exams", ["patient_identity_id"])
    op.create_index(
        "ix_exams_establishment_placer", "exams", ["establishment_id", "placer_order_number"]
    )


def downgrade() -> None:
    op.drop_index("ix_exams_establishment_placer", table_name="exams")
    op.drop_index("ix_exams_patient_identity_id", table_name="exams")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE exams DROP COLUMN placer_order_number")
        op.execute("ALTER TABLE exams DROP COLUMN patient_identity_id")
    else:
        op.drop_constraint(EXAM_FK, "exams", type_="foreignkey")
        op.drop_column("exams", "placer_order_number")
        op.drop_column("exams", "patient_identity_id")
    op.drop_index("ix_order_drafts_establishment_placer", table_name="order_drafts")
    op.drop_index("ix_order_drafts_establishment_status", table_name="order_drafts")
    op.drop_table("order_drafts")
    op.drop_table("hl7_messages")
    op.drop_table("hl7_senders")
    op.drop_index("ix_patient_identities_establishment_birth_name", table_name="patient_identities")
    op.drop_index("ix_patient_identities_establishment_ins", table_name="patient_identities")
    op.drop_table("patient_identities")
