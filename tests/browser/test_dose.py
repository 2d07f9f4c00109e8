"""The scanner's dose in the room's report editor (docs/reports.md "The dose from the
scanner"): the dose line written from the Radiation Dose SR, the reference-level flag,
and a draft's placeholder line replaced and saved by the editor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.async_api import expect

from server.core.config import Settings
from server.testing import LiveServer
from tests.browser import loop
from tests.browser.conftest import DESKTOP
from tests.helpers import PASSWORD
from tests.reports.helpers import DRAFT, exam_images_complete, ok
from tests.reports.test_dose import LEVELS, ct_rdsr, settings_with_levels, stow

LINE = "PDL : 1400 mGy.cm ; CTDIvol : 72,5 mGy (Head)"


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], request: pytest.FixtureRequest, tmp_path: Path
) -> Settings:
    return settings_with_levels(make_settings, request, tmp_path)


@pytest.mark.parametrize("settings", [LEVELS], indirect=True)
async def test_the_editor_shows_and_saves_the_scanner_dose(
    live_server: LiveServer, client_for, new_context, js_errors
) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await exam_images_complete(urg, rad, man)
    base = f"/api/exams/{exam['id']}"
    await stow(man, ct_rdsr(exam, 1400, [("Head", 72.5, 1400)]))
    # A draft saved before the dose SR came, with the template's placeholder.
    await ok(await rad.put(f"{base}/report", json={**DRAFT, "dose": "PDL : […] mGy.cm"}))

    page = js_errors.watch(
        await loop.login(await new_context(DESKTOP), live_server.url, "rad"), "radiologist"
    )
    await page.goto(f"{live_server.url}/#/exam/{exam['id']}")
    await expect(page.locator("#report-dose")).to_have_value(LINE)
    note = page.locator("#report-dose-note")
    await expect(note).to_contain_text("SUPÉRIEURE au niveau de référence diagnostique")
    await expect(note).to_contain_text("Test levels of the test suite")
    await expect(page.locator("#report-save-state")).to_contain_text("Brouillon enregistré")
    # The editor saved the line: the stored draft holds no placeholder and signs.
    assert (await ok(await rad.get(f"{base}/report")))["dose_filled"] is False
    await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))
