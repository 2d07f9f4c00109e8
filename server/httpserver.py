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

from typing import Any

from uvicorn.protocols.http.httptools_impl import HIGH_WATER_LIMIT, HttpToolsProtocol

from server.config import Settings
from server.wsserver import websocket_options


class LeanHttpProtocol(HttpToolsProtocol):
    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle.body:  # the app has not taken the previous piece: join (rare)
            super().on_body(body)
            return
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        # ``receive`` sends ``bytes(cycle.body)`` and starts a new bytearray.
        cycle.body = body  # type: ignore[assignment]
        if len(body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves us, for ``teleimagerie serve`` and the tests alike."""
    return {"http": LeanHttpProtocol, **websocket_options(settings)}
