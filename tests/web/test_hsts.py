"""Strict-Transport-Security (RFC 6797) on responses to requests that came over HTTPS:
real TLS to the server, or a trusted proxy's X-Forwarded-Proto (docs/deployment.md)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.core.config import Settings
from server.testing import LiveServer
from tests.tls import self_signed


@pytest.fixture
def tls_server(settings: Settings, tmp_path: Path) -> Iterator[tuple[LiveServer, Path]]:
    cert, key = self_signed(tmp_path)
    with LiveServer(settings, ssl_certfile=str(cert), ssl_keyfile=str(key)) as server:
        yield server, cert


async def test_hsts_over_tls(tls_server: tuple[LiveServer, Path]) -> None:
    server, cert = tls_server
    verify = ssl.create_default_context(cafile=str(cert))
    async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{server.port}", verify=verify) as c:
        for resp in (
            await c.get("/"),
            await c.get("/api/me"),
            await c.get("/dicomweb/studies"),
        ):
            hsts = resp.headers["strict-transport-security"]
            assert hsts == "max-age=31536000"


async def test_hsts_behind_a_trusted_proxy_and_not_over_plain_http(
    http: httpx.AsyncClient,
) -> None:
    """uvicorn trusts X-Forwarded-Proto from FORWARDED_ALLOW_IPS (127.0.0.1 by default)."""
    proxied = await http.get("/api/me", headers={"X-Forwarded-Proto": "https"})
    assert proxied.headers["strict-transport-security"].startswith("max-age=")
    plain = await http.get("/api/me")
    assert "strict-transport-security" not in plain.headers
