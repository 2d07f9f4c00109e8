"""A database that cannot be reached answers 503 with Retry-After (RFC 9110 15.6.4), in
the one error shape, on the JSON API and on DICOMweb alike (docs/deployment.md
"When the database is down").

Real outages, no mocks: a PostgreSQL database dropped under a running server, a port
where nothing listens, an SQLite file that cannot be opened, an SQLite database locked
by another process.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
import sqlalchemy as sa

from server.core.config import Settings
from server.testing import LiveServer, free_port
from tests.conftest import BACKEND, PG_ADMIN, _pg_url

BACKEND_CASES = {
    "sqlite": ["unopenable"],
    "postgresql": ["dropped", "refused"],
}[BACKEND]


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=BACKEND_CASES)
async def down_server(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[LiveServer]:
    """A live server whose database is out of reach, and was reached before where it can."""
    case = request.param
    if case == "unopenable":  # the database path is a directory: nothing can open it
        settings = make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}")
    elif case == "refused":
        port = free_port()
        settings = make_settings(database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{port}/x")
    else:
        name = f"ti_outage_{uuid.uuid4().hex[:8]}"
        await _admin(f'CREATE DATABASE "{name}"')
        url = _pg_url(name).replace("postgresql://", "postgresql+asyncpg://", 1)
        settings = make_settings(database_url=url)
    with LiveServer(settings) as server:
        if case == "dropped":
            async with httpx.AsyncClient(base_url=server.url) as client:
                # The pool holds a live connection when the database goes.
                resp = await client.post("/api/session", json={"username": "u", "password": "p"})
                assert resp.status_code in (401, 500), resp.text  # no tables: not migrated
            await _admin(f'DROP DATABASE "{name}" WITH (FORCE)')
        yield server


async def test_database_outage_is_503_with_retry_after(down_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=down_server.url, timeout=30) as client:
        responses = [
            await client.post("/api/session", json={"username": "rad", "password": "x"}),
            await client.get("/api/me", headers={"Authorization": "Bearer abc"}),
            await client.get("/dicomweb/studies", headers={"Authorization": "Bearer abc"}),
        ]
    for resp in responses:
        assert resp.status_code == 503, (resp.request.url, resp.text)
        assert int(resp.headers["retry-after"]) > 0
        assert resp.json()["error"]["code"] == "database_unavailable"
        assert "Traceback" not in resp.text and "asyncpg" not in resp.text


async def test_a_server_error_that_is_no_outage_stays_500_in_json(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """An empty SQLite file has no tables: a deployment fault, not a passing outage."""
    settings = make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    with LiveServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            resp = await client.post("/api/session", json={"username": "rad", "password": "x"})
            frames = await client.get("/dicomweb/studies", headers={"Authorization": "Bearer abc"})
    for r in (resp, frames):
        assert r.status_code == 500
        assert r.json() == {
            "error": {"code": "internal_error", "message": "unexpected server error"}
        }
        assert "retry-after" not in r.headers


def test_locked_sqlite_is_an_outage(tmp_path: Path) -> None:
    """SQLite's "database is locked", once the busy timeout has run out, is temporary."""
    from dicomweb.outage import database_unavailable

    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with pytest.raises(sa.exc.OperationalError) as caught, engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert database_unavailable(caught.value)
        with pytest.raises(sa.exc.OperationalError) as syntax, engine.connect() as conn:
            conn.execute(sa.text("SELEKT 1"))
        assert not database_unavailable(syntax.value)
    finally:
        engine.dispose()
        holder.close()


@pytest.mark.skipif(BACKEND != "postgresql", reason="PostgreSQL's own error classes")
async def test_postgresql_errors_that_are_outages_and_one_that_is_not() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from dicomweb.outage import database_unavailable

    missing = create_async_engine(
        _pg_url("ti_no_such_db").replace("postgresql:", "postgresql+asyncpg:")
    )
    try:
        with pytest.raises(sa.exc.DBAPIError) as caught:
            async with missing.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        assert database_unavailable(caught.value)
    finally:
        await missing.dispose()
    live = create_async_engine(PG_ADMIN.replace("postgresql:", "postgresql+asyncpg:"))
    try:
        with pytest.raises(sa.exc.DBAPIError) as bad:
            async with live.connect() as conn:
                await conn.execute(sa.text("SELECT 1/0"))
        assert not database_unavailable(bad.value)
    finally:
        await live.dispose()
    with pytest.raises(OSError) as refused:
        await asyncio.open_connection("127.0.0.1", free_port())
    assert database_unavailable(refused.value)
