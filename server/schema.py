"""Every table the product has, for Alembic: the server's and the archive's."""

from __future__ import annotations

import server.roster  # noqa: F401  (registers the roster tables on Base.metadata)
from dicomweb.tables import metadata as dicomweb_metadata
from server import audit, billing, reports  # noqa: F401  (their tables)
from server.models import Base

target_metadata = [Base.metadata, dicomweb_metadata]
