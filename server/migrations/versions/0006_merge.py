"""Join the schema branches written side by side (archive, roster, reports, calls).

Revision ID: 0006_merge
Revises: 0002_dicomweb, 0003_roster, 0004_reports, 0005_calls
"""

from collections.abc import Sequence

revision: str = "0006_merge"
down_revision: str | Sequence[str] | None = (
    "0002_dicomweb",
    "0003_roster",
    "0004_reports",
    "0005_calls",
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
