"""Async engine and sessions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_

from server.core import sqlite_driver

#: A pooled PostgreSQL connection idle this long is checked before it is lent.
PING_AFTER_S = 1.0


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(
    url: str, *, read_only: bool = False, ping_after_s: float | None = None, **kwargs: Any
) -> AsyncEngine:
    """One engine per process (two with SQLite). SQLite gets WAL, foreign keys,
    and write locks taken at BEGIN, so that two writers queue instead of failing
    to upgrade a read lock; ``read_only`` engines begin deferred transactions
    instead, which WAL runs side by side with a writer. PostgreSQL connections idle
    ``ping_after_s`` (default PING_AFTER_S) are checked before they are lent, and the
    pool lends the connection it was given back last."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # The pool's reset is ours (below): SQLAlchemy's rolls back every connection
        # it takes back, a committed one too, one more trip to aiosqlite's thread.
        kwargs.setdefault("pool_reset_on_return", None)
        # One trip to aiosqlite's thread per statement (server/core/sqlite_driver.py).
        kwargs.setdefault("module", sqlite_driver.DBAPI)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "reset")
        def _on_reset(dbapi_conn: Any, record: Any, state: Any) -> None:
            # Rolled back only when a transaction is open: SQLite says so without a
            # trip to the connection's thread.
            if state.terminate_only:
                return
            driver = record.driver_connection
            if getattr(driver, "in_transaction", True):
                dbapi_conn.rollback()

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy emit BEGIN itself (see the "begin" hook below).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            if read_only:  # a write here would take the lock mid-transaction: refuse it
                cur.execute("PRAGMA query_only=ON")
            cur.close()

        begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Straight to aiosqlite, in one trip to its thread: through SQLAlchemy's
            # cursor it would be three (open, execute, close), and a write
            # transaction's fixed cost is mostly such trips.
            driver = conn.connection.driver_connection
            if hasattr(driver, "execute_fetchall"):
                await_(driver.execute_fetchall(begin))
            else:
                conn.exec_driver_sql(begin)

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # The connection given back last is lent first: the few a process keeps busy stay
    # warm (their server process in the CPU's caches, its catalogue cached), where
    # taking them in turn woke every one of the pool's in turn (docs/benchmarks.md
    # "Eighth pass": 5 % more orders a second, 10 % less of PostgreSQL's CPU each).
    kwargs.setdefault("pool_use_lifo", True)
    engine = create_async_engine(url, **kwargs)
    _ping_when_idle(engine, PING_AFTER_S if ping_after_s is None else ping_after_s)
    return engine


def _ping_when_idle(engine: AsyncEngine, after_s: float) -> None:
    """Check a pooled connection before lending it, when it has been idle ``after_s``
    or longer: one that the server closed meanwhile (a restart, an idle timeout) is
    replaced instead of failing the transaction given it. SQLAlchemy's
    ``pool_pre_ping`` checks at every checkout, and with asyncpg that check is three
    round trips (BEGIN, an empty query, ROLLBACK): as many as the work of a small
    transaction. A connection returned a moment ago was working a moment ago."""
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < after_s:
            return  # new, or idle a moment
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as error:
            # As pre-ping does: every connection pooled until now is discarded (a
            # restarted server closed them all), a new one is lent.
            raise exc.InvalidatePoolError("a pooled connection no longer answers") from error


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
