"""Which failures mean "the database cannot be reached right now", to be answered
503 Service Unavailable with Retry-After (RFC 9110 15.6.4, 10.2.3) instead of a 500.

An outage is a connection that cannot be made or was lost (PostgreSQL down, dropped,
restarting, out of connections; an SQLite file that cannot be opened or stays locked
past the busy timeout). Everything else the database says (a constraint, a syntax
error, a missing table) is a fault of the request or of the code, and stays what it is.
The server and the archive share this test (docs/deployment.md "When the database is
down").
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import sqlite3
from typing import Any

from sqlalchemy import exc as sa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("teleimagerie.http")

RETRY_AFTER_S = 5
# What to register the handler for; it tells an outage from anything else of these.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    sa.DBAPIError,
    sa.TimeoutError,
    sa.DisconnectionError,
    OSError,
)

# PostgreSQL SQLSTATE classes and codes (PostgreSQL manual, appendix A): connection
# exception, insufficient resources, operator intervention (shutdown, restart,
# cannot connect now), and a database that does not exist (dropped under us).
# A protocol violation (08P01) is in the connection class but is a client fault.
_PG_CLASSES = ("08", "53", "57")
_PG_CODES = ("3D000",)
_PG_NOT = ("08P01",)
# SQLite result codes as messages (sqlite.org/rescode.html): BUSY and LOCKED after the
# busy timeout, CANTOPEN, IOERR, FULL, READONLY (a file made read-only under us).
_SQLITE_MESSAGES = (
    "database is locked",
    "database table is locked",
    "unable to open database file",
    "disk i/o error",
    "database or disk is full",
    "attempt to write a readonly database",
)

_UNREACHABLE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN})


def _sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE of a driver error or of what it wraps (asyncpg through SQLAlchemy's
    adapter keeps the original as ``__cause__``)."""
    seen = 0
    while error is not None and seen < 4:
        state: Any = getattr(error, "sqlstate", None)
        if isinstance(state, str):
            return state
        error, seen = error.__cause__, seen + 1
    return None


def database_unavailable(error: BaseException) -> bool:
    """True when ``error`` says the database is out of reach for now."""
    if isinstance(error, sa.TimeoutError | sa.DisconnectionError):  # pool exhausted, lost
        return True
    if isinstance(error, sa.DBAPIError):
        if error.connection_invalidated:
            return True
        orig = error.orig
        if isinstance(orig, sqlite3.OperationalError):
            message = str(orig).lower()
            return any(message.startswith(m) for m in _SQLITE_MESSAGES)
        state = _sqlstate(orig)
        if state is not None:
            return (state[:2] in _PG_CLASSES or state in _PG_CODES) and state not in _PG_NOT
        return isinstance(error, sa.InterfaceError)
    # Raised as they are while connecting (asyncpg opens the socket itself).
    if isinstance(error, ConnectionError | TimeoutError | socket.gaierror):
        return True
    return isinstance(error, OSError) and error.errno in _UNREACHABLE


async def database_error_handler(_request: Request, error: Exception) -> Response:
    """503 with Retry-After for an outage; anything else goes on to the 500 handler.

    The log line names the error's type and SQLSTATE only: the message of a database
    error carries the statement and its parameters (patient names)."""
    if not database_unavailable(error):
        raise error
    orig = getattr(error, "orig", None)
    log.warning(
        json.dumps(
            {
                "event": "database_unavailable",
                "error": type(orig or error).__name__,
                "sqlstate": _sqlstate(orig),
            }
        )
    )
    body = {
        "error": {
            "code": "database_unavailable",
            "message": "the database cannot be reached right now; try again shortly",
        }
    }
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
