"""What a route reads of its HTTP request or WebSocket: the context of the
process serving it, the caller and the caller's address.

The services below the web layer take plain values (a token, an address, a
context); this module is where a Starlette connection becomes those values
(docs/architecture.md "What each package owns").
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from server.accounts import auth
from server.archive.context import ArchiveContext
from server.core import audit
from server.core.context import AppContext
from server.core.identity import Principal
from server.live.context import LiveContext


def ctx(conn: HTTPConnection) -> AppContext:
    """The context of the process serving this request or socket."""
    context: AppContext = conn.app.state.ctx
    return context


def archive_ctx(conn: HTTPConnection) -> ArchiveContext:
    """The context of the process serving this request: one that runs the archive."""
    context: ArchiveContext = conn.app.state.ctx
    return context


def live_ctx(conn: HTTPConnection) -> LiveContext:
    """The context of the process serving this socket: one that runs the rooms."""
    context: LiveContext = conn.app.state.ctx
    return context


def client_addr(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "unknown"


def session_token(conn: HTTPConnection) -> str | None:
    """The session token a request carries (docs/api.md "Authentication")."""
    return auth.session_token(conn.headers.get("authorization"), conn.cookies.get(auth.COOKIE))


async def authenticate(
    conn: HTTPConnection, reuse: bool = False, reader: auth.SessionReader | None = None
) -> Principal:
    """The caller of an HTTP request or WebSocket, or 401; asked of SQL once per
    connection. ``reuse``: a session this process checked in SQL a moment ago is
    taken as it was (``auth.authenticate``; the sockets of a reconnect storm);
    ``reader``: else looked up with the others opening now (``auth.SessionReader``)."""
    cached: Principal | None = conn.scope.get(auth.SCOPE_KEY)
    if cached is not None:
        return cached
    principal = await auth.authenticate(ctx(conn), session_token(conn), reuse, reader)
    conn.scope[auth.SCOPE_KEY] = principal
    return principal


async def record_request(
    conn: HTTPConnection,
    action: str,
    who: Principal | None,
    db: AsyncSession | None = None,
    **fields: Any,
) -> audit.Entry:
    """``server.core.audit.record`` with the caller's address taken from the
    connection: in ``db``'s transaction if given, else written on its own."""
    app = ctx(conn)
    return await audit.record(
        db if db is not None else app,
        action=action,
        who=who,
        addr=client_addr(conn),
        at=app.now(),
        **fields,
    )
