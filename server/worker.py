"""``teleimagerie worker``: fires escalation and SLA timers (docs/roster.md "Timers"),
sends the outbox to the hospitals (docs/hl7.md "Outbound"), and fetches accepted
exams' priors from the hospitals' PACS (docs/priors.md).

At start it rebuilds every pending timer from SQL (the engine may have been flushed,
or a worker killed after claiming a timer), then claims due timers in a loop. Claims
are atomic in the engine, so any number of workers share the load and each timer
fires once; `server.exams.firing.fire` is idempotent besides, so a timer rebuilt after
it fired raises nothing twice. A periodic rebuild repairs what a worker killed
between claim and commit left behind, without waiting for a restart. Beside the
timers it checkpoints the audit chain's head (server/core/audit_anchor.py).

With the memory engine the web process runs the same loop in-process (server/web/app.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from server.core.config import Settings
from server.core.context import AppContext

Fire = Callable[[AppContext, str, dict[str, Any]], Awaitable[Any]]

log = logging.getLogger("teleimagerie.worker")

POLL_S = 0.05  # how long an idle loop sleeps: the floor of the lateness
RETRY_S = 5.0  # a fire that failed (database away) is tried again this much later
BATCH = 100
# Fires in flight at once: their SQL and Redis round trips overlap (a burst after an
# outage drains faster); each fire is idempotent, so their order does not matter.
CONCURRENCY = 8


async def fire_due(app: AppContext, now: float | None = None, fire: Fire | None = None) -> int:
    """Claim and fire the timers due at `now`; returns how many were claimed.

    `fire` defaults to `server.exams.firing.fire`; the timer benchmark passes its own."""
    from server.exams.firing import fire as raise_escalation

    fire_one: Fire = fire or raise_escalation
    claimed = await app.bus.timer_claim_due(time.time() if now is None else now, BATCH)
    # One exam's timers fire in claim order (earliest first), so that a backlog (workers
    # down for a while) still raises level 1 before level 2; exams fire side by side.
    by_exam: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for key, payload in claimed:
        by_exam.setdefault(str(payload.get("exam_id", key)), []).append((key, payload))
    gate = asyncio.Semaphore(CONCURRENCY)

    async def in_order(timers: list[tuple[str, dict[str, Any]]]) -> None:
        async with gate:
            for key, payload in timers:
                try:
                    await fire_one(app, key, payload)
                except Exception:
                    log.exception("escalation %s failed; retrying in %.0fs", key, RETRY_S)
                    with contextlib.suppress(Exception):
                        await app.bus.timer_schedule(key, time.time() + RETRY_S, payload)

    await asyncio.gather(*(in_order(timers) for timers in by_exam.values()))
    return len(claimed)


async def timer_loop(
    app: AppContext,
    stop: asyncio.Event,
    resync_every_s: float = 300.0,
    poll_s: float = POLL_S,
    fire: Fire | None = None,
    rebuild_first: bool = True,
) -> None:
    """Rebuild from SQL (at start unless told otherwise, and every `resync_every_s`) and
    fire due timers until `stop` is set."""
    next_resync = 0.0 if rebuild_first else time.monotonic() + resync_every_s
    rebuilding: asyncio.Task[int] | None = None
    try:
        while not stop.is_set():
            # The rebuild runs beside the claims: a worker restarted with thousands of
            # pending timers fires the first ones it restores without waiting for the rest.
            if time.monotonic() >= next_resync and (rebuilding is None or rebuilding.done()):
                rebuilding = asyncio.get_running_loop().create_task(_rebuild(app, stop))
                next_resync = time.monotonic() + resync_every_s
            try:
                if await fire_due(app, fire=fire) == BATCH:
                    continue  # more are due: no sleep
            except Exception:
                log.exception("timer loop iteration failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)
    finally:
        # Stopped: the rebuild ends after its batch under way (``stop`` is set); wait
        # for it rather than cancel it, which would cut its query off midway.
        if rebuilding is not None:
            await rebuilding


async def _rebuild(app: AppContext, stop: asyncio.Event) -> int:
    from server.exams.escalation import rebuild

    try:
        count = await rebuild(app, stop=stop)
    except Exception:
        log.exception("rebuilding the timers from SQL failed; retrying at the next resync")
        return 0
    log.info("timers rebuilt from SQL: %d pending", count)
    return count


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    from server.composition import core_context
    from server.core.logs import configure_logging

    configure_logging(settings.log_level)
    if stop is None:
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if not settings.redis_url:
        log.warning("no REDIS_URL: with the memory engine the web process runs the timers")
    from server.core.audit_anchor import checkpoint_loop
    from server.interfaces.outbox import outbox_loop
    from server.priors.retrieval import prior_loop

    async with core_context(settings) as app:
        log.info("worker started")
        await asyncio.gather(
            timer_loop(app, stop),
            checkpoint_loop(app, stop),
            outbox_loop(app, stop),
            prior_loop(app, stop),
        )
    log.info("worker stopped")


class TimerTask:
    """The timer loop, the audit checkpoints (server/core/audit_anchor.py), the outbox
    and the PACS priors, running inside another process's event loop (the web app
    without a worker)."""

    def __init__(self, app: AppContext) -> None:
        from server.core.audit_anchor import checkpoint_loop
        from server.interfaces.outbox import outbox_loop
        from server.priors.retrieval import prior_loop

        self.stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(timer_loop(app, self.stop_event))
        self.checkpoints = loop.create_task(checkpoint_loop(app, self.stop_event))
        self.outbox = loop.create_task(outbox_loop(app, self.stop_event))
        self.priors = loop.create_task(prior_loop(app, self.stop_event))

    async def stop(self) -> None:
        """Stop the loops and return once every one has ended, the timers' rebuild
        included (it finishes its batch under way, ``timer_loop``): none is left
        querying a database about to be disposed, even when another loop failed
        or this wait is cancelled (it still waits for them before passing that on)."""
        self.stop_event.set()
        tasks = (self.task, self.checkpoints, self.outbox, self.priors)
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError:
            await asyncio.wait(tasks)
            raise
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                log.error("a loop ended with an error", exc_info=task.exception())


def start_timer_loop(app: AppContext) -> TimerTask:
    return TimerTask(app)
