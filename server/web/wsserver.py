"""uvicorn's WebSocket protocol, trimmed for many idle sockets.

A room socket sits idle for hours, and a region holds thousands of them. uvicorn's
sans-I/O protocol keeps, per socket, an ``asyncio.Queue`` (four deques and an event)
for incoming messages, an ``asyncio.Event`` for write flow control, and the parsed
handshake request and response (headers included) for the socket's whole life. This
subclass swaps the first two for single-consumer equivalents that allocate only while
something waits, and lets the handshake go once it is answered. Behaviour is
unchanged; docs/benchmarks.md "Exam rooms" has the memory figures.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import Protocol

from server.core.config import Settings


def websocket_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn runs our sockets, for ``teleimagerie serve`` and the tests alike."""
    return {
        "ws": LeanWebSocketProtocol,
        # The room answers an oversized frame with an error frame itself; the
        # transport only drops what is far beyond that limit.
        "ws_max_size": max(4 * settings.max_ws_frame_bytes, 1024 * 1024),
        # Room frames are small JSON; a deflate context costs tens of KiB per socket.
        "ws_per_message_deflate": False,
    }


class LeanQueue:
    """The part of ``asyncio.Queue`` the protocol uses, for one consumer (the app's
    ``receive``): a deque only while messages wait, a future only while the app does."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        assert self._items is not None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0


class LeanEvent:
    """``asyncio.Event`` with its waiters allocated only while someone waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._set = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = LeanQueue()  # type: ignore[assignment]  # same methods, fewer objects
        self.writable = LeanEvent(True)  # type: ignore[assignment]  # same methods

    def handle_connect(self, event: Request) -> None:
        conn = self.conn
        if not conn.reader.buffer:
            # websockets' server parser is one generator that reads the handshake,
            # then frames: its frame holds the parsed request (every header) for
            # the socket's life. The client sends no frame before our answer, so
            # with nothing buffered the frame parser can start afresh without it.
            conn.parser = Protocol.parse(conn)
            next(conn.parser)
        super().handle_connect(event)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and getattr(self, "response", None) is not None:
            # Only the handshake reads them; the socket may live for hours.
            self.request = None  # type: ignore[assignment]  # never read again
            self.response = None  # type: ignore[assignment]  # never read again
