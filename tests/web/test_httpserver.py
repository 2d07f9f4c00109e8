"""server/web/httpserver.py: request bodies reach the app whole and in order, whether
the app reads each piece as it comes or falls behind, over a real socket."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
from typing import Any

import pytest

from dicomweb.testing import LiveServer
from server.web.httpserver import LeanHttpProtocol


async def digest_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers the SHA-256 of the body and how many messages carried it; with
    ``?slow`` it sleeps between reads so that pieces pile up."""
    if scope["type"] != "http":
        return
    slow = scope["query_string"] == b"slow"
    h, messages, more = hashlib.sha256(), 0, True
    while more:
        if slow:
            await asyncio.sleep(0.002)
        message = await receive()
        assert isinstance(message["body"], bytes)
        h.update(message["body"])
        messages += 1
        more = message.get("more_body", False)
    body = f"{h.hexdigest()} {messages}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def server() -> Any:
    with LiveServer(digest_app, http=LeanHttpProtocol) as s:
        yield s


def post(port: int, path: str, body: bytes, piece: int) -> tuple[str, int]:
    """POST ``body`` chunked, ``piece`` bytes per send."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        pieces = (body[i : i + piece] for i in range(0, len(body), piece))
        conn.request("POST", path, body=pieces, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 200
        digest, messages = resp.read().decode().split()
    finally:
        conn.close()
    return digest, int(messages)


@pytest.mark.parametrize("path", ["/", "/?slow"])
def test_large_body_arrives_whole(server: LiveServer, path: str) -> None:
    body = os.urandom(3_000_000)
    digest, messages = post(server.port, path, body, 20_000)
    assert digest == hashlib.sha256(body).hexdigest()
    assert messages > 1


def test_small_and_empty_bodies(server: LiveServer) -> None:
    for body in (b"", b"x", os.urandom(70_000)):
        assert post(server.port, "/", body, 4096)[0] == hashlib.sha256(body).hexdigest()
