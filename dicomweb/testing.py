"""Test tools shipped with the archive (docs/dicomweb.md "Tests and tools"): an open
``Access``, a hook that records, and a live server for any ASGI app in a thread on 127.0.0.1:0.

Used by the tests and the benchmark; the server has its own ``LiveServer``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import uvicorn
from sqlalchemy import ColumnElement, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import Mount
from starlette.types import ASGIApp

from dicomweb import tables
from dicomweb.types import DicomwebError, InstanceAttrs, StoredInstance, StoreTarget

T = TypeVar("T")


@dataclass
class TokenAccess:
    """Everyone with the token sees everything; with ``establishment`` set, the
    caller sees and stores only that establishment's studies."""

    token: str | None = None
    establishment: int | None = None
    exam_id: str | None = None
    refuse_patient: str | None = None

    async def authenticate(self, request: HTTPConnection) -> dict[str, Any]:
        if self.token is not None:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                raise DicomwebError(401, "unauthenticated", "a bearer token is required")
        return {"establishment": self.establishment}

    def cache_key(self, principal: dict[str, Any]) -> object:
        """What ``study_filter`` depends on (``Access.cache_key``, optional)."""
        return ("establishment", principal["establishment"])

    def study_filter(self, principal: dict[str, Any]) -> ColumnElement[bool] | None:
        if principal["establishment"] is None:
            return None
        establishment: int = principal["establishment"]
        return tables.studies.c.establishment_id == establishment

    def store_key(self, principal: dict[str, Any], attrs: InstanceAttrs) -> object:
        """What ``authorize_store`` depends on (``Access.store_key``, optional)."""
        return (principal["establishment"], attrs.patient_id)

    async def authorize_store(
        self, principal: dict[str, Any], attrs: InstanceAttrs
    ) -> StoreTarget | None:
        if self.refuse_patient is not None and attrs.patient_id == self.refuse_patient:
            return None
        return StoreTarget(exam_id=self.exam_id, establishment_id=principal["establishment"])


@dataclass
class RecordingHooks:
    """Remembers every ``on_stored`` call with the monotonic time it happened."""

    stored: list[tuple[float, StoredInstance]] = field(default_factory=list)

    async def on_stored(self, stored: StoredInstance) -> None:
        self.stored.append((time.monotonic(), stored))


def create_engine(url: str) -> AsyncEngine:
    """An engine like the server's: SQLite in WAL mode with writers queued at BEGIN."""
    if make_url(url).get_backend_name() != "sqlite":
        return create_async_engine(url, pool_size=10, max_overflow=20)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def mounted(app: ASGIApp, path: str = "/dicomweb") -> Starlette:
    """The sub-app mounted the way the server mounts it."""
    return Starlette(routes=[Mount(path, app=app)])


class LiveServer:
    """``with LiveServer(app) as s: s.url`` — uvicorn in its own thread and loop."""

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        config: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "log_level": "warning",
            "lifespan": "off",
        }
        config.update(options)
        self._server = uvicorn.Server(uvicorn.Config(app, **config))
        self._thread = threading.Thread(target=self._run, name="dicomweb-live", daemon=True)
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self._server.serve()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` in the server's event loop (e.g. to dispose its engine)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            self._thread.join(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._server.force_exit = True  # tests: do not wait for idle keep-alive clients
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
