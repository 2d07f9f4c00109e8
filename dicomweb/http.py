"""HTTP plumbing shared by the handlers: errors, CORS (PS3.18 8.1.2 does not
cover it; browsers need it), media types and multipart bodies (PS3.18 8.6/8.7)."""

from __future__ import annotations

import gzip
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomweb.header import BASE
from dicomweb.types import DicomwebError

DICOM_JSON = "application/dicom+json"
CORS_HEADERS = "Accept, Authorization, Content-Type, Cache-Control"
CORS_EXPOSE = "Content-Type, Content-Length, Content-Location, Warning"


def error_response(exc: DicomwebError) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status
    )


def dicom_json(body: str | bytes, status: int = 200, base: str = "") -> Response:
    """A DICOM JSON response; ``base`` replaces the URL placeholder of stored JSON."""
    text = body if isinstance(body, str) else body.decode()
    return Response(text.replace(BASE, base), status_code=status, media_type=DICOM_JSON)


def accepted_codings(accept_encoding: str) -> set[str]:
    """The content codings an ``Accept-Encoding`` value allows (RFC 9110 12.5.3): a
    ``q=0`` refuses one, a weight that is no number is ignored."""
    out = set()
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        param = params.strip()
        try:
            weight = float(param.removeprefix("q=")) if param.startswith("q=") else 1.0
        except ValueError:
            continue
        if name.strip() and weight > 0:
            out.add(name.strip().lower())
    return out


# Series and study metadata repeat the same attributes for every instance: gzip makes
# them 30 to 40 times smaller (300 CT slices: 424 kB to 11.5 kB, ~4 ms of CPU; docs/dicomweb.md
# "Compressed metadata"). Under this size it would not pay for itself.
GZIP_MIN_BYTES = 16 * 1024


async def gzip_if_accepted(request: Request, response: Response) -> Response:
    """``response`` gzip-coded when the client accepts gzip and the body is large enough
    (RFC 9110 8.4.1), compressed in a worker thread (zlib releases the GIL)."""
    body = bytes(response.body)
    if len(body) < GZIP_MIN_BYTES:
        return response
    if "gzip" not in accepted_codings(request.headers.get("accept-encoding", "")):
        return response
    packed = await anyio.to_thread.run_sync(lambda: gzip.compress(body, 6, mtime=0))
    headers = {"content-encoding": "gzip", "vary": "accept-encoding"}
    return Response(
        packed, status_code=response.status_code, media_type=response.media_type, headers=headers
    )


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


# A Host header value: a name, IPv4 or bracketed IPv6 address, an optional port.
HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")
DEFAULT_PORTS = {"http": 80, "https": 443}
FORWARDED = ("forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host")


def base_of(request: Request, public: str | None) -> str:
    """The absolute URL of the archive, prefix of every URL in a response
    (RetrieveURL, BulkDataURI, Content-Location; PS3.18 8.2 wants them usable
    as given): the configured public URL, else the request's scheme and host.

    The scheme is the connection's, or the ``X-Forwarded-Proto`` of a proxy
    uvicorn trusts (``FORWARDED_ALLOW_IPS``), which has already replaced it; no
    other forwarding header is read. A Host without a port (dicomweb-client
    sends its host name alone) gets the port the request arrived on, unless
    that is the scheme's default or a proxy forwarded the request (a proxy's
    Host is the one its clients used). A malformed Host is not echoed: the
    address the request arrived at is used instead (docs/dicomweb.md "URLs")."""
    if public:
        return public.rstrip("/")
    scope = request.scope
    scheme = str(scope.get("scheme", "http"))
    root = str(scope.get("root_path", "")).rstrip("/")
    server = scope.get("server") or ("127.0.0.1", DEFAULT_PORTS.get(scheme, 80))
    host = request.headers.get("host", "")
    match = HOST.fullmatch(host)
    if match is None:
        name = f"[{server[0]}]" if ":" in str(server[0]) else str(server[0])
        host, port = name, server[1]
    else:
        port = int(match.group(2)[1:]) if match.group(2) else None
        host = match.group(1)
        if port is None and not any(h in request.headers for h in FORWARDED):
            port = server[1]
    if port is None or port == DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}{root}"
    return f"{scheme}://{host}:{port}{root}"


@dataclass(frozen=True)
class MediaRange:
    type: str
    params: dict[str, str]


def parse_media(value: str) -> MediaRange:
    parts = [p.strip() for p in _split(value, ";")]
    params: dict[str, str] = {}
    for p in parts[1:]:
        if "=" in p:
            k, _, v = p.partition("=")
            params[k.strip().lower()] = v.strip().strip('"')
    return MediaRange(parts[0].lower(), params)


def accept_list(request: Request) -> list[MediaRange]:
    raw = request.headers.get("accept", "") or "*/*"
    return [parse_media(v) for v in _split(raw, ",") if v.strip()]


def _split(value: str, sep: str) -> Iterable[str]:
    """Split outside double quotes (``type="a, b"`` stays whole)."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def new_boundary() -> str:
    return uuid.uuid4().hex


def part_head(boundary: str, content_type: str, location: str | None = None) -> bytes:
    head = f"--{boundary}\r\nContent-Type: {content_type}\r\n"
    if location:
        head += f"Content-Location: {location}\r\n"
    return (head + "\r\n").encode()


def multipart_type(inner: str, boundary: str, extra: str = "") -> str:
    return f'multipart/related; type="{inner}"{extra}; boundary={boundary}'


async def aiter_bytes(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


class CORSMiddleware:
    """CORS on every response, OPTIONS preflight for the configured origins, and
    ``Cross-Origin-Resource-Policy`` so cross-origin isolated viewers may load
    pixel data. Errors raised as DicomwebError become JSON error responses."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self.app = app
        self.origins = set(origins)
        self.any = "*" in self.origins

    def _allowed(self, origin: str | None) -> str | None:
        if origin is None:
            return None
        if self.any or origin in self.origins:
            return origin
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = self._allowed(headers.get("origin"))
        cors: list[tuple[bytes, bytes]] = [(b"cross-origin-resource-policy", b"cross-origin")]
        if origin:
            cors += [
                (b"access-control-allow-origin", origin.encode()),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-expose-headers", CORS_EXPOSE.encode()),
                (b"vary", b"Origin"),
            ]
        if scope["method"] == "OPTIONS" and headers.get("access-control-request-method"):
            status = 204 if origin else 403
            extra = (
                [
                    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                    (b"access-control-allow-headers", CORS_HEADERS.encode()),
                    (b"access-control-max-age", b"600"),
                ]
                if origin
                else []
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": cors + extra + [(b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + cors
            await send(message)

        await self.app(scope, receive, send_with_cors)
