"""``teleimagerie dicom``: the gateway as a process of its own (Procfile
``dicom``), running until SIGTERM or SIGINT over the context the command built
(server/composition.py: the core and the archive)."""

from __future__ import annotations

import asyncio
import signal

from server.archive.context import ArchiveContext
from server.gateway.listener import Gateway


async def serve(
    app: ArchiveContext, host: str, port: int | None = None, ae_title: str | None = None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app.ingestor.warm_up()
    gateway = Gateway(app, host=host, port=port, ae_title=ae_title)
    gateway.start()
    try:
        await stop.wait()
    finally:
        # Associations still open finish their current message, then close.
        await asyncio.to_thread(gateway.stop)
