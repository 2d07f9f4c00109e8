"""The core services every process holds, built once by server/composition.py.

The web process, the worker, the modality gateway and each CLI command build
an :class:`AppContext`; the processes that run more hold a subclass that adds
what they run (the archive in server/archive/context.py, the rooms and calls
in server/live/context.py), so that no field is ever missing or ``None``
(docs/architecture.md "Composition").
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from rooms.engine.base import Engine
from server.core.access import SessionWatch
from server.core.audit import AuditWriter
from server.core.config import Settings
from server.core.passwords import Passwords


@dataclass
class AppContext:
    settings: Settings
    sql: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    # Sessions that only read. On SQLite they do not take the write lock, so
    # reads never queue behind writers; on PostgreSQL it is the same pool as `db`.
    read: async_sessionmaker[AsyncSession]
    passwords: Passwords
    bus: Engine
    # Standalone audit rows, written in groups (server/core/batching.py).
    audit: AuditWriter
    # The open sockets' sessions: closed when they end (server/core/access.py).
    access: SessionWatch

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)


def core_fields(core: AppContext) -> dict[str, Any]:
    """The core services of ``core``, to build a larger context around them."""
    return {f.name: getattr(core, f.name) for f in fields(AppContext)}
