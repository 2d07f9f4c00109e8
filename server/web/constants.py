"""``GET /constants.js``: the wire constants the browser needs, rendered from the enums.

The WebSocket close codes are `rooms.types.CloseCode` (docs/rooms.md "Closing"); the
browser imports them from this module instead of retyping the numbers, so a code
changed or added on the server reaches every client that reacts to it
(docs/frontend.md "Modules"). It is an ES module so that the strict CSP
(``script-src 'self'``) holds and no page needs an inline script.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rooms.types import CloseCode


def close_codes() -> dict[str, int]:
    """Every close code of `CloseCode`, by name."""
    return {
        name: value
        for name, value in vars(CloseCode).items()
        if name.isupper() and isinstance(value, int)
    }


def constants_module() -> str:
    """The JavaScript module's text: one frozen object per group of constants."""
    return (
        "// Rendered by the server from rooms/types.py (CloseCode); do not edit.\n"
        f"export const CLOSE = Object.freeze({json.dumps(close_codes())});\n"
    )


async def constants_js(_request: Request) -> Response:
    return Response(constants_module(), media_type="text/javascript; charset=utf-8")


routes = [Route("/constants.js", constants_js, methods=["GET"])]
