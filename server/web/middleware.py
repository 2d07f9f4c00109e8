"""Pure ASGI middleware: security headers, URLs with NUL refused, and one structured log
line a request.

The log line carries method, path (ids, never names), status, duration and user id: never
patient data, query strings or secrets.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from server.accounts.auth import SCOPE_KEY

log = logging.getLogger("teleimagerie.http")

# 'wasm-unsafe-eval': the viewer's image decoders for JPEG 2000, JPEG-LS and JPEG
# are WebAssembly served by us (docs/security.md "Content security policy"); it lets
# WebAssembly compile, not eval() nor inline scripts.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; "
    "object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"permissions-policy", b"camera=(self), microphone=(self), geolocation=()"),
    (b"cache-control", b"no-store"),
]


# The vendored viewer modules (megabytes, docs/frontend.md "The vendored Cornerstone3D") may be
# kept by the browser but are revalidated on each use (RFC 9111 5.2.2.4): a rebuilt
# bundle is fetched at once, an unchanged one costs a 304 from its ETag.
VENDOR_PREFIX = "/vendor/"
VENDOR_HEADERS = [
    (b"cache-control", b"no-cache") if name == b"cache-control" else (name, value)
    for name, value in SECURITY_HEADERS
]

# RFC 6797: browsers keep to HTTPS for a year once they have seen this over HTTPS.
# Without includeSubDomains: other hosts of a hospital's domain may still be plain HTTP.
HSTS = (b"strict-transport-security", b"max-age=31536000")


class SecurityHeaders:
    """The headers of ``SECURITY_HEADERS`` on every response, and HSTS on those to a
    request that came over HTTPS: TLS to this server, or a proxy's X-Forwarded-Proto
    that uvicorn trusted (``FORWARDED_ALLOW_IPS``, docs/deployment.md)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http":  # hand over: no frame of ours on a socket's stack
            return self.app(scope, receive, send)
        return self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        base = VENDOR_HEADERS if scope["path"].startswith(VENDOR_PREFIX) else SECURITY_HEADERS
        extra = [*base, HSTS] if scope.get("scheme") == "https" else base

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in extra if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def has_nul(scope: Scope) -> bool:
    """NUL in the decoded path or in the query (``%00``; a raw NUL cannot reach us)."""
    query: bytes = scope.get("query_string", b"")
    return "\x00" in scope["path"] or b"%00" in query or b"\x00" in query


class RefuseNul:
    """400 ``nul_character`` for a URL holding NUL (403 for a socket's handshake), before
    routing: no resource is named with it, and PostgreSQL refuses it in text, so an id or a
    filter with NUL would fail in SQL (docs/design.md "Crafted input")."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "http" and has_nul(scope):
            body = {"error": {"code": "nul_character", "message": "the URL holds a NUL character"}}
            return JSONResponse(body, status_code=400)(scope, receive, send)
        if scope["type"] == "websocket" and has_nul(scope):
            # Closed before the handshake completes: the client sees HTTP 403.
            return WebSocketClose(code=1008)(scope, receive, send)
        return self.app(scope, receive, send)


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        return self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if log.isEnabledFor(logging.INFO):
                principal = scope.get(SCOPE_KEY)
                entry: dict[str, Any] = {
                    "event": "http",
                    "method": scope["method"],
                    "path": scope["path"][:200],
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                    "user": principal.user.id if principal else None,
                }
                log.info(json.dumps(entry))
