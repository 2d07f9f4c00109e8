"""A prior fetched from the hospital's PACS (a real Orthanc started by this module,
docs/priors.md) in the room: listed as from the hospital with its progress, opened
beside today's series with linked scrolling; a PACS that is down says so in the room."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from server.core.config import Settings
from server.testing import LiveServer, free_port
from tests.browser import loop
from tests.browser.conftest import DESKTOP
from tests.browser.test_viewer import exam_with_series
from tests.priors.helpers import configure
from tests.priors.orthanc import (
    Orthanc,
    ct_study,
    orthanc_fixture,  # noqa: F401  (the module's PACS, ``orthanc``)
    patient_attrs,
)

PATIENT = {"id": "IPP-000123", "name": "DUPONT^Jeanne", "birth_date": "1948-03-02", "sex": "F"}


async def open_room(page: Page, base: str, exam_id: str) -> None:
    """The viewer tests' ``open_room`` with waits for a loaded machine (the shared
    one runs several suites at once)."""
    await page.goto(f"{base}/#/exam/{exam_id}")
    await expect(page.locator("#room-conn")).to_have_text("En ligne", timeout=30_000)
    await expect(page.locator("#viewer-canvas")).to_have_attribute(
        "data-slice", "1", timeout=30_000
    )


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The live server's job loop looks for due exams every 50 ms."""
    return make_settings(priors_poll_s=0.05)


async def test_hospital_prior_retrieved_and_compared_side_by_side(
    live_server: LiveServer,
    accounts,
    settings: Settings,
    client_for,
    new_context,
    shot,
    js_errors,
    orthanc: Orthanc,
    tmp_path: Path,
) -> None:
    base = live_server.url
    day = f"{date.today() - timedelta(days=400):%Y%m%d}"
    prior, files = ct_study(
        tmp_path / "prior",
        patient_attrs(PATIENT, StudyDate=day, StudyDescription="TDM CEREBRALE"),
        count=20,
    )
    orthanc.load(files)
    await configure(settings, "HOPA", orthanc.dicom_port)
    # Accepted (the job starts), protocoled, today's 20 slices stored.
    exam, _ = await exam_with_series(client_for, 20, patient=PATIENT)
    rad = js_errors.watch(await loop.login(await new_context(DESKTOP), base, "rad"), "radiologist")
    await open_room(rad, base, exam["id"])
    entry = rad.locator(f"#priors li.prior-hospital[data-study='{prior}']")
    # Waits long enough for a loaded machine: the job runs beside the test, not in it.
    await expect(entry).to_contain_text("PACS de l'hôpital", timeout=30_000)
    await expect(entry.locator(".prior-state")).to_have_attribute(
        "data-state", "done", timeout=30_000
    )
    await expect(entry.locator(".prior-state")).to_contain_text("Récupéré (20 images)")
    await entry.locator("button.prior-open").click()
    second = rad.locator("#viewer-canvas-1")
    await expect(second).to_have_attribute("data-slice", "1", timeout=30_000)
    await expect(rad.locator(".viewer-pane").nth(1).locator(".ov-banner")).to_contain_text(
        "Antérieur du"
    )
    # Scrolling today's series moves the prior with it.
    await rad.locator("#viewer-canvas").focus()
    for _ in range(5):
        await rad.keyboard.press("ArrowDown")
    await expect(rad.locator("#viewer-canvas")).to_have_attribute("data-slice", "6")
    await expect(second).not_to_have_attribute("data-slice", "1")
    await shot(rad, "hospital-prior-side-by-side")


async def test_a_pacs_that_is_down_says_so_in_the_room(
    live_server: LiveServer,
    accounts,
    settings: Settings,
    client_for,
    new_context,
    shot,
    js_errors,
) -> None:
    base = live_server.url
    await configure(settings, "HOPA", free_port(), timeout_s=5)
    exam, _ = await exam_with_series(client_for, 4, patient=PATIENT)
    rad = js_errors.watch(await loop.login(await new_context(DESKTOP), base, "rad"), "radiologist")
    await open_room(rad, base, exam["id"])
    state = rad.locator("#priors-pacs")
    await expect(state).to_have_attribute("data-reason", "unreachable", timeout=30_000)
    await expect(state).to_have_text("PACS de l'hôpital injoignable : le PACS ne répond pas")
    await expect(state).to_have_attribute("title", re.compile(r"does not answer"))
    await shot(rad, "hospital-pacs-down")
