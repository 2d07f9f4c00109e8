"""A request body that stops arriving times out: 408 with ``Connection: close`` while
the server can still answer, and the connection is freed (RFC 9110 15.5.9,
docs/configuration.md ``BODY_TIMEOUT_S``). Over raw sockets to a real server."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest

from server.core.config import Settings
from server.testing import LiveServer
from tests.conftest import Accounts
from tests.helpers import login

TIMEOUT_S = 0.4


@pytest.fixture
def slow_server(make_settings: Callable[..., Settings], accounts: Accounts) -> Iterator[LiveServer]:
    with LiveServer(make_settings(body_timeout_s=TIMEOUT_S)) as server:
        yield server


def stall(server: LiveServer, head: str, partial: bytes) -> tuple[bytes, bool]:
    """Send the head and part of the body, then nothing: what comes back, and whether
    the server closed the connection after it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + partial)
        received = b""
        closed = False
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                closed = True
                break
            received += chunk
    return received, closed


def head(method: str, path: str, length: int, *extra: str) -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}", *extra]
    return "".join(line + "\r\n" for line in lines)


def assert_408(received: bytes, closed: bool) -> None:
    status, _, rest = received.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout", received[:200]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert json.loads(body)["error"]["code"] == "body_timeout"
    assert closed


async def token(server: LiveServer, username: str) -> str:
    async with httpx.AsyncClient(base_url=server.url) as client:
        return await login(client, username)


def test_stalled_json_body_without_authentication(slow_server: LiveServer) -> None:
    request = head("POST", "/api/session", 200, "Content-Type: application/json")
    assert_408(*stall(slow_server, request, b'{"username": "ra'))


async def test_stalled_json_body_of_an_authenticated_route(slow_server: LiveServer) -> None:
    bearer = f"Authorization: Bearer {await token(slow_server, 'urg_a')}"
    request = head("POST", "/api/exams", 5000, "Content-Type: application/json", bearer)
    assert_408(*stall(slow_server, request, b'{"patient": {"id": "IPP'))


async def test_stalled_stow_body(slow_server: LiveServer) -> None:
    bearer = f"Authorization: Bearer {await token(slow_server, 'man_a')}"
    ctype = 'Content-Type: multipart/related; type="application/dicom"; boundary=xyz'
    request = head("POST", "/dicomweb/studies", 10_000_000, ctype, bearer)
    partial = b"--xyz\r\nContent-Type: application/dicom\r\n\r\n" + b"\0" * 300_000
    assert_408(*stall(slow_server, request, partial))
    assert not list(slow_server.settings.dicom_storage.rglob("*.part"))


def test_stalled_chunked_body(slow_server: LiveServer) -> None:
    request = head("POST", "/api/session", 0, "Content-Type: application/json")
    request = request.replace("Content-Length: 0", "Transfer-Encoding: chunked")
    assert_408(*stall(slow_server, request, b'10\r\n{"username": "r'))


def test_a_body_that_keeps_arriving_is_not_cut(slow_server: LiveServer) -> None:
    """The timeout is on silence, not on the whole body: slow pieces get through."""
    import time

    body = json.dumps({"username": "rad", "password": "wrong password"}).encode()
    request = head("POST", "/api/session", len(body), "Content-Type: application/json")
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=10) as sock:
        sock.sendall(request.encode() + b"\r\n")
        for i in range(0, len(body), 8):
            time.sleep(TIMEOUT_S / 3)
            sock.sendall(body[i : i + 8])
        status = sock.recv(65536).partition(b"\r\n")[0]
    assert status == b"HTTP/1.1 401 Unauthorized"


def test_stalled_headers(slow_server: LiveServer) -> None:
    """Headers that stop half-way are a request that stopped arriving too."""
    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=10) as sock:
        sock.sendall(b"GET /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthoriz")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 408 Request Timeout")
    assert json.loads(received.partition(b"\r\n\r\n")[2])["error"]["code"] == "body_timeout"


def test_an_idle_keep_alive_connection_is_not_a_stalled_request(
    slow_server: LiveServer,
) -> None:
    """Between requests the keep-alive timeout governs, not this one."""
    import time

    with socket.create_connection(("127.0.0.1", slow_server.port), timeout=10) as sock:
        sock.sendall(b"GET /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = read_response(sock)
        time.sleep(TIMEOUT_S * 2)
        sock.sendall(b"GET /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        second = read_response(sock)
    assert first.startswith(b"HTTP/1.1 401") and second.startswith(b"HTTP/1.1 401")


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head, then Content-Length bytes of body): a response may
    arrive in several segments, and the next one must not be read as its tail."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, "closed before the end of the head"
        received += chunk
    head_, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head_.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed before the end of the body"
        body += chunk
    return head_ + b"\r\n\r\n" + body
