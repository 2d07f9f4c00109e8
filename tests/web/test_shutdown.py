"""The app stopped right after it started (docs/architecture.md "Two tiers of
tests"): its shutdown waits for, or stops, the work its start-up began (the
storage's reconciliation with the index, the timers' rebuild from SQL), so no
query is cut off midway and no connection is left to the garbage collector
(which this suite turns into an error)."""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime

import pytest

from server.composition import core_context
from server.core.config import Settings
from server.exams.escalation import rebuild
from server.web.app import create_app
from tests.conftest import Accounts
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
