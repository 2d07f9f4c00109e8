"""The steps of the clinical loop as the three users perform them in their browsers.

Shared by the browser tests so that each test reads as the story it checks.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import BrowserContext, Page, expect

from tests.helpers import PASSWORD

PATIENT_NAME = "Dupont Jeanne"
HELICAL = re.compile("Acquisition hélicoïdale")
SHOWN_NAME = "DUPONT Jeanne"
QUESTION = "Déficit brachio-facial gauche depuis 1 h 30 : AVC ischémique ?"
FINDINGS = "Pas d'hémorragie intracrânienne. Hypodensité insulaire droite récente."
CONCLUSION = "AVC ischémique sylvien droit récent, sans transformation hémorragique."


async def login(context: BrowserContext, base_url: str, username: str) -> Page:
    page = await context.new_page()
    await page.goto(base_url + "/")
    await page.fill("#login-username", username)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await expect(page.locator("#worklist")).to_be_visible()
    return page


async def request_exam(page: Page, shot) -> str:
    """The urgentist fills the request form (after a first failed submit) and lands in the room."""
    await page.click("#new-request")
    await expect(page.locator("#request-form")).to_be_visible()
    await page.click("#request-submit")
    await expect(page.locator("#form-summary")).to_contain_text("champ(s) à corriger")
    await expect(page.locator('[data-field="consent"] .field-error')).to_have_text(
        "Le consentement du patient est obligatoire."
    )
    await shot(page, "request-form-errors")
    await page.fill("#patient_id", "IPP-000123")
    await page.fill("#patient_name", PATIENT_NAME)
    await page.fill("#birth_date", "1948-03-02")
    await page.select_option("#sex", "F")
    await page.select_option("#modality", "CT")
    await page.select_option("#body_part", "HEAD")
    await page.select_option("#urgency", "emergency")
    await page.fill("#clinical_question", QUESTION)
    await page.fill("#contraindications", "Insuffisance rénale modérée (DFG 45)")
    await page.check("#consent")
    await shot(page, "request-form-filled")
    await page.click("#request-submit")
    await expect(page.locator("#room-patient")).to_contain_text(SHOWN_NAME)
    exam_id = page.url.rsplit("/", 1)[-1]
    await expect(page.locator("#room-conn")).to_have_text("En ligne")
    return exam_id


async def open_from_worklist(page: Page, exam_id: str) -> None:
    row = page.locator(f'tr[data-id="{exam_id}"]')
    await expect(row).to_be_visible()
    await row.get_by_role("link").click()
    await expect(page.locator("#room-conn")).to_have_text("En ligne")


async def accept_and_protocol(page: Page) -> None:
    await page.click("#accept-exam")
    await expect(page.locator("#room-head .badge.status-accepted")).to_be_visible()
    await page.select_option("#protocol-pick", "ct-head-stroke")
    await expect(page.locator("#protocol-textarea")).to_have_value(HELICAL)
    await page.click("#protocol-send")
    await expect(page.locator("#room-head .badge.status-protocoled")).to_be_visible()


async def acknowledge_protocol(page: Page) -> None:
    await page.click("#protocol-ack")
    await expect(page.locator("#protocol-acked")).to_be_visible()
    await expect(page.locator("#room-head .badge.status-acquiring")).to_be_visible()


async def say(page: Page, text: str) -> None:
    await page.fill("#chat-input", text)
    await page.press("#chat-input", "Enter")


def bubble(page: Page, text: str):
    return page.locator("#chat-log li.msg").filter(has=page.get_by_text(text, exact=True))


async def events(page: Page, exam_id: str) -> list[dict]:
    """The exam's persisted events, read with the page's own session."""
    return await page.evaluate(
        "async (id) => (await (await fetch(`/api/exams/${id}/events`)).json()).events", exam_id
    )


def make_ct_series(
    folder: Path,
    study_uid: str,
    accession: str,
    count: int = 12,
    rle: bool = False,
    patient: dict[str, str] | None = None,
) -> list[Path]:
    """A CT series of real DICOM files for this exam, made from pydicom's CT_small.dcm
    (each slice shifted so that scrolling shows a different image); ``rle`` stores it
    RLE Lossless compressed, which the viewer shows through ``/rendered``."""
    import numpy as np
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import RLELossless, generate_uid

    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series_uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        ds = source.copy()
        ds.StudyInstanceUID = study_uid
        ds.AccessionNumber = accession
        for keyword, value in (patient or {}).items():  # the exam's patient
            setattr(ds, keyword, value)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.SeriesNumber = 2
        ds.SeriesDescription = "Cerveau sans injection"
        ds.ImagePositionPatient = [0, 0, float(i * 5)]
        pixels = np.roll(source.pixel_array, i * 6, axis=0)
        ds.PixelData = pixels.astype(source.pixel_array.dtype).tobytes()
        if rle:
            ds.SeriesNumber = 3
            ds.SeriesDescription = "Cerveau RLE"
            ds.compress(RLELossless, pixels)
        path = folder / f"slice{i + 1:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


async def feature_present(page: Page, path: str) -> bool:
    """Whether a route of a part built on another branch is there yet (401/405, not 404)."""
    status = await page.evaluate("async (p) => (await fetch(p)).status", path)
    return status != 404


async def upload_series(page: Page, files: list[Path]) -> None:
    await page.set_input_files("#upload-files", [str(f) for f in files])
    await expect(page.locator("#upload-status")).to_contain_text(
        f"{len(files)} image(s) classée(s) dans cet examen, 0 mise(s) de côté pour vérification, "
        "0 refusée(s)",
        timeout=20_000,
    )
    await expect(page.locator("#upload-progress")).to_have_attribute("value", "100")


async def scroll_slices(page: Page, steps: int) -> None:
    canvas = page.locator("#viewer-canvas")
    await canvas.focus()
    for _ in range(steps):
        await page.keyboard.press("ArrowDown")
    await expect(canvas).to_have_attribute("data-slice", str(steps + 1))


async def write_and_sign(page: Page) -> None:
    await page.fill("#report-findings", FINDINGS)
    await page.fill(
        "#report-conclusion",
        CONCLUSION,
    )
    await page.check("#report-critical")
    dose = page.locator("#report-dose")
    if await dose.count() and "[…]" in await dose.input_value():
        # The template's dose line still holds its placeholders: signing is refused,
        # naming the field, until the radiologist types the values.
        await page.click("#report-sign")
        await expect(page.locator("#report-error")).to_contain_text("Dose délivrée")
        await expect(dose).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#sign-dialog")).to_have_count(0)
        await dose.fill("PDL : 850 mGy.cm ; CTDIvol : 55 mGy")
    await expect(page.locator("#report-save-state")).to_contain_text("Brouillon enregistré")
    await page.click("#report-sign")
    await expect(page.locator("#report-error")).to_have_text("")
    await page.fill("#sign-password", "not the password")
    await page.click("#sign-confirm")
    await expect(page.locator("#sign-error")).to_have_text("Mot de passe incorrect.")
    await page.fill("#sign-password", PASSWORD)
    await page.click("#sign-confirm")
    await expect(page.locator("#room-head .badge.status-reported")).to_be_visible()
