"""``teleimagerie worker``: escalation and SLA timers (issue 5 fills it in)."""

from __future__ import annotations

import asyncio
import logging

from server.config import Settings

log = logging.getLogger("teleimagerie.worker")


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    log.info("worker started")
    await stop.wait()
