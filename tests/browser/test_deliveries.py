"""Deliveries in Chromium: the room shows where the report stands in the hospital's
record, and the coordinators' screen lists a refused delivery and resends it
(docs/hl7.md "Outbound")."""

from __future__ import annotations

from playwright.async_api import expect

from server.testing import LiveServer
from tests.browser import loop
from tests.browser.conftest import DESKTOP
from tests.browser.test_images_report import enter
from tests.helpers import PASSWORD
from tests.interfaces.helpers import destination
from tests.interfaces.receiver import Receiver
from tests.reports.helpers import DRAFT, exam_images_complete, ok


async def test_refused_delivery_resent_from_the_coordinators_screen(
    live_server: LiveServer, accounts, client_for, new_context, shot, js_errors
) -> None:
    receiver = await Receiver(answer="AE").start()
    try:
        await destination(live_server.settings, receiver.port, kinds="oru")
        urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
        exam = await exam_images_complete(urg, rad, man)
        base_api = f"/api/exams/{exam['id']}"
        await ok(await rad.put(f"{base_api}/report", json=DRAFT))
        await ok(await rad.post(f"{base_api}/report/sign", json={"password": PASSWORD}))
        await receiver.wait_for(1)

        base = live_server.url
        coord = js_errors.watch(
            await loop.login(await new_context(DESKTOP), base, "coord"), "coordinator"
        )
        await enter(coord, base, exam["id"])
        line = coord.locator("#room-deliveries")
        await expect(line).to_contain_text("DPI ORU refusé")
        await shot(coord, "room-delivery-refused")

        await coord.click("#nav-deliveries")
        rows = coord.locator("#deliveries-body tr.delivery")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("refusé")
        await shot(coord, "deliveries-view")
        receiver.answer = "AA"
        await rows.first.get_by_role("button", name="Renvoyer").click()
        await expect(coord.locator("#deliveries-empty")).to_be_visible(timeout=20_000)
        await expect(rows).to_have_count(0)
        assert len(receiver.received) == 2
    finally:
        await receiver.stop()
