"""``teleimagerie serve``: the application under uvicorn, with the server's own
protocols (server/web/httpserver.py, server/web/wsserver.py; docs/deployment.md)."""

from __future__ import annotations

import uvicorn

from server.core.config import Settings
from server.web.app import create_app
from server.web.httpserver import uvicorn_options


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve until stopped; the client address is read from ``X-Forwarded-For``
    when the peer is a trusted proxy (uvicorn's ``FORWARDED_ALLOW_IPS``)."""
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="warning",
        proxy_headers=True,
        **uvicorn_options(settings),
    )
