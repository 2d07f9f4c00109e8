"""Strict-Transport-Security (RFC 6797) on responses to requests that came over HTTPS:
real TLS to the server, or a trusted proxy's X-Forwarded-Proto (docs/deployment.md)."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.core.config import Settings
from server.testing import LiveServer


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, made here (no network, no fixture file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


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
