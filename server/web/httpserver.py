"""uvicorn's httptools HTTP protocol, without two copies of every request body.

uvicorn appends each body piece httptools hands over to a ``bytearray`` and gives
the app ``bytes(that bytearray)``: two copies of every byte on the event loop,
in fresh memory each time. A STOW of a 500-slice CT is 250 MB, and the event
loop's thread is the one the whole process waits on. Here a piece the app has not
asked for yet is kept as the ``bytes`` object httptools made, which ``bytes()``
then returns as it is; pieces are joined only when the app is behind. Flow
control, disconnects and everything else are uvicorn's. docs/benchmarks.md
"DICOMweb archive" has the figures.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HIGH_WATER_LIMIT, HttpToolsProtocol

from server.core.config import Settings
from server.web.wsserver import websocket_options

TIMEOUT_BODY = json.dumps(
    {"error": {"code": "body_timeout", "message": "the request stopped arriving"}}
).encode()


class LeanHttpProtocol(HttpToolsProtocol):
    body_timeout_s: float = 60.0  # uvicorn_options binds the setting

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._receiving = False  # a request has begun and not fully arrived
        self._headers_done = False
        self._last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        self._last_data = self.loop.time()
        super().data_received(data)
        # Armed only when a request is left incomplete: one that arrives whole in a
        # single read (most GETs) costs no timer.
        if self._receiving and self._timer is None and not self.transport.is_closing():
            self._timer = self.loop.call_later(self.body_timeout_s, self._on_timer)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._receiving, self._headers_done = True, False

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._headers_done = True

    def on_message_complete(self) -> None:
        self._stop_timer()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._stop_timer()
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _stop_timer(self) -> None:
        self._receiving = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if not self._receiving or self.transport.is_closing():
            return
        now = self.loop.time()
        cycle = self.cycle if self._headers_done else None
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            self._last_data = now  # we are the ones not reading, or not asking
        wait = self._last_data + self.body_timeout_s - now
        if wait > 0:
            self._timer = self.loop.call_later(wait, self._on_timer)
            return
        self._receiving = False
        if cycle is None or not cycle.response_started:
            self.transport.write(self._timeout_response())
        if cycle is not None:
            # The app's receive() now returns http.disconnect and its sends are dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def _timeout_response(self) -> bytes:
        lines = [b"HTTP/1.1 408 Request Timeout"]
        lines += [name + b": " + value for name, value in self.server_state.default_headers]
        lines += [
            b"content-type: application/json",
            b"content-length: " + str(len(TIMEOUT_BODY)).encode(),
            b"connection: close",
            b"cache-control: no-store",
            b"x-content-type-options: nosniff",
        ]
        return b"\r\n".join(lines) + b"\r\n\r\n" + TIMEOUT_BODY

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle.body:  # the app has not taken the previous piece: join (rare)
            super().on_body(body)
            return
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        # ``receive`` sends ``bytes(cycle.body)`` and starts a new bytearray.
        cycle.body = body  # type: ignore[assignment]  # bytes() of bytes: no copy
        if len(body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves us, for ``teleimagerie serve`` and the tests alike."""
    protocol = type(
        "LeanHttpProtocol", (LeanHttpProtocol,), {"body_timeout_s": settings.body_timeout_s}
    )
    return {"http": protocol, **websocket_options(settings)}
