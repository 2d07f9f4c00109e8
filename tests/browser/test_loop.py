"""The clinical loop in a real headless Chromium, three users at once (docs/frontend.md "Testing").

Urgentist on an ER tablet (1024x768), radiologist on a reading screen (1920x1080),
manipulator at the console: request, accept, protocol, acknowledge, chat, and the
room surviving a network cut (a message typed offline is sent exactly once).
"""

from __future__ import annotations

from playwright.async_api import expect

from server.testing import LiveServer
from tests.browser import loop
from tests.browser.conftest import DESKTOP, TABLET


async def test_request_protocol_chat_and_reconnect(
    live_server: LiveServer, accounts, new_context, shot, js_errors
) -> None:
    base = live_server.url
    urg_ctx = await new_context(TABLET)
    urg_page = await urg_ctx.new_page()
    await urg_page.goto(base + "/")
    await expect(urg_page.locator("#login-title")).to_have_text("Connexion")
    await shot(urg_page, "login-tablet")
    await urg_page.close()

    urg = js_errors.watch(await loop.login(urg_ctx, base, "urg_a"), "urgentist")
    rad = js_errors.watch(await loop.login(await new_context(DESKTOP), base, "rad"), "radiologist")
    man = js_errors.watch(
        await loop.login(await new_context({"width": 1366, "height": 900}), base, "man_a"),
        "manipulator",
    )

    exam_id = await loop.request_exam(urg, shot)
    await urg.goto(f"{base}/#/worklist")
    await expect(urg.locator(f'tr[data-id="{exam_id}"]')).to_be_visible()
    await shot(urg, "worklist-urgentist-tablet")
    await urg.goto(f"{base}/#/exam/{exam_id}")
    await expect(urg.locator("#room-conn")).to_have_text("En ligne")
    await shot(urg, "room-urgentist-requested-tablet")

    # The radiologist's worklist picks the request up live, with its countdown.
    row = rad.locator(f'tr[data-id="{exam_id}"]')
    await expect(row).to_be_visible()
    await expect(row.locator(".countdown")).to_have_class("countdown level-ok")
    await shot(rad, "worklist-radiologist")
    await loop.open_from_worklist(rad, exam_id)
    await expect(rad.locator("#presence")).to_contain_text("URG_A")
    await loop.accept_and_protocol(rad)
    await shot(rad, "room-radiologist-protocol-sent")

    # The manipulator's worklist shows the change; the room alerts until acknowledged.
    await expect(man.locator(f'tr[data-id="{exam_id}"] .col-status .badge')).to_have_text(
        "Protocole envoyé"
    )
    await expect(man.locator("#alerts")).to_contain_text("Protocole reçu")
    await shot(man, "worklist-manipulator-protocol-arrived")
    await loop.open_from_worklist(man, exam_id)
    await expect(man.locator("#protocol-panel")).to_have_class("card protocol-card alerting")
    await shot(man, "room-manipulator-protocol-alert")
    await loop.acknowledge_protocol(man)
    await expect(rad.locator("#protocol-acked")).to_be_visible()
    await expect(urg.locator("#room-head .badge.status-acquiring")).to_be_visible()

    # Chat: sending then sent, seen by the others.
    await loop.say(urg, "Patiente sous anticoagulants.")
    await expect(loop.bubble(urg, "Patiente sous anticoagulants.")).to_have_attribute(
        "data-state", "sent"
    )
    await expect(loop.bubble(rad, "Patiente sous anticoagulants.")).to_be_visible()

    # The urgentist's tablet loses the network; a message typed meanwhile waits.
    await urg_ctx.set_offline(True)
    await expect(urg.locator("#room-conn")).to_have_text("Hors ligne — reconnexion…")
    await loop.say(urg, "Message écrit hors ligne")
    offline_bubble = loop.bubble(urg, "Message écrit hors ligne")
    await expect(offline_bubble).to_have_attribute("data-state", "sending")
    await loop.say(rad, "Lu, je regarde les images dès leur arrivée.")
    await expect(loop.bubble(rad, "Lu, je regarde les images dès leur arrivée.")).to_have_attribute(
        "data-state", "sent"
    )
    await shot(urg, "room-urgentist-offline-tablet")

    await urg_ctx.set_offline(False)
    await expect(urg.locator("#room-conn")).to_have_text("En ligne")
    await expect(offline_bubble).to_have_attribute("data-state", "sent")
    # What was missed is shown as such, once.
    missed = loop.bubble(urg, "Lu, je regarde les images dès leur arrivée.")
    await expect(missed).to_have_count(1)
    await expect(missed).to_have_class("msg missed")
    await expect(urg.locator("#room-banners")).to_contain_text("Reconnecté : 1 évènement")
    await expect(loop.bubble(rad, "Message écrit hors ligne")).to_have_count(1)
    await shot(urg, "room-urgentist-reconnected-tablet")

    texts = [
        e["body"]["text"] for e in await loop.events(rad, exam_id) if e["kind"] == "chat.message"
    ]
    assert texts.count("Message écrit hors ligne") == 1
    assert texts.count("Patiente sous anticoagulants.") == 1

    # English is one click away.
    await urg.select_option("#lang", "en")
    await expect(urg.locator("#room-conn")).to_have_text("Online")
    await expect(urg.locator("#chat-title")).to_have_text("Conversation")
    await shot(urg, "room-urgentist-english-tablet")
    await shot(rad, "room-radiologist-desktop")
