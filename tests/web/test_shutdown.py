"""The app stopped right after it started (docs/architecture.md "Two tiers of
tests"): its shutdown waits for, or stops, the work its start-up began (the
storage's reconciliation with the index, the timers' rebuild from SQL), so no
query is cut off midway and no connection is left to the garbage collector
(which this suite turns into an error)."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from server.composition import app_context, core_context
from server.core.config import Settings
from server.exams.escalation import rebuild
from server.web.app import _reconciled, create_app
from tests.conftest import BACKEND, Accounts
from tests.lifespan import running
from tests.roster.conftest import new_exam


@pytest.mark.parametrize("turns", [0, 1, 2, 3, 5, 8])
async def test_an_app_stopped_at_once_leaves_nothing_running(
    settings: Settings, accounts: Accounts, turns: int
) -> None:
    async with core_context(settings) as core, core.db() as db:
        for _ in range(3):  # open exams: the rebuild has timers to plan
            await new_exam(core, db, datetime.now(UTC))
    app = create_app(settings)
    async with running(app):
        for _ in range(turns):  # stop after a few turns of the loop: mid-start-up work
            await asyncio.sleep(0)
        context = app.state.ctx
    reconciling = context.ingestor.reconciling
    assert reconciling is None or reconciling.done()
    left = [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task() and not task.done()
    ]
    assert left == []
    gc.collect()  # a connection dropped unclosed would warn here, an error in this suite


async def test_a_stopped_rebuild_ends_between_batches(
    settings: Settings, accounts: Accounts
) -> None:
    """The timers' rebuild is stopped by its loop's event, after the batch under way
    (``TimerTask.stop`` waits for it rather than cancel its query midway)."""
    async with core_context(settings) as core:
        async with core.db() as db:
            for _ in range(3):
                await new_exam(core, db, datetime.now(UTC))
        stop = asyncio.Event()
        stop.set()
        assert await rebuild(core, batch=2, stop=stop) == 0
        assert await core.bus.timer_count() == 0
        # Not stopped: every batch, every open exam's two accept deadlines.
        assert await rebuild(core, batch=2, stop=asyncio.Event()) == 6
        assert await core.bus.timer_count() == 6


@asynccontextmanager
async def _instances_locked(settings: Settings) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Another client holds a lock that makes the archive index wait (an exclusive
    transaction on SQLite, a table lock on PostgreSQL); yields what releases it."""
    url = make_url(settings.database_url)
    if BACKEND == "sqlite":
        holder = sqlite3.connect(str(url.database), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")

        async def release_sqlite() -> None:
            if holder.in_transaction:
                holder.rollback()

        try:
            yield release_sqlite
        finally:
            await release_sqlite()
            holder.close()
        return
    conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    tx = conn.transaction()
    await tx.start()
    await conn.execute("LOCK TABLE dicomweb_instances IN ACCESS EXCLUSIVE MODE")

    async def release_postgresql() -> None:
        if not conn.is_closed():
            await conn.close()  # ends the transaction, and its lock

    try:
        yield release_postgresql
    finally:
        await release_postgresql()


async def test_a_cancelled_stop_still_ends_the_reconciliation_first(settings: Settings) -> None:
    """The app's stop cancelled while it waits for the storage's reconciliation (held
    up by a lock) cancels that reconciliation and waits for its end: none of its
    queries outlives the app, to be answered into a closed event loop."""
    async with app_context(settings) as context, _instances_locked(settings) as release:
        reconciling = context.ingestor.reconcile_soon()
        assert reconciling is not None
        waiting = asyncio.create_task(_reconciled(reconciling))
        await asyncio.sleep(0)  # it waits now
        assert not reconciling.done()  # held up by the lock
        # The lock goes a moment later, while the cancelled wait is still under way.
        releasing = asyncio.get_running_loop().call_later(
            0.2, lambda: asyncio.ensure_future(release())
        )
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert reconciling.done()
        releasing.cancel()
    gc.collect()
