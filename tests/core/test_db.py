"""The engines of server/core/db.py. SQLite: a write transaction holds the write lock
from its BEGIN, which goes to the driver without SQLAlchemy's cursor. PostgreSQL's
pool: a connection lent again at once is not checked first (asyncpg's check is three
round trips), one idle long enough is, and replaced when the server closed it; the
connection given back last is lent first."""

from __future__ import annotations

import sqlite3
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.db import create_engine, session_factory
from tests.conftest import BACKEND

postgresql = pytest.mark.skipif(BACKEND != "postgresql", reason="PostgreSQL's pool")


@pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's write lock")
async def test_a_sqlite_write_transaction_holds_the_lock_from_its_begin(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    seen: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    other = sqlite3.connect(str(make_url(database_url).database), timeout=0)
    try:
        async with session_factory(engine)() as db:
            await db.execute(text("SELECT 1"))  # a read: the transaction has begun
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            await db.rollback()
        other.execute("BEGIN IMMEDIATE")  # free again
        other.rollback()
        assert seen == ["SELECT 1"]  # the BEGIN went to the driver directly
    finally:
        other.close()
        await engine.dispose()


@pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's pool reset")
async def test_a_sqlite_connection_is_rolled_back_when_given_back_inside_a_transaction(
    database_url: str,
) -> None:
    # Only then: a committed one goes back to the pool without another trip to
    # aiosqlite's thread.
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            rollbacks: list[None] = []
            rollback = raw.rollback

            async def counted() -> None:
                rollbacks.append(None)
                await rollback()

            raw.rollback = counted
            await conn.execute(text("CREATE TABLE IF NOT EXISTS pool_reset (x INTEGER)"))
            await conn.commit()
        assert rollbacks == []
        async with engine.connect() as conn:
            # A transaction SQLAlchemy does not know of, left open.
            await raw.execute("BEGIN")
            await raw.execute("INSERT INTO pool_reset VALUES (1)")
        assert rollbacks == [None]
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM pool_reset"))).scalar() == 0
    finally:
        await engine.dispose()


async def _backend(engine: AsyncEngine) -> tuple[int, Any]:
    """The server process of the connection the pool lends, and its asyncpg connection."""
    async with engine.connect() as conn:
        pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        raw = await conn.get_raw_connection()
        return int(pid), raw.driver_connection


@postgresql
async def test_a_connection_lent_again_at_once_is_not_checked_first(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        pid, driver = await _backend(engine)
        seen: list[str] = []
        driver.add_query_logger(lambda logged: seen.append(logged.query))
        assert await _backend(engine) == (pid, driver)
        # The connection's own transaction and nothing else (the driver logs the
        # statements it sends unprepared: the check would add a BEGIN and a ROLLBACK).
        assert seen == ["BEGIN;", "ROLLBACK;"]
    finally:
        await engine.dispose()


@postgresql
async def test_an_idle_connection_the_server_closed_is_replaced(database_url: str) -> None:
    engine = create_engine(database_url, ping_after_s=0.0)
    try:
        pid, _driver = await _backend(engine)
        admin = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        again, _driver = await _backend(engine)
        assert again != pid
    finally:
        await engine.dispose()


@postgresql
async def test_the_connection_given_back_last_is_lent_first(database_url: str) -> None:
    # One busy connection stays the one in use (warm on the server), not each of the
    # pool's in turn.
    engine = create_engine(database_url)
    try:
        async with engine.connect() as first, engine.connect() as second:
            pids = [await c.scalar(text("SELECT pg_backend_pid()")) for c in (first, second)]
        # ``first`` went back to the pool last (the context managers close in reverse).
        for _ in range(3):
            assert (await _backend(engine))[0] == pids[0]
    finally:
        await engine.dispose()
