"""MLLP over TLS: a destination registered with --tls and its CA gets the report over
an encrypted link, and one whose certificate the CA did not sign gets nothing."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import update

from server.composition import core_context
from server.core.config import Settings
from server.core.models import Hl7Destination
from tests.interfaces.helpers import destination, settled, signed_exam
from tests.interfaces.receiver import Receiver
from tests.reports.helpers import ClientFor, ok


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (its own CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def tls_destination(settings: Settings, port: int, ca: Path) -> None:
    dest_id = await destination(settings, port, kinds="oru")
    async with core_context(settings) as app, app.db() as db:
        await db.execute(
            update(Hl7Destination)
            .where(Hl7Destination.id == dest_id)
            .values(tls=True, tls_ca_file=str(ca))
        )
        await db.commit()


async def test_report_over_tls(api_for: ClientFor, settings: Settings, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "dpi")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    receiver = await Receiver(tls=server_tls).start()
    try:
        await tls_destination(settings, receiver.port, cert)
        exam, rad = await signed_exam(api_for)
        (done,) = await settled(rad, exam["id"])
        assert done["state"] == "acknowledged"
        (message,) = await receiver.wait_for(1)
        assert str(message.segment("MSH")(10)) == done["control_id"]
    finally:
        await receiver.stop()


async def test_unknown_certificate_gets_nothing(
    api_for: ClientFor, settings: Settings, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path, "impostor")
    trusted, _ = self_signed(tmp_path, "dpi")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    receiver = await Receiver(tls=server_tls).start()
    try:
        await tls_destination(settings, receiver.port, trusted)
        exam, rad = await signed_exam(api_for)
        async with asyncio.timeout(20):
            while True:
                items = (await ok(await rad.get(f"/api/exams/{exam['id']}/deliveries")))[
                    "deliveries"
                ]
                if items and items[0]["last_error"]:
                    break
                await asyncio.sleep(0.05)
        assert items[0]["state"] == "retrying"
        assert "CERTIFICATE" in items[0]["last_error"].upper()
        assert receiver.received == []
    finally:
        await receiver.stop()
