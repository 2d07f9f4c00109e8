"""``teleimagerie dicom``: the gateway as a process of its own (Procfile
``dicom``), running until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

from server.core.config import Settings
from server.gateway.listener import Gateway


async def serve(
    settings: Settings, host: str, port: int | None = None, ae_title: str | None = None
) -> None:
    from server.cli import app_context
    from server.web.middleware import configure_logging

    configure_logging(settings.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with app_context(settings) as app:
        if app.ingestor is not None:
            app.ingestor.warm_up()
        gateway = Gateway(app, host=host, port=port, ae_title=ae_title)
        gateway.start()
        try:
            await stop.wait()
        finally:
            # Associations still open finish their current message, then close.
            await asyncio.to_thread(gateway.stop)
