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
from tests.helpers import PASSWORD, exam_payload
from tests.reports.helpers import exam_images_complete
from tests.reports.test_stroke_report import pdf_text

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


async def test_the_structured_stroke_form_scores_aspects_writes_the_text_and_signs(
    live_server: LiveServer, client_for, new_context, js_errors
) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    onset = datetime.now(UTC) - timedelta(minutes=70)
    alert = {"onset_at": onset.isoformat(), "onset_kind": "witnessed"}
    exam = await exam_images_complete(urg, rad, man, stroke=alert)
    base = f"/api/exams/{exam['id']}"
    page = js_errors.watch(
        await loop.login(await new_context(DESKTOP), live_server.url, "rad"), "radiologist"
    )
    await page.goto(f"{live_server.url}/#/exam/{exam['id']}")
    # Preselected for the alert, on the stroke template's text.
    form = page.locator("#stroke-form")
    await expect(form).to_be_visible()
    await expect(page.locator("#stroke-form-on")).to_be_checked()
    score = page.locator("#stroke-aspects-score")
    await expect(score).to_have_text("ASPECTS 10/10")
    for region in ("I", "M1", "M2"):
        await page.check(f"#stroke-aspects-{region}")
    await expect(score).to_have_text("ASPECTS 7/10")
    await page.uncheck("#stroke-aspects-M2")
    await expect(score).to_have_text("ASPECTS 8/10")
    await page.select_option("#stroke-side", "left")
    await page.check("#stroke-hyperdense")
    await page.check("#stroke-occlusion-m1")
    await page.select_option("#stroke-collaterals", "intermediate")
    await page.fill("#stroke-core", "15")
    await page.fill("#stroke-penumbra", "45")
    await page.locator("#stroke-penumbra").blur()
    # The findings and conclusion not typed are written from the form, shown back.
    findings = page.locator("#report-findings")
    await expect(findings).to_have_value(re.compile("Score ASPECTS gauche : 8/10"))
    await expect(findings).to_have_value(re.compile("cœur de l'infarctus 15 mL, pénombre 45 mL"))
    await expect(page.locator("#report-conclusion")).to_have_value(
        "Pas de saignement. Occlusion segment M1 de l'artère cérébrale moyenne gauche ; "
        "ASPECTS 8/10 ; cœur 15 mL / pénombre 45 mL."
    )
    await page.fill("#report-dose", "PDL : 900 mGy.cm ; CTDIvol : 50 mGy")
    await expect(page.locator("#report-save-state")).to_contain_text("Brouillon enregistré")
    await page.click("#report-sign")
    await page.fill("#sign-password", PASSWORD)
    await page.check("#sign-review")  # the author asks for a second reading
    await page.click("#sign-confirm")
    await expect(page.locator("#room-head .badge.status-reported")).to_be_visible()

    report = (await rad.get(f"{base}/report")).json()
    reviews = (await (await client_for("rad2")).get("/api/reviews")).json()["reviews"]
    assert [(r["exam_id"], r["reason"]) for r in reviews] == [(exam["id"], "requested")]
    assert report["stroke"]["aspects_regions"] == ["I", "M1"]
    assert report["stroke"]["perfusion"] == {"core_ml": 15.0, "penumbra_ml": 45.0}
    text = pdf_text((await urg.get(f"{base}/report.pdf")).content)
    assert "Score ASPECTS gauche : 8/10" in text
    assert "ALERTE AVC - d\xe9lais de la fili\xe8re" in text
    for label in ("D\xe9but des sympt\xf4mes", "Demande", "Prise en charge par le radiologue",
                  "Premi\xe8re image", "Compte rendu sign\xe9"):  # fmt: skip
        assert label in text, label
