"""The coordinator's monthly site report in Chromium (docs/accountability.md): the
page shows the month's tables and the server's charts (matplotlib PNGs) over a
seeded month, with a link to the PDF."""

from __future__ import annotations

from playwright.async_api import expect

from server.accountability.charts import CHARTS
from server.core.config import Settings
from server.testing import LiveServer
from tests.accountability.test_monthly import MONTH, _seed
from tests.browser import loop
from tests.browser.conftest import DESKTOP


async def test_the_coordinator_sees_the_monthly_report_with_its_charts(
    live_server: LiveServer, accounts, settings: Settings, new_context, js_errors, shot
) -> None:
    await _seed(settings)
    coord = js_errors.watch(
        await loop.login(await new_context(DESKTOP), live_server.url, "coord"), "coordinator"
    )
    await coord.click("#nav-monthly")
    await expect(coord.locator("#monthly-form")).to_be_visible()
    await coord.fill("#monthly-establishment", "hopa")
    await coord.fill("#monthly-month", MONTH)
    await coord.click("#monthly-form button[type=submit]")
    await expect(coord.locator("#monthly-summary")).to_contain_text("examens")
    await expect(coord.locator("#monthly-stages tbody tr")).to_have_count(5)
    await expect(
        coord.locator('#monthly-deadlines tr[data-deadline="report"] td').nth(1)
    ).not_to_have_text("0")
    for name in CHARTS:
        chart = coord.locator(f"#chart-{name}")
        await expect(chart).to_be_visible()
        # Loaded and drawn: the browser decoded a real image of a real size.
        await coord.wait_for_function(
            "id => { const i = document.getElementById(id);"
            " return i.complete && i.naturalWidth > 300; }",
            arg=f"chart-{name}",
        )
    href = await coord.locator("#monthly-pdf").get_attribute("href")
    assert href is not None and href.startswith("/api/stats/monthly.pdf?")
    resp = await coord.request.get(live_server.url + href)
    assert resp.status == 200 and resp.headers["content-type"] == "application/pdf"
    await coord.locator("#chart-hour").scroll_into_view_if_needed()
    await coord.evaluate("window.scrollTo(0, 0)")
    await shot(coord, "monthly-report")
