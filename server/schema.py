"""Every table the product has, for Alembic: the server's and the archive's.

Alembic's autogenerate compares the database with ``target_metadata`` only, so a
model whose module is not imported here looks like a table to drop. Every module
that maps a table is imported below; ``tests/core/test_migrations.py`` imports every
module of the project and fails when one is missing (see docs/deployment.md,
"Schema migrations").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import server.roster.service  # noqa: F401  (registers the roster tables on Base.metadata)
from dicomweb.tables import metadata as dicomweb_metadata
from server.calls import recording  # noqa: F401  (call_recordings)
from server.core import audit  # noqa: F401
from server.core.models import Base
from server.gateway import aes  # noqa: F401  (modality_aes)
from server.interfaces import drafts, senders  # noqa: F401  (hl7_senders, hl7_messages, order_drafts)
from server.priors import models as priors  # noqa: F401  (pacs_sources, prior_fetches, hospital_priors)
from server.reports import (
    billing,  # noqa: F401
    critical,  # noqa: F401  (the critical-result record)
)
from server.reports import service as reports  # noqa: F401  (their tables)
from server.review import models as review  # noqa: F401  (peer_reviews)

target_metadata = [Base.metadata, dicomweb_metadata]

IncludeObject = Callable[[Any, str | None, str, bool, Any], bool]


def include_object_for(dialect: str) -> IncludeObject:
    """Alembic's ``include_object`` hook for one database dialect.

    An object declared with ``ddl_if(dialect=...)`` for another dialect is never
    created there (the PostgreSQL-only ``text_pattern_ops`` index of
    docs/dicomweb.md), so autogenerate must not offer to add it.
    """

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        condition = getattr(obj, "_ddl_if", None)
        if condition is None or condition.dialect is None:
            return True
        if isinstance(condition.dialect, str):
            return bool(condition.dialect == dialect)
        return dialect in condition.dialect

    return include
