"""Test tools shipped with the product: a live server in a thread.

``LiveServer`` runs the real app under uvicorn on ``127.0.0.1:0`` in its own
thread and event loop, so that tests, benchmarks and scripts talk to it over
real HTTP and WebSocket connections.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import redis
import uvicorn

from server.core.config import Settings
from server.web.app import create_app
from server.web.httpserver import uvicorn_options


def free_port() -> int:
    """A TCP port free on the loopback right now (for servers started as processes)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def delete_redis_prefix(url: str, prefix: str) -> None:
    """What FLUSHDB would do to one deployment (a test, a benchmark run), without
    touching anyone else's keys in a shared Redis."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class Loopback:
    """A server of the tests on 127.0.0.1 at ``port``: its base URLs."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


class LiveServer(Loopback):
    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.settings = settings
        app = create_app(settings)
        options: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "log_level": "warning",
            "lifespan": "on",
            **uvicorn_options(settings),
        }
        options.update(overrides)
        self._server = uvicorn.Server(uvicorn.Config(app, **options))
        self._thread = threading.Thread(target=self._serve, name="live-server", daemon=True)
        self.port = 0

    def _serve(self) -> None:
        asyncio.run(self._server.serve())

    def start(self) -> LiveServer:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            self._thread.join(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
