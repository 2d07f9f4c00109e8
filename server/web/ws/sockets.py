"""The opening of every WebSocket of the server (rooms, notifications): the
Origin check, the caller's session, the audit of a refusal. Once open, the
socket is the ``Transport`` of the live services (server/live/outbox.py)."""

from __future__ import annotations

from starlette.websockets import WebSocket

from rooms.types import CloseCode
from server.accounts.auth import SCOPE_KEY
from server.core.errors import ApiError
from server.core.identity import Principal
from server.web.request import authenticate, ctx, live_ctx, record_request
from server.web.ws.origins import origin_allowed

CLOSE_NOT_AUTHENTICATED = CloseCode.SESSION_ENDED


async def refuse(ws: WebSocket, who: Principal | None, code: str) -> None:
    """Audit a refused socket (the caller closes it with its own code)."""
    await record_request(
        ws,
        "access.denied",
        who,
        outcome="denied",
        exam_id=ws.path_params.get("exam_id"),
        detail={"path": ws.url.path[:200], "code": code},
    )


async def accept_caller(ws: WebSocket) -> Principal | None:
    """Refuse a foreign browser Origin at the handshake (HTTP 403), then accept and
    authenticate; a caller without a live session is audited and closed with 4401.
    None when the socket is closed."""
    if not origin_allowed(ws, ctx(ws).settings):
        await ws.close(code=1008)  # before accept: the handshake is refused with 403
        return None
    await ws.accept()
    try:
        # A socket may stay open for hours: keep plain values, not the ORM row.
        # A user's sockets (a room per exam, the personal channel, several tabs)
        # open together: a session checked a moment ago is taken from this
        # process's cache, which every end of sessions empties at once
        # (server/core/access.py); the socket's hold then follows the session.
        # Else it is looked up with the other sockets opening at the same time.
        reader = live_ctx(ws).sessions
        principal = (await authenticate(ws, reuse=True, reader=reader)).detached()
    except ApiError:
        await refuse(ws, None, "not_authenticated")
        await ws.close(CLOSE_NOT_AUTHENTICATED, "not authenticated")
        return None
    ws.scope[SCOPE_KEY] = principal
    return principal
