"""What a live socket (an exam room member, a personal channel) has yet to send,
over the :class:`Transport` the web layer gives for each WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

from rooms.types import CloseCode

CLOSE_SLOW_CONSUMER = CloseCode.SLOW_CONSUMER
SEND_QUEUE = 256  # frames waiting for one socket before it is closed as slow


class Transport(Protocol):
    """One open WebSocket, as the rooms use it: text out, the client's next
    event in, a close. Events are those of the ASGI specification's WebSocket
    protocol (``{"type": "websocket.receive", "text" or "bytes": ...}``, then
    ``{"type": "websocket.disconnect"}``; :func:`client_frame` reads them). The
    web layer's WebSocket is one as it is: no wrapper, and no coroutine of ours
    waiting between the socket and the room for the hours a socket sits idle."""

    async def send_text(self, data: str) -> None: ...

    async def receive(self) -> Mapping[str, Any]: ...

    async def close(self, code: int, reason: str) -> None: ...


def client_frame(event: Mapping[str, Any]) -> str | bytes | None:
    """The frame a client sent (text or binary), or None once it has gone."""
    if event["type"] == "websocket.disconnect":
        return None
    text: str | None = event.get("text")
    if text is not None:
        return text
    data: bytes = event.get("bytes") or b""
    return data


class Outbox:
    """What one socket (a room member, a notification channel) has yet to send.

    Thousands of sockets sit idle for hours, so a deque and a writer task exist only
    while frames wait. Frames are dicts, or text already encoded once for many
    sockets. Past ``SEND_QUEUE`` waiting frames the client is not reading: the rest
    is dropped, the writer (perhaps stuck on a full socket buffer) is stopped, and
    the socket is closed with ``CLOSE_SLOW_CONSUMER``; the client reconnects and
    catches up (``reason`` tells it how)."""

    __slots__ = ("transport", "reason", "frames", "task", "closed", "closer")

    def __init__(self, transport: Transport, reason: str) -> None:
        self.transport = transport
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
                await self.transport.send_text(frame)
            self.frames = None
        except Exception:  # the socket is gone: its reader sees it and cleans up
            self.closed = True
            self.frames = None
        finally:
            self.task = None

    async def _close_slow(self) -> None:
        with contextlib.suppress(Exception):
            await self.transport.close(CLOSE_SLOW_CONSUMER, self.reason)

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
                await self.transport.send_text(json.dumps(last, separators=(",", ":")))
            await self.transport.close(code, close_reason(reason))

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
