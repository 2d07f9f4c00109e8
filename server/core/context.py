"""What every request handler needs, built once per process in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from server.core.config import Settings
from server.core.passwords import Passwords

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from dicomweb.ingest import Ingestor
    from rooms.engine.base import Engine
    from server.archive.service import ImageEvents
    from server.calls.manager import CallManager
    from server.core.access import SessionWatch
    from server.core.audit import AuditWriter
    from server.live.chatlog import ChatLog
    from server.live.roomhub import RoomHub


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
    rooms: RoomHub
    calls: CallManager
    # The DICOMweb archive (mounted at /dicomweb), its ingest path, and the hook
    # that announces stored images in exam rooms; set by `server.archive.service.attach`.
    archive: ASGIApp | None = None
    ingestor: Ingestor | None = None
    images: ImageEvents | None = None
    # Chat messages and standalone audit rows, written in groups (server/core/batching.py).
    chat: ChatLog = field(init=False)
    audit: AuditWriter = field(init=False)
    # The open sockets' sessions: closed when they end (server/core/access.py).
    access: SessionWatch = field(init=False)

    def __post_init__(self) -> None:
        from server.core.access import SessionWatch
        from server.core.audit import AuditWriter
        from server.live.chatlog import ChatLog

        self.chat = ChatLog(self)
        self.audit = AuditWriter(self)
        self.access = SessionWatch(self)

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)


def ctx(conn: HTTPConnection) -> AppContext:
    context: AppContext = conn.app.state.ctx
    return context
