"""Every table the product has, for Alembic: the server's and the archive's."""

from __future__ import annotations

import server.roster.service  # noqa: F401  (registers the roster tables on Base.metadata)
from dicomweb.tables import metadata as dicomweb_metadata
from server.core import audit  # noqa: F401
from server.core.models import Base
from server.reports import billing  # noqa: F401
from server.reports import service as reports  # noqa: F401  (their tables)

target_metadata = [Base.metadata, dicomweb_metadata]
