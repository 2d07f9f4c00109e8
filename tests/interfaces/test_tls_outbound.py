"""MLLP over TLS: a destination registered with --tls and its CA gets the report over
an encrypted link, and one whose certificate the CA did not sign gets nothing."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from sqlalchemy import update

from server.composition import core_context
from server.core.config import Settings
from server.core.models import Hl7Destination
from tests.interfaces.helpers import destination, settled, signed_exam
from tests.interfaces.receiver import Receiver
from tests.reports.helpers import ClientFor, ok
from tests.tls import self_signed


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
