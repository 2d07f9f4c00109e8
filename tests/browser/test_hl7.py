"""An order from the hospital's system over MLLP, seen in the browsers (docs/hl7.md
"Orders"): it appears live in the radiologist's worklist, the room shows the
qualified identity's strict traits, and the urgentist's form finds the identity.

The listener and the live server are two processes' worth of services sharing
Redis, as in production (Procfile ``hl7`` and ``web``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from hl7.mllp import open_hl7_connection
from playwright.async_api import expect
from sqlalchemy import select

from server.composition import core_context
from server.core.config import Settings
from server.core.models import Exam
from server.interfaces.listener import Listener
from server.interfaces.senders import add_sender
from server.testing import LiveServer
from tests.browser import loop
from tests.browser.conftest import DESKTOP, TABLET
from tests.interfaces import messages as m

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def settings(make_settings: Callable[..., Settings], redis_prefix: str) -> Settings:
    return make_settings(redis_url=REDIS_URL, redis_prefix=redis_prefix)


@pytest.fixture
async def mllp(settings: Settings, accounts: object) -> AsyncIterator[tuple[Listener, int]]:
    async with core_context(settings) as app:
        async with app.db() as db:
            await add_sender(app, db, "DPI", "CHU_A", "HOPA")
            await db.commit()
        listener = Listener(app, "127.0.0.1", 0)
        port = await listener.start()
        try:
            yield listener, port
        finally:
            await listener.stop()


async def test_an_order_appears_live_with_its_qualified_identity(
    live_server: LiveServer, accounts, mllp, new_context, shot, js_errors
) -> None:
    listener, port = mllp
    base = live_server.url
    rad = js_errors.watch(await loop.login(await new_context(DESKTOP), base, "rad"), "radiologist")
    await expect(rad.locator("#worklist")).to_be_visible()

    reader, writer = await open_hl7_connection("127.0.0.1", port)
    writer.writeblock(m.order(m.control_id(), "CMD-BR1", m.pid("IPP-BR1")).encode())
    await writer.drain()
    ack = await reader.readmessage()
    writer.close()
    await writer.wait_closed()
    assert str(ack.segment("MSA")(1)) == "AA"
    async with listener.app.read() as db:
        exam_id = await db.scalar(select(Exam.id).where(Exam.placer_order_number == "CMD-BR1"))
    assert exam_id is not None

    # No reload: the worklist hears of the request over its notification socket.
    row = rad.locator(f'tr[data-id="{exam_id}"]')
    await expect(row).to_be_visible()
    await shot(rad, "worklist-radiologist-order-over-mllp")
    await loop.open_from_worklist(rad, exam_id)
    identity = rad.locator("#room-identity")
    await expect(identity).to_contain_text("Identité qualifiée")
    await expect(identity).to_contain_text("DUPONT")
    await expect(identity).to_contain_text("Hélène Marie")
    await expect(identity).to_contain_text(m.INS_HELENE)
    await shot(rad, "room-qualified-identity")

    # The urgentist's form finds the identity received and links the request to it.
    urg = js_errors.watch(await loop.login(await new_context(TABLET), base, "urg_a"), "urgentist")
    await urg.click("#new-request")
    await urg.fill("#patient-search", "IPP-BR1")
    await urg.locator(".patient-pick").first.click()
    await expect(urg.locator("#identity-linked")).to_contain_text("Identité qualifiée")
    await expect(urg.locator("#patient_id")).to_have_value("IPP-BR1")
    await expect(urg.locator("#patient_id")).to_be_disabled()
    await shot(urg, "request-form-identity-linked")

    # An order without the patient's consent waits as a draft the urgentist completes.
    reader, writer = await open_hl7_connection("127.0.0.1", port)
    text = m.order(m.control_id(), "CMD-BR2", m.pid("IPP-BR1"), consent=None)
    writer.writeblock(text.encode())
    await writer.drain()
    ack = await reader.readmessage()
    writer.close()
    await writer.wait_closed()
    assert str(ack.segment("MSA")(1)) == "AA"
    await urg.goto(f"{base}/#/worklist")
    await urg.click("#new-request")
    draft = urg.locator(".order-draft", has_text="CMD-BR2")
    await expect(draft).to_contain_text("consent")
    await shot(urg, "request-form-draft-from-order")
    await draft.locator(".draft-use").click()
    await expect(urg.locator("#clinical_question")).to_have_value(
        "Céphalée brutale, suspicion d'hémorragie méningée"
    )
    await urg.check("#consent")
    await urg.click("#request-submit")
    await expect(urg.locator("#room-identity")).to_contain_text("Identité qualifiée")
    async with listener.app.read() as db:
        placed = await db.scalar(select(Exam.id).where(Exam.placer_order_number == "CMD-BR2"))
    assert placed is not None and urg.url.endswith(placed)
