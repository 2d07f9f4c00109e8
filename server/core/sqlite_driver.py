"""SQLAlchemy's aiosqlite driver, one trip to the connection's thread per statement.

aiosqlite runs each SQLite connection in a thread of its own; every call on it is a
trip there and back: queued to the thread, which takes the GIL to run it, and
answered through the event loop's self-pipe. SQLAlchemy's adapted cursor makes
three or four such trips for a statement (open a cursor, execute, fetch the rows,
close), each one waking two threads, and those trips, not SQLite, were most of a
small transaction's cost (docs/benchmarks.md "Eighth pass").

:data:`DBAPI` is SQLAlchemy's own aiosqlite adapter, whose connections open
:class:`OneTripCursor`: the statement runs, its rows are read and its cursor closed in
one function on the thread, whose answer (description, rows, row count, last row id)
comes back in one trip. Everything else is SQLAlchemy's and aiosqlite's: transactions,
commit and rollback (one trip each already), server-side cursors (a stream reads
its rows as it goes), errors, the connection's thread and its shutdown. It is given
to ``create_async_engine(module=...)``, SQLAlchemy's documented way to supply a
driver module.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT, await_

__all__ = ["DBAPI", "OneTripCursor"]

#: What a statement answers: its description, its rows, its row count, its last row id.
_Answer = tuple[Any, list[Any], int, Any]


def _run(conn: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Answer:
    """On the connection's thread: the whole statement, its cursor closed."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A DB-API cursor over aiosqlite whose statements take one trip each. It holds
    no sqlite3 cursor between statements: its rows are read at once, as SQLAlchemy's
    own buffered cursor reads them, and kept here."""

    __slots__ = ("_description", "_rowcount", "_lastrowid")

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection):
        # Not the base's constructor: it opens a cursor on the thread (one trip).
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: Any = None  # sqlite3's: None before any insert

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid

    def close(self) -> None:
        self._rows.clear()

    async def _async_soft_close(self) -> None:
        return None

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._submit(operation, parameters, False))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        try:
            return await_(self._submit(operation, seq_of_parameters, True))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _submit(self, operation: Any, parameters: Any, many: bool) -> None:
        connection = self._connection
        async with self._adapt_connection._execute_mutex:
            # aiosqlite's queue to its thread (a closed connection raises there).
            answer: _Answer = await connection._execute(
                _run, connection._conn, operation, parameters, many
            )
        self._description, rows, self._rowcount, self._lastrowid = answer
        self._rows = collections.deque(rows)


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor


class _Dbapi(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> _Connection:
        adapted = super().connect(*arg, **kw)
        return _Connection(self, adapted._connection)


#: The driver module to give SQLAlchemy for ``sqlite+aiosqlite`` URLs.
DBAPI = _Dbapi(aiosqlite, sqlite3)
