"""A call joined from the browser (docs/calls.md): Chromium's fake microphone through the
server's relay to an aiortc participant.

The urgentist, on the ER tablet, opens the exam room and clicks "Appeler" in the
room's call card (frontend/call.js); Chromium answers getUserMedia with its
synthetic beep (``--use-fake-device-for-media-stream``) without asking
(``--use-fake-ui-for-media-stream``). The radiologist joins the same call as code
(server/calls/client.py, as tests/calls do) and must receive the browser's audio;
the browser's mute reaches everyone's ``call.state`` and its hang-up leaves no
peer behind on the server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from server.calls.client import CallClient
from server.core.config import Settings
from server.testing import LiveServer
from tests.browser import loop
from tests.browser.conftest import ARGS, TABLET
from tests.calls.conftest import calls_of
from tests.calls.test_quality import PausableTone
from tests.helpers import exam_payload, login

# Chromium's synthetic devices, granted without a prompt. Loopback candidates are
# allowed (Chromium drops them by default) and host candidates are real addresses,
# not mDNS names: the server offers 127.0.0.1 only, and aioice resolves no mDNS here.
MEDIA_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    # As in tests/calls: ICE on loopback only, no STUN server anywhere. Quality
    # indicators often, and a silent voice flagged soon, so the test stays short.
    return make_settings(
        call_host_addresses=("127.0.0.1",), call_quality_interval_s=0.5, call_no_media_s=1.5
    )


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=ARGS + MEDIA_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def radiologist(
    live_server: LiveServer,
) -> AsyncIterator[Callable[[str], Awaitable[CallClient]]]:
    """``await radiologist(exam_id)``: the radiologist's room connection, as code."""
    clients: list[CallClient] = []

    async def make(exam_id: str) -> CallClient:
        async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as anon:
            token = await login(anon, "rad")
        client = CallClient(live_server.ws_url, exam_id, token)
        client.tone = PausableTone()  # type: ignore[attr-defined]
        clients.append(client)
        return await client.connect()

    yield make
    for client in clients:
        await client.close()


def participants(state: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The call's members by role, from a ``call.state`` frame."""
    return {p["role"]: p for p in (state or {}).get("participants", [])}


async def server_call(page: Page, exam_id: str) -> dict[str, dict[str, Any]]:
    """``GET /api/exams/{id}/call`` with the browser's own session."""
    state = await page.evaluate(
        "async (id) => (await fetch(`/api/exams/${id}/call`)).json()", exam_id
    )
    return participants(state)


async def test_browser_joins_mutes_and_hangs_up(
    live_server: LiveServer, client_for, new_context, shot, js_errors, radiologist
) -> None:
    base = live_server.url
    urg_api = await client_for("urg_a")
    exam = (await urg_api.post("/api/exams", json=exam_payload())).json()
    exam_id = exam["id"]

    context = await new_context(TABLET)
    await context.grant_permissions(["microphone", "camera"], origin=base)
    page = js_errors.watch(await loop.login(context, base, "urg_a"), "urgentist")
    await page.goto(f"{base}/#/exam/{exam_id}")
    await expect(page.locator("#room-conn")).to_have_text("En ligne")
    controls = page.locator(".call-card .call-controls")
    await expect(controls.locator(".call-status")).to_have_text("Pas d’appel en cours")
    await shot(page, "room-before-call")

    await controls.get_by_role("button", name="Appeler").click()
    await expect(controls.get_by_role("button", name="Raccrocher")).to_be_visible()
    await expect(controls.locator(".call-status")).to_have_text("1 personne en appel")
    in_call = await server_call(page, exam_id)
    assert list(in_call) == ["urgentist"]
    assert in_call["urgentist"]["muted"] is False
    assert calls_of(live_server).peer_count == 1
    urg_id = in_call["urgentist"]["user"]["id"]

    # The radiologist joins as code and hears the browser's fake microphone.
    rad = await radiologist(exam_id)
    await rad.join(audio=rad.tone)
    await rad.wait_for(lambda c: set(participants(c.state)) == {"urgentist", "radiologist"})
    assert calls_of(live_server).peer_count == 2
    await rad.wait_for(lambda c: c.received[(urg_id, "audio")] >= 25)
    # ...and the browser plays the radiologist's voice, labelled with its sender.
    await expect(controls.locator(".call-status")).to_have_text("2 personnes en appel")
    await expect(controls.locator('.call-media audio[title="RAD"]')).to_have_count(1)
    # A remote track stays muted until its first RTP packets arrive.
    await page.wait_for_function(
        """() => {
            const el = document.querySelector('.call-media audio[title="RAD"]');
            const track = el && el.srcObject.getAudioTracks()[0];
            return track && track.readyState === "live" && !track.muted;
        }""",
        timeout=15_000,
    )
    await shot(page, "room-in-call")

    # Quality indicators (call.quality): a bar per participant, the radiologist's
    # steady tone rings as speaking; when it stops, the browser says so in French.
    rad_id = participants(rad.state)["radiologist"]["user"]["id"]
    quality = controls.locator(".call-quality")
    for user_id in (urg_id, rad_id):
        await expect(quality.locator(f'li[data-user="{user_id}"] meter.call-bar')).to_have_count(1)
    rad_row = quality.locator(f'li[data-user="{rad_id}"]')
    await expect(rad_row).to_have_class("speaking")
    await expect(rad_row.locator(".call-no-sound")).to_have_count(0)
    assert int(await rad_row.locator("meter").get_attribute("value") or 0) >= 2
    rad.tone.flowing.clear()
    await expect(rad_row.locator(".call-no-sound")).to_have_text("le son ne passe pas")
    await expect(rad_row).not_to_have_class("speaking")
    await shot(page, "room-no-sound")
    rad.tone.flowing.set()
    await expect(rad_row.locator(".call-no-sound")).to_have_count(0)

    await controls.get_by_role("button", name="Couper le micro").click()
    unmute = controls.get_by_role("button", name="Réactiver le micro")
    await expect(unmute).to_have_attribute("aria-pressed", "true")
    await rad.wait_for(lambda c: participants(c.state)["urgentist"]["muted"] is True)
    assert (await server_call(page, exam_id))["urgentist"]["muted"] is True
    await shot(page, "room-muted")

    await controls.get_by_role("button", name="Raccrocher").click()
    await rad.wait_for(lambda c: set(participants(c.state)) == {"radiologist"})
    await expect(controls.get_by_role("button", name="Rejoindre l’appel")).to_be_visible()
    await expect(controls.locator(".call-status")).to_have_text("1 personne en appel")
    await expect(controls.locator(".call-media > *")).to_have_count(0)
    assert list(await server_call(page, exam_id)) == ["radiologist"]
    assert calls_of(live_server).peer_count == 1
    await shot(page, "room-hung-up")

    await rad.hangup()
    await expect(controls.locator(".call-status")).to_have_text("Pas d’appel en cours")
    assert await server_call(page, exam_id) == {}
    assert calls_of(live_server).peer_count == 0
    assert calls_of(live_server).calls == {}
