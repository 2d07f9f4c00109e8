"""Origin checks for WebSocket upgrades (and CORS): the server's own origin and
``ALLOWED_ORIGINS``. A request without an Origin header comes from a
non-browser client and is judged by its credentials alone."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from server.core.config import Settings


def own_origin(conn: HTTPConnection) -> str:
    scheme = {"ws": "http", "wss": "https"}.get(conn.url.scheme, conn.url.scheme)
    host = conn.headers.get("host", "")
    return f"{scheme}://{host}".lower()


def origin_allowed(conn: HTTPConnection, settings: Settings) -> bool:
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    if origin == own_origin(conn):
        return True
    if settings.public_url and origin == settings.public_url.lower():
        return True
    return origin in {o.lower() for o in settings.allowed_origins}
