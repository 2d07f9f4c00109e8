"""Builds every service once, for each process (docs/architecture.md "Composition").

Each process builds only what it runs, and gets a context in which nothing is
``None``:

- the CLI commands and ``teleimagerie worker``: :func:`core_context` (database,
  engine, passwords, audit writer, session watch); no archive, no rooms, no
  calls, so neither aiortc nor the room hub is imported;
- ``teleimagerie dicom``: :func:`gateway_context`, the core and the archive;
- ``teleimagerie serve``: :func:`app_context`, everything (tests use it too).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from rooms.engine import create_engine as create_bus
from server.core.access import SessionWatch
from server.core.audit import AuditWriter
from server.core.config import Settings
from server.core.context import AppContext, core_fields
from server.core.db import create_engine, is_sqlite, session_factory
from server.core.passwords import Passwords

if TYPE_CHECKING:
    from server.archive.context import ArchiveContext
    from server.live.context import LiveContext


@contextlib.asynccontextmanager
async def core_context(settings: Settings) -> AsyncIterator[AppContext]:
    """The core services, started; closed in reverse at the end."""
    sql = create_engine(settings.database_url)
    sqlite = is_sqlite(settings.database_url)
    reader = create_engine(settings.database_url, read_only=True) if sqlite else sql
    bus = create_bus(settings.redis_url, settings.redis_prefix)
    db = session_factory(sql)
    read = session_factory(reader)
    core = AppContext(
        settings=settings,
        sql=sql,
        db=db,
        read=read,
        passwords=Passwords.from_settings(settings),
        bus=bus,
        audit=AuditWriter(db),
        # Late-bound, so that a clock replaced on AppContext (tests) reaches it too.
        access=SessionWatch(settings, bus, read, lambda: AppContext.now()),
    )
    await bus.start()
    try:
        yield core
    finally:
        await core.access.close()
        await bus.close()
        await sql.dispose()
        if reader is not sql:
            await reader.dispose()


@contextlib.asynccontextmanager
async def gateway_context(settings: Settings) -> AsyncIterator[ArchiveContext]:
    """The core and the archive (the modality gateway's process)."""
    from server.archive.service import build

    async with core_context(settings) as core:
        context = build(core)
        try:
            yield context
        finally:
            await context.images.close()


@contextlib.asynccontextmanager
async def app_context(settings: Settings) -> AsyncIterator[LiveContext]:
    """Everything the web process serves: the archive, the rooms, the calls."""
    from server.accounts.auth import SessionReader
    from server.archive.service import build
    from server.calls.cluster import CallCluster
    from server.calls.manager import CallManager
    from server.live.chatlog import ChatLog
    from server.live.context import LiveContext
    from server.live.joins import JoinReader
    from server.live.roomhub import RoomHub
    from server.review.service import reviewed_exam_ids

    async with core_context(settings) as core:
        archive = build(core, readers=(reviewed_exam_ids,))
        context = LiveContext(
            **core_fields(core),
            archive=archive.archive,
            ingestor=archive.ingestor,
            images=archive.images,
            rooms=RoomHub(
                core.bus,
                settings.presence_ttl_s,
                settings.presence_interval_s,
                freeze=settings.gc_freeze,
            ),
            chat=ChatLog(core),
            calls=CallManager(settings),
            joins=JoinReader(core.read, settings),
            sessions=SessionReader(core),
        )
        await context.calls.start(CallCluster(context.calls, context, settings.call_lease_s))
        try:
            yield context
        finally:
            await context.chat.close()
            await context.calls.close()
            await context.images.close()
