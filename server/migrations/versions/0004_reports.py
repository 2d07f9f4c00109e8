"""Reports, addenda, billing acts and the audit trail.

The audit table refuses UPDATE and DELETE with a trigger on both backends:
the hash chain detects tampering, the trigger stops the application (or a
careless operator) from doing it by mistake.

Revision ID: 0004_reports
Revises: 0001_foundation
Create Date: 2026-11-29 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_reports"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("exam_id", sa.String(length=36), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("indication", sa.Text(), nullable=False),
        sa.Column("technique", sa.Text(), nullable=False),
        sa.Column("findings", sa.Text(), nullable=False),
        sa.Column("conclusion", sa.Text(), nullable=False),
        sa.Column("dose", sa.Text(), nullable=True),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("template_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("signed_at", TS, nullable=True),
        sa.Column("signer_id", sa.Integer(), nullable=True),
        sa.Column("canonical", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("acknowledged_by_id", sa.Integer(), nullable=True),
        sa.Column("critical_acknowledged", sa.Boolean(), nullable=False),
        sa.Column("archived_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["exam_id"], ["exams.id"], name=op.f("fk_reports_exam_id_exams"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_reports_author_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["signer_id"], ["users.id"], name=op.f("fk_reports_signer_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["acknowledged_by_id"], ["users.id"], name=op.f("fk_reports_acknowledged_by_id_users")
        ),
        sa.PrimaryKeyConstraint("exam_id", name=op.f("pk_reports")),
    )
    op.create_table(
        "report_addenda",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exam_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("signer_id", sa.Integer(), nullable=False),
        sa.Column("signed_at", TS, nullable=False),
        sa.Column("canonical", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["exam_id"],
            ["reports.exam_id"],
            name=op.f("fk_report_addenda_exam_id_reports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["signer_id"], ["users.id"], name=op.f("fk_report_addenda_signer_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_addenda")),
        sa.UniqueConstraint("exam_id", "number", name=op.f("uq_report_addenda_exam_id_number")),
    )
    op.create_table(
        "billing_acts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exam_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("establishment_id", sa.Integer(), nullable=False),
        sa.Column("radiologist_id", sa.Integer(), nullable=False),
        sa.Column("ccam", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("base_cents", sa.Integer(), nullable=False),
        sa.Column("supplements", sa.JSON(), nullable=False),
        sa.Column("supplements_cents", sa.Integer(), nullable=False),
        sa.Column("total_cents", sa.Integer(), nullable=False),
        sa.Column("performed_at", TS, nullable=False),
        sa.Column("tariff_version", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["exam_id"],
            ["exams.id"],
            name=op.f("fk_billing_acts_exam_id_exams"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["establishment_id"],
            ["establishments.id"],
            name=op.f("fk_billing_acts_establishment_id_establishments"),
        ),
        sa.ForeignKeyConstraint(
            ["radiologist_id"], ["users.id"], name=op.f("fk_billing_acts_radiologist_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_acts")),
        sa.UniqueConstraint("exam_id", "kind", name=op.f("uq_billing_acts_exam_id_kind")),
    )
    with op.batch_alter_table("billing_acts") as batch_op:
        batch_op.create_index("ix_billing_acts_performed_at", ["performed_at"])
        batch_op.create_index("ix_billing_acts_establishment_id", ["establishment_id"])
        batch_op.create_index("ix_billing_acts_radiologist_id", ["radiologist_id"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("exam_id", sa.String(length=36), nullable=True),
        sa.Column("study_uid", sa.String(length=64), nullable=True),
        sa.Column("addr", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.create_index("ix_audit_log_exam_id", ["exam_id"])
        batch_op.create_index("ix_audit_log_user_id", ["user_id"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log"
            " FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log"
                " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_table("audit_log")
    op.drop_table("billing_acts")
    op.drop_table("report_addenda")
    op.drop_table("reports")
