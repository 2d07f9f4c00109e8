"""The opening of every WebSocket of the server (rooms, notifications)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from typing import Any

from starlette.websockets import WebSocket

from rooms.types import CloseCode
from server.accounts.auth import authenticate
from server.core import audit
from server.core.context import ctx
from server.core.errors import ApiError
from server.core.identity import Principal
from server.live.origins import origin_allowed

CLOSE_NOT_AUTHENTICATED = CloseCode.SESSION_ENDED
CLOSE_SLOW_CONSUMER = CloseCode.SLOW_CONSUMER
SEND_QUEUE = 256  # frames waiting for one socket before it is closed as slow


class Outbox:
    """What one socket (a room member, a notification channel) has yet to send.

    Thousands of sockets sit idle for hours, so a deque and a writer task exist only
    while frames wait. Frames are dicts, or text already encoded once for many
    sockets. Past ``SEND_QUEUE`` waiting frames the client is not reading: the rest
    is dropped, the writer (perhaps stuck on a full socket buffer) is stopped, and
    the socket is closed with ``CLOSE_SLOW_CONSUMER``; the client reconnects and
    catches up (``reason`` tells it how)."""

    __slots__ = ("ws", "reason", "frames", "task", "closed", "closer")

    def __init__(self, ws: WebSocket, reason: str) -> None:
        self.ws = ws
        self.reason = reason
        self.frames: deque[dict[str, Any] | str] | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False  # shed, stopped, or the socket failed: nothing more is sent
        self.closer: asyncio.Task[None] | None = None  # see finish()

    def push(self, frame: dict[str, Any] | str) -> None:
        if self.closed:
            return
        if self.frames is None:
            self.frames = deque()
        elif len(self.frames) >= SEND_QUEUE:
            self.stop()
            asyncio.get_running_loop().create_task(self._close_slow())
            return
        self.frames.append(frame)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        """Send what is queued, then end (the next push starts another writer)."""
        try:
            while self.frames:
                frame = self.frames.popleft()
                if not isinstance(frame, str):
                    frame = json.dumps(frame, separators=(",", ":"))
                await self.ws.send_text(frame)
            self.frames = None
        except Exception:  # the socket is gone: its reader sees it and cleans up
            self.closed = True
            self.frames = None
        finally:
            self.task = None

    async def _close_slow(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(CLOSE_SLOW_CONSUMER, self.reason)

    def finish(self, code: int, reason: str, last: dict[str, Any] | None = None) -> None:
        """Close the socket with ``code`` now (its access ended): what waits is
        dropped (the client may no longer see it), ``last`` goes out first. The
        reader sees the client's close and cleans up as after any disconnect."""
        if self.closed:
            return
        self.stop()
        self.closer = asyncio.get_running_loop().create_task(self._finish(code, reason, last))

    async def _finish(self, code: int, reason: str, last: dict[str, Any] | None) -> None:
        with contextlib.suppress(Exception):
            if last is not None:
                await self.ws.send_text(json.dumps(last, separators=(",", ":")))
            await self.ws.close(code, close_reason(reason))

    def stop(self) -> None:
        """Send nothing more (the socket is closing)."""
        self.closed = True
        self.frames = None
        if self.task is not None:
            self.task.cancel()


def close_reason(text: str) -> str:
    """A close reason fits in 123 bytes of UTF-8 (RFC 6455 5.5: a control frame
    carries at most 125, two of which are the code)."""
    data = text.encode()
    if len(data) <= 123:
        return text
    return data[:123].decode(errors="ignore")


async def refuse(ws: WebSocket, who: Principal | None, code: str) -> None:
    """Audit a refused socket (the caller closes it with its own code)."""
    await audit.record_request(
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
        principal = (await authenticate(ws)).detached()
    except ApiError:
        await refuse(ws, None, "not_authenticated")
        await ws.close(CLOSE_NOT_AUTHENTICATED, "not authenticated")
        return None
    ws.scope["ti.principal"] = principal
    return principal
