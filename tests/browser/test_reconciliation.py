"""The room tells each uploaded file what became of it, and the reconciliation
view lets the site's radiographer file what was kept aside (docs/dicomweb.md
"Filing and reconciliation"), in Chromium."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import expect

from server.testing import LiveServer
from tests.browser import loop
from tests.browser.conftest import DESKTOP
from tests.browser.test_images_report import enter, exam_in_acquisition
from tests.helpers import dicom_patient


async def test_kept_aside_in_the_room_then_filed_from_the_queue(
    live_server: LiveServer, accounts, client_for, new_context, shot, js_errors, tmp_path: Path
) -> None:
    base = live_server.url
    man = js_errors.watch(
        await loop.login(await new_context(DESKTOP), base, "man_a"), "manipulator"
    )
    exam = await exam_in_acquisition(client_for)
    await enter(man, base, exam["id"])
    # Two slices of another patient, sent from this exam's room.
    other = {**dicom_patient(exam), "PatientName": "MARTIN^Jean", "PatientID": "IPP-MARTIN"}
    files = loop.make_ct_series(
        tmp_path / "ct", exam["study_instance_uid"], exam["accession_number"], 2, patient=other
    )
    await man.set_input_files("#upload-files", [str(f) for f in files])
    status = man.locator("#upload-status")
    await expect(status).to_contain_text("0 image(s) classée(s) dans cet examen, 2 mise(s) de côté")
    lines = man.locator("#upload-lines li.upload-aside")
    await expect(lines).to_have_count(2)
    await expect(lines.first).to_contain_text("son patient diffère du patient de l'examen")
    await shot(man, "room-upload-kept-aside")

    await man.click("#nav-reconciliation")
    item = man.locator("#reconciliation-list li.reconciliation-item")
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("MARTIN Jean")
    await expect(item.locator("select")).to_have_value(exam["id"])  # the suggested exam
    await shot(man, "reconciliation-view")
    await item.get_by_role("button", name="Classer").click()
    await expect(man.locator("#reconciliation-empty")).to_be_visible()
    await expect(item).to_have_count(0)
