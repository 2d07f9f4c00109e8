"""The stroke alert in Chromium (docs/stroke.md): the urgentist raises it from the
request form, it jumps a full worklist and the radiologist's browser rings (sound,
system notification with the permission granted, banner) again and again until the
alert is accepted; the room shows the clock from onset and preselects the protocol."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.async_api import expect

from server.testing import LiveServer
from tests.browser import loop
from tests.browser.conftest import DESKTOP
from tests.helpers import exam_payload

# How long the alarm waits before it rings again (frontend/strokealarm.js).
RING_MS = int(
    re.search(
        r"export const RING_MS = (\d+);",
        (Path(__file__).parents[2] / "frontend" / "strokealarm.js").read_text(),
    ).group(1)  # type: ignore[union-attr]
)

# Every `Notification` the page creates is recorded, then shown by the browser as usual.
SPY = """
(() => {
  const Real = window.Notification;
  if (!Real) return;
  window.__notified = [];
  window.Notification = class extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notified.push({ title, tag: options && options.tag });
    }
  };
})();
"""


async def test_a_stroke_alert_jumps_the_worklist_and_rings_until_accepted(
    live_server: LiveServer, accounts, client_for, new_context, shot, js_errors
) -> None:
    base = live_server.url
    urg_api = await client_for("urg_a")
    for i in range(14):  # a full worklist of ordinary emergencies, newer than nothing
        body = exam_payload(clinical_question=f"Douleur thoracique {i}")
        assert (await urg_api.post("/api/exams", json=body)).status_code == 201

    context = await new_context(DESKTOP)
    await context.grant_permissions(["notifications"], origin=base)
    await context.add_init_script(SPY)
    # The radiologist's page runs on a clock the test moves: it installs fake timers
    # that keep time with the real one until told to jump (Playwright's Clock).
    await context.clock.install()
    rad = js_errors.watch(await loop.login(context, base, "rad"), "radiologist")
    assert await rad.evaluate("Notification.permission") == "granted"
    await expect(rad.locator("#stroke-alarm")).to_be_hidden()

    urg = js_errors.watch(await loop.login(await new_context(DESKTOP), base, "urg_a"), "urgentist")
    await urg.click("#new-request")
    await urg.fill("#patient_id", "IPP-AVC-1")
    await urg.fill("#patient_name", "Martin Paul")
    await urg.fill("#birth_date", "1951-07-14")
    await urg.select_option("#sex", "M")
    await urg.check("#stroke-alert")  # sets emergency, CT, head, and onset now
    await expect(urg.locator("#urgency")).to_have_value("emergency")
    await urg.select_option("#stroke-kind", "last_seen_well")
    onset = await urg.evaluate(
        "new Date(Date.now() - 50 * 60000 - new Date().getTimezoneOffset() * 60000)"
        ".toISOString().slice(0, 16)"
    )
    await urg.fill("#stroke_onset", onset)
    await urg.fill("#clinical_question", "Hémiplégie droite et aphasie au réveil")
    await urg.check("#consent")
    await shot(urg, "stroke-request-form")
    await urg.click("#request-submit")
    await expect(urg.locator("#stroke-clock")).to_contain_text("thrombolyse (4 h 30)")
    await expect(urg.locator("#stroke-clock")).to_contain_text(
        "depuis la dernière fois vu sans symptôme : 0 h 5"
    )
    exam_id = urg.url.rsplit("/", 1)[-1]

    # The radiologist's browser: first row, banner, sound, notification, then again.
    first = rad.locator("#worklist tbody tr").first
    await expect(first).to_have_attribute("data-id", exam_id)
    await expect(first.locator(".badge-stroke")).to_be_visible()
    alarm = rad.locator("#stroke-alarm")
    await expect(alarm).to_be_visible()
    await expect(alarm).to_contain_text("MARTIN Paul")
    await expect(alarm).to_have_attribute("data-notified", "true")
    await expect(alarm).to_have_attribute("data-rings", "1")  # rung once, not yet again
    await rad.clock.run_for(RING_MS)  # a ring period later, on the page's clock
    await expect(alarm).to_have_attribute("data-rings", "2")  # rung again
    notified = await rad.evaluate("window.__notified")
    assert {n["tag"] for n in notified} == {f"stroke-{exam_id}"} and len(notified) >= 2
    await shot(rad, "stroke-alarm-worklist")

    await first.get_by_role("link").click()
    await expect(rad.locator("#room-conn")).to_have_text("En ligne")
    await expect(rad.locator("#stroke-clock")).to_be_visible()
    await rad.click("#accept-exam")
    await expect(rad.locator("#room-head .badge.status-accepted")).to_be_visible()
    await expect(alarm).to_be_hidden()  # accepted: the alarm stops
    # Onset unknown: the perfusion protocol is preselected for the radiologist.
    await expect(rad.locator("#protocol-pick")).to_have_value("ct-head-stroke-perfusion")
    await shot(rad, "stroke-room-clock")


async def test_the_coordinator_sees_the_month_s_stroke_figures(
    live_server: LiveServer, accounts, client_for, new_context, js_errors
) -> None:
    urg_api = await client_for("urg_a")
    onset = datetime.now(UTC) - timedelta(minutes=45)
    body = exam_payload(stroke={"onset_at": onset.isoformat(), "onset_kind": "witnessed"})
    assert (await urg_api.post("/api/exams", json=body)).status_code == 201
    coord = js_errors.watch(
        await loop.login(await new_context(DESKTOP), live_server.url, "coord"), "coordinator"
    )
    await coord.click(".stroke-stats-card summary")
    row = coord.locator("#stroke-stats tbody tr").first
    await expect(row).to_contain_text("HOPA")
    await expect(row.locator("td").first).to_have_text("1")
    await expect(row).to_contain_text("45 min / 45 min")
