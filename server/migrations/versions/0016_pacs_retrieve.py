"""The hospitals' PACS retrieved by C-MOVE or queried over DICOMweb (docs/priors.md):
how a DIMSE PACS's studies are retrieved (``retrieve``: get or move), and a DICOMweb
PACS's root, authentication and CA instead of an AE title, host and port.

Revision ID: 0016_pacs_retrieve
Revises: 0015_peer_review
Create Date: 2026-12-06 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_pacs_retrieve"
down_revision: str | Sequence[str] | None = "0015_peer_review"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pacs_sources", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("retrieve", sa.String(length=8), nullable=False, server_default="get")
        )
        batch_op.add_column(sa.Column("dicomweb_url", sa.String(length=500), nullable=True))
        batch_op.add_column(
            sa.Column("dicomweb_auth", sa.String(length=8), nullable=False, server_default="none")
        )
        batch_op.add_column(sa.Column("dicomweb_user", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("dicomweb_secret", sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column("dicomweb_ca", sa.String(length=500), nullable=True))
        for name, kind in (
            ("ae_title", sa.String(length=16)),
            ("host", sa.String(length=255)),
            ("port", sa.Integer()),
            ("calling_ae_title", sa.String(length=16)),
        ):
            batch_op.alter_column(name, existing_type=kind, nullable=True)


def downgrade() -> None:
    # A DICOMweb PACS has no AE title, host nor port: it cannot be kept.
    op.execute("DELETE FROM pacs_sources WHERE dicomweb_url IS NOT NULL")
    with op.batch_alter_table("pacs_sources", schema=None) as batch_op:
        for name, kind in (
            ("ae_title", sa.String(length=16)),
            ("host", sa.String(length=255)),
            ("port", sa.Integer()),
            ("calling_ae_title", sa.String(length=16)),
        ):
            batch_op.alter_column(name, existing_type=kind, nullable=False)
        for name in (
            "dicomweb_ca",
            "dicomweb_secret",
            "dicomweb_user",
            "dicomweb_auth",
            "dicomweb_url",
            "retrieve",
        ):
            batch_op.drop_column(name)
