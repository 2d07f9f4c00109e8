"""MLLP over TLS with client certificates (docs/hl7.md "Connection"): a sender
registered with a certificate subject is accepted only with that certificate, a
client without a certificate from the CA is refused at the handshake."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hl7.mllp import open_hl7_connection

from server.composition import core_context
from server.core.config import Settings
from server.core.models import PatientIdentity
from server.interfaces.listener import Listener
from server.interfaces.senders import add_sender
from tests.conftest import Accounts
from tests.interfaces import messages as m
from tests.interfaces.conftest import Hl7Listener, ack_code


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    cn: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey,
    *, ca: bool = False, san: str | None = None,
) -> x509.Certificate:  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san))]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def _write(
    folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A CA, the listener's certificate for 127.0.0.1, and two client certificates."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Test CA", ca_key, _name("Test CA"), ca_key, ca=True)
    _write(tmp_path, "ca", ca, ca_key)
    for cn, san in (("server", "127.0.0.1"), ("dpi.chu-a", None), ("intruder", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(tmp_path, cn, _cert(cn, key, ca.subject, ca_key, san=san), key)
    return tmp_path


@pytest.fixture
async def tls_listener(
    make_settings: object, accounts: Accounts, pki: Path
) -> AsyncIterator[Hl7Listener]:
    settings: Settings = make_settings(  # type: ignore[operator]
        hl7_tls_cert=str(pki / "server.crt"),
        hl7_tls_key=str(pki / "server.key"),
        hl7_tls_client_ca=str(pki / "ca.crt"),
    )
    async with core_context(settings) as app:
        async with app.db() as db:
            await add_sender(app, db, "DPI", "CHU_A", "HOPA", cert_subject="dpi.chu-a")
            await db.commit()
        listener = Listener(app, "127.0.0.1", 0)
        await listener.start()
        try:
            yield Hl7Listener(app, listener)
        finally:
            await listener.stop()


def _client(pki: Path, cn: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cn is not None:
        context.load_cert_chain(str(pki / f"{cn}.crt"), str(pki / f"{cn}.key"))
    return context


async def _send(port: int, context: ssl.SSLContext, text: str) -> str:
    reader, writer = await open_hl7_connection("127.0.0.1", port, ssl=context)
    try:
        writer.writeblock(text.encode())
        await writer.drain()
        return ack_code(await reader.readmessage())
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass


async def test_the_registered_certificate_is_accepted(tls_listener: Hl7Listener, pki: Path) -> None:
    code = await _send(
        tls_listener.port, _client(pki, "dpi.chu-a"), m.adt("A28", m.control_id(), m.pid("T1"))
    )
    assert code == "AA"
    assert await tls_listener.count(PatientIdentity) == 1


async def test_another_certificate_of_the_ca_gets_ar(tls_listener: Hl7Listener, pki: Path) -> None:
    code = await _send(
        tls_listener.port, _client(pki, "intruder"), m.adt("A28", m.control_id(), m.pid("T2"))
    )
    assert code == "AR"
    assert await tls_listener.count(PatientIdentity) == 0


async def test_no_client_certificate_no_connection(tls_listener: Hl7Listener, pki: Path) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError)):
        await _send(
            tls_listener.port, _client(pki, None), m.adt("A28", m.control_id(), m.pid("T3"))
        )
    assert await tls_listener.count(PatientIdentity) == 0
