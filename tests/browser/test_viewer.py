"""The reading viewer (Cornerstone3D) in Chromium, on synthetic CT series of known
geometry and densities built here with pydicom and stored through STOW-RS.

- banner and orientation markers of an axial CT;
- a density probe and a distance give the values the geometry and the pixels say;
- the MPR shows a coronal image (markers S/I and D/G);
- a prior exam of the same patient is listed in the room and opened beside the
  current one, scrolling linked;
- the phone layout (390 px) has no horizontal scroll.
"""

from __future__ import annotations

import re
from io import BytesIO

import httpx
import numpy as np
import pydicom
from playwright.async_api import Locator, Page, expect
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from dicomweb.samples import multipart, split_multipart
from server.testing import LiveServer
from tests.browser import loop
from tests.browser.conftest import DESKTOP
from tests.helpers import dicom_patient, exam_payload, login

PHONE = {"width": 390, "height": 844}
ROWS = COLS = 128
SPACING = 0.5  # mm per pixel
THICKNESS = 2.0  # mm between slices
AIR, TISSUE, BONE = -1000, 40, 1000
# A checkerboard of LOW and HIGH HU in the tissue band (rows and columns of CHECKS), for
# the elliptical ROI: its mean and standard deviation are known from the pixels.
LOW, HIGH = 0, 100
CHECKS = (slice(12, 52), slice(36, 92))


def synthetic_ct(
    exam: dict, count: int = 40, description: str = "Crâne synthétique", j2k: bool = False
) -> list[bytes]:
    """Axial slices (ImageOrientationPatient 1\\0\\0\\0\\1\\0): air on the patient's
    right (image left), 40 HU in the middle, 1000 HU on the left (image right);
    stored values are HU + 1024 (RescaleIntercept -1024)."""
    series_uid = generate_uid()
    hu = np.full((ROWS, COLS), TISSUE, dtype=np.int16)
    hu[:, : COLS // 4] = AIR
    hu[:, 3 * COLS // 4 :] = BONE
    rows, cols = np.mgrid[CHECKS]
    hu[CHECKS] = np.where((rows + cols) % 2 == 0, LOW, HIGH)
    stored = (hu + 1024).astype(np.uint16)
    parts = []
    for i in range(count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        for keyword, value in dicom_patient(exam).items():
            setattr(ds, keyword, value)
        ds.StudyInstanceUID = exam["study_instance_uid"]
        ds.AccessionNumber = exam["accession_number"]
        ds.StudyDate = "20261206"
        ds.StudyDescription = "TDM CEREBRALE"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 4
        ds.SeriesDescription = description
        ds.Modality = "CT"
        ds.FrameOfReferenceUID = series_uid + ".1"
        ds.InstanceNumber = i + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-32.0, -32.0, float(i * THICKNESS)]
        ds.SliceLocation = float(i * THICKNESS)
        ds.SliceThickness = THICKNESS
        ds.PixelSpacing = [SPACING, SPACING]
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = stored.tobytes()
        if j2k:  # JPEG 2000 lossless, as hospitals' PACS often send (pylibjpeg-openjpeg)
            ds.compress(JPEG2000Lossless, stored, encoding_plugin="pylibjpeg")
        from io import BytesIO

        buf = BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        parts.append(buf.getvalue())
    return parts


async def exam_with_series(
    client_for, count: int = 40, radiologist: str = "rad", j2k: bool = False, **payload
) -> tuple[dict, list[bytes]]:
    urg, rad, man = (
        await client_for("urg_a"),
        await client_for(radiologist),
        await client_for("man_a"),
    )
    exam = (await urg.post("/api/exams", json=exam_payload(**payload))).json()
    assert (await rad.post(f"/api/exams/{exam['id']}/accept")).status_code == 200
    body = {"protocol_id": "ct-head-stroke", "text": "Scanner cérébral sans injection."}
    assert (await rad.post(f"/api/exams/{exam['id']}/protocol", json=body)).status_code == 200
    assert (await man.post(f"/api/exams/{exam['id']}/protocol/ack")).status_code == 200
    parts = synthetic_ct(exam, count, j2k=j2k)
    content, ctype = multipart(parts)
    resp = await man.post("/dicomweb/studies", content=content, headers={"Content-Type": ctype})
    assert resp.status_code == 200, resp.text
    return exam, parts


async def expect_markers(pane: Locator, left: str, right: str, top: str, bottom: str) -> None:
    """The orientation letters on the four sides of a viewer pane."""
    for side, letter in (("left", left), ("right", right), ("top", top), ("bottom", bottom)):
        await expect(pane.locator(f".ori-{side}")).to_have_text(letter)


async def open_room(page: Page, base: str, exam_id: str) -> None:
    await page.goto(f"{base}/#/exam/{exam_id}")
    await expect(page.locator("#room-conn")).to_have_text("En ligne")
    await expect(page.locator("#viewer-canvas")).to_have_attribute("data-slice", "1")


async def image_point(
    page: Page, col: float, row: float, pane: str = "#viewer-canvas"
) -> tuple[float, float]:
    """The page coordinates of the centre of pixel (col, row) of the displayed image."""
    locator = page.locator(pane)
    await locator.scroll_into_view_if_needed()
    await expect(locator).to_have_attribute("data-image-box", re.compile(r"."))
    x, y, w, h = (
        float(v) for v in (await locator.get_attribute("data-image-box") or "").split(",")
    )
    box = await locator.bounding_box()
    assert box is not None
    return box["x"] + x + (col + 0.5) * w / COLS, box["y"] + y + (row + 0.5) * h / ROWS


async def test_banner_markers_probe_and_length(
    live_server: LiveServer, accounts, client_for, new_context, shot, js_errors
) -> None:
    base = live_server.url
    exam, _ = await exam_with_series(client_for)
    rad = js_errors.watch(await loop.login(await new_context(DESKTOP), base, "rad"), "radiologist")
    await open_room(rad, base, exam["id"])
    pane = rad.locator(".viewer-pane").first
    # Banner: patient, study, series; an axial slice has R/L (D/G in French) on the
    # sides and A/P top and bottom (ImageOrientationPatient 1\0\0\0\1\0).
    patient = dicom_patient(exam)["PatientName"].split("^")[0]
    await expect(pane.locator(".ov-banner")).to_contain_text(patient)
    await expect(pane.locator(".ov-banner")).to_contain_text("TDM CEREBRALE")
    await expect(pane.locator(".ov-banner")).to_contain_text("Crâne synthétique")
    await expect_markers(pane, "D", "G", "A", "P")
    await expect(pane.locator(".ov-slice")).to_contain_text("Coupe 1/40")
    await expect(pane.locator(".ov-slice")).to_contain_text("Ép. 2,0 mm")

    # Keys work after a preset button was clicked (the focus is on the button).
    await rad.get_by_role("button", name="Poumon").click()
    await expect(rad.locator("#viewer-canvas")).to_have_attribute("data-window", "-600,1500")
    await rad.keyboard.press("ArrowDown")
    await rad.keyboard.press("ArrowDown")
    await expect(rad.locator("#viewer-canvas")).to_have_attribute("data-slice", "3")
    await expect(pane.locator(".ov-slice")).to_contain_text("Pos. 4,0 mm")
    await rad.keyboard.press("2")
    await expect(rad.locator("#viewer-canvas")).to_have_attribute("data-window", "40,40")

    # Probe in the bone band and in the air band: the HU of the pixels.
    await rad.get_by_role("button", name="Densité (UH)").click()
    x, y = await image_point(rad, 110, 64)
    await rad.mouse.click(x, y, delay=120)
    probe = rad.locator("#viewer-measures li[data-tool=Probe]")
    await expect(probe).to_have_count(1)
    await expect(probe).to_have_attribute("data-value", str(BONE))
    x, y = await image_point(rad, 10, 64)
    await rad.mouse.click(x, y)
    await expect(probe).to_have_count(2)
    await expect(probe.nth(1)).to_have_attribute("data-value", str(AIR))

    # Distance: 80 pixels along a row at 0.5 mm = 40.0 mm.
    await rad.get_by_role("button", name="Distance").click()
    x1, y1 = await image_point(rad, 24, 100)
    x2, y2 = await image_point(rad, 104, 100)
    await rad.mouse.move(x1, y1)
    await rad.mouse.down()
    await rad.mouse.move((x1 + x2) / 2, y1, steps=4)
    await rad.mouse.move(x2, y2, steps=4)
    await rad.mouse.up()
    length = rad.locator("#viewer-measures li[data-tool=Length]")
    await expect(length).to_have_count(1)
    await expect(length).to_contain_text("40,0 mm")
    await shot(rad, "viewer-probe-length")

    # MPR: the coronal viewport shows head/feet (S/I) top and bottom, D/G on the sides.
    await rad.click("#viewer-mode-mpr")
    coronal = rad.locator(".viewer-pane:has([data-orientation=coronal])")
    await expect(coronal.locator(".ov-banner")).to_contain_text("Coronal")
    await expect_markers(coronal, "D", "G", "S", "I")
    await expect(coronal.locator(".ov-slice")).to_contain_text(re.compile(r"Coupe \d+/128"))
    await shot(rad, "viewer-mpr")


async def drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    await page.mouse.move(*start)
    await page.mouse.down()
    await page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=4)
    await page.mouse.move(*end, steps=4)
    await page.mouse.up()


async def test_elliptical_roi_statistics(
    live_server: LiveServer, accounts, client_for, new_context, shot, js_errors
) -> None:
    """An ellipse drawn over the checkerboard (on the third slice, after scrolling)
    shows the mean and standard deviation of its pixels in HU and its area in mm²."""
    base = live_server.url
    exam, _ = await exam_with_series(client_for, 6)
    rad = js_errors.watch(await loop.login(await new_context(DESKTOP), base, "rad"), "radiologist")
    await open_room(rad, base, exam["id"])
    await rad.locator("#viewer-canvas").focus()
    await rad.keyboard.press("ArrowDown")
    await rad.keyboard.press("ArrowDown")
    await expect(rad.locator("#viewer-canvas")).to_have_attribute("data-slice", "3")
    await rad.get_by_role("button", name="ROI ellipse").click()
    # The tool draws from the centre to a corner of the ellipse's bounding box: here the
    # pixel centres (44, 16) to (84, 48), radii of 20 and 16 pixels.
    left, top, right, bottom = 44, 16, 84, 48
    centre = await image_point(rad, (left + right) / 2, (top + bottom) / 2)
    await drag(rad, centre, await image_point(rad, right, bottom))
    roi = rad.locator("#viewer-measures li[data-tool=EllipticalROI]")
    await expect(roi).to_have_count(1)
    # What the pixels inside that ellipse hold, computed here from the series' own values.
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    a, b = (right - left) / 2, (bottom - top) / 2
    cx, cy = (left + right) / 2, (top + bottom) / 2
    inside = ((cols - cx) / a) ** 2 + ((rows - cy) / b) ** 2 <= 1
    values = np.where((rows + cols) % 2 == 0, LOW, HIGH)[inside]
    area = np.pi * a * b * SPACING * SPACING
    # The list follows the drag as it is drawn: wait for the ellipse as released.
    await rad.wait_for_function(
        """([lo, hi]) => {
          const li = document.querySelector('#viewer-measures li[data-tool=EllipticalROI]');
          const area = Number(li?.dataset.area);
          return area > lo && area < hi;
        }""",
        arg=[area * 0.98, area * 1.02],
    )
    mean = float(await roi.get_attribute("data-value") or "nan")
    sd = float(await roi.get_attribute("data-sd") or "nan")
    shown = float(await roi.get_attribute("data-area") or "nan")
    assert abs(mean - values.mean()) < 1, (mean, values.mean())
    assert abs(sd - values.std()) < 0.5, (sd, values.std())
    assert abs(shown - area) / area < 0.02, (shown, area)
    await expect(roi).to_contain_text("HU")
    await expect(roi).to_contain_text("mm²")
    await shot(rad, "viewer-ellipse")


async def test_key_images_and_measurements_saved_into_the_study(
    live_server: LiveServer, accounts, client_for, new_context, shot, js_errors
) -> None:
    """The radiologist marks a key image, draws a distance, saves: the server files a
    KO and a TID 1500 SR into the study (QIDO lists them), the report lists them."""
    base = live_server.url
    exam, parts = await exam_with_series(client_for, 6)
    sops = {pydicom.dcmread(BytesIO(p)).SliceLocation: pydicom.dcmread(BytesIO(p)) for p in parts}
    rad = js_errors.watch(await loop.login(await new_context(DESKTOP), base, "rad"), "radiologist")
    await open_room(rad, base, exam["id"])
    await rad.locator("#viewer-canvas").focus()
    await rad.keyboard.press("ArrowDown")
    await expect(rad.locator("#viewer-canvas")).to_have_attribute("data-slice", "2")
    await rad.keyboard.press("k")
    await expect(rad.locator("#viewer-key")).to_have_attribute("aria-pressed", "true")
    await rad.get_by_role("button", name="Distance").click()
    await drag(rad, await image_point(rad, 24, 100), await image_point(rad, 104, 100))
    await expect(rad.locator("#viewer-measures li[data-tool=Length]")).to_contain_text("40,0 mm")
    await rad.locator("#viewer-save").click()
    await expect(rad.locator("#viewer-save-status")).to_have_attribute(
        "data-saved", "key_images,measurements"
    )
    docs = rad.locator("#report-key-objects li")
    await expect(docs).to_have_count(2)
    await shot(rad, "viewer-key-objects")
    # Each is linked as its DICOM file (WADO-URI), with the page's session.
    href = await docs.first.locator("a").get_attribute("href")
    got = await rad.request.get(f"{base}{href}")
    assert got.status == 200 and (await got.body())[128:132] == b"DICM"

    man = await client_for("man_a")
    study = exam["study_instance_uid"]
    listed = (await man.get(f"/dicomweb/studies/{study}/series")).json()
    by_modality = {s["00080060"]["Value"][0]: s["0020000E"]["Value"][0] for s in listed}
    assert sorted(by_modality) == ["CT", "KO", "SR"]
    key = sops[THICKNESS]  # the second slice (position 2 mm)
    ko = await read_only_instance(man, study, by_modality["KO"])
    refs = [
        r.ReferencedSOPInstanceUID
        for item in ko.ContentSequence
        for r in item.get("ReferencedSOPSequence", [])
    ]
    assert refs == [key.SOPInstanceUID]
    sr = await read_only_instance(man, study, by_modality["SR"])
    lengths = [
        float(i.MeasuredValueSequence[0].NumericValue)
        for group in sr.ContentSequence
        for entry in group.get("ContentSequence", [])
        for i in entry.get("ContentSequence", [])
        if i.ValueType == "NUM" and i.ConceptNameCodeSequence[0].CodeMeaning == "Length"
    ]
    assert len(lengths) == 1 and abs(lengths[0] - 40.0) < 0.2, lengths
    # The distance's points, in image coordinates, on the row drawn.
    scoords = [
        i
        for group in sr.ContentSequence
        for entry in group.get("ContentSequence", [])
        for i in entry.get("ContentSequence", [])
        if i.ValueType == "SCOORD"
    ]
    (line,) = scoords
    xs, ys = line.GraphicData[0::2], line.GraphicData[1::2]
    assert all(abs(y - 100.5) < 0.5 for y in ys), ys
    assert abs(abs(xs[1] - xs[0]) - 80) < 0.5, xs
    image = line.ContentSequence[0] if "ContentSequence" in line else None
    assert image is None or image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == (
        key.SOPInstanceUID
    )


async def read_only_instance(client, study: str, series: str) -> Dataset:
    resp = await client.get(
        f"/dicomweb/studies/{study}/series/{series}",
        headers={"Accept": 'multipart/related; type="application/dicom"'},
    )
    assert resp.status_code == 200, resp.text
    (part,) = split_multipart(resp.content, resp.headers["content-type"])
    return pydicom.dcmread(BytesIO(part))


async def test_open_in_ohif_only_when_configured(
    make_settings, accounts, client_for, new_context, js_errors
) -> None:
    """The "Ouvrir dans OHIF" link: absent without OHIF_URL, present with it, naming
    the study."""
    for ohif in (None, "http://ohif.example/ohif"):
        with LiveServer(make_settings(ohif_url=ohif)) as server:
            base = server.url
            urg = await login_client(base, "urg_a")
            rad_api = await login_client(base, "rad")
            try:
                exam = (await urg.post("/api/exams", json=exam_payload())).json()
                assert (await rad_api.post(f"/api/exams/{exam['id']}/accept")).status_code == 200
            finally:
                await urg.aclose()
                await rad_api.aclose()
            page = await new_context(DESKTOP)
            rad = js_errors.watch(await loop.login(page, base, "rad"), "radiologist")
            await rad.goto(f"{base}/#/exam/{exam['id']}")
            await expect(rad.locator("#room-conn")).to_have_text("En ligne")
            link = rad.locator("#open-ohif")
            if ohif is None:
                await expect(rad.locator("#images-panel h2")).to_be_visible()
                await expect(link).to_have_count(0)
            else:
                study = exam["study_instance_uid"]
                await expect(link).to_have_attribute(
                    "href", f"{ohif}/viewer?StudyInstanceUIDs={study}"
                )
                await expect(link).to_have_text("Ouvrir dans OHIF")


async def login_client(base: str, username: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=10)
    client.headers["Authorization"] = f"Bearer {await login(client, username)}"
    return client


async def test_jpeg2000_series_decoded_in_the_browser(
    live_server: LiveServer, accounts, client_for, new_context, js_errors
) -> None:
    """A JPEG 2000 series is decoded by the loader's WebAssembly decoder in its worker
    (the CSP allows WebAssembly: docs/security.md), and the probe reads its HU."""
    base = live_server.url
    exam, _ = await exam_with_series(client_for, 4, j2k=True)
    rad = js_errors.watch(await loop.login(await new_context(DESKTOP), base, "rad"), "radiologist")
    await open_room(rad, base, exam["id"])
    await rad.get_by_role("button", name="Densité (UH)").click()
    x, y = await image_point(rad, 110, 64)
    await rad.mouse.click(x, y, delay=120)
    probe = rad.locator("#viewer-measures li[data-tool=Probe]")
    await expect(probe).to_have_attribute("data-value", str(BONE))


async def test_prior_side_by_side_with_linked_scrolling(
    live_server: LiveServer, accounts, client_for, new_context, shot, js_errors
) -> None:
    base = live_server.url
    # The patient's earlier exam, read by another radiologist, then today's.
    prior, _ = await exam_with_series(client_for, 20, radiologist="rad2")
    exam, _ = await exam_with_series(client_for, 20)
    rad = js_errors.watch(await loop.login(await new_context(DESKTOP), base, "rad"), "radiologist")
    await open_room(rad, base, exam["id"])
    entry = rad.locator(f"#priors li.prior[data-exam='{prior['id']}']")
    await expect(entry).to_contain_text("Scanner (CT)")
    await entry.locator("button.prior-open").click()
    second = rad.locator("#viewer-canvas-1")
    await expect(second).to_have_attribute("data-slice", "1")
    await expect(rad.locator(".viewer-pane").nth(1).locator(".ov-banner")).to_contain_text(
        "Antérieur du"
    )
    # Scrolling the current series moves the prior by as many millimetres.
    await rad.locator("#viewer-canvas").focus()
    for _ in range(5):
        await rad.keyboard.press("ArrowDown")
    await expect(rad.locator("#viewer-canvas")).to_have_attribute("data-slice", "6")
    await expect(second).to_have_attribute("data-slice", "6")
    # Unlinked, the prior stays where it is.
    await rad.locator("#viewer-link").uncheck()
    await rad.locator("#viewer-canvas").focus()
    await rad.keyboard.press("ArrowUp")
    await expect(rad.locator("#viewer-canvas")).to_have_attribute("data-slice", "5")
    await expect(second).to_have_attribute("data-slice", "6")
    await shot(rad, "viewer-prior-side-by-side")


# The deepest elements that stick out on the right, to say what is too wide.
WIDEST = """(() => {
  const edge = document.documentElement.clientWidth + 1;
  const out = (e) => e.getBoundingClientRect().right > edge;
  return [...document.querySelectorAll('body *')]
    .filter((e) => out(e) && ![...e.children].some(out))
    .slice(0, 8)
    .map((e) => `${e.tagName}.${e.className}#${e.id} ${e.getBoundingClientRect().right | 0}`);
})()"""


async def no_horizontal_scroll(page: Page) -> None:
    widths = await page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    wide = await page.evaluate(WIDEST)
    assert widths[0] <= widths[1], f"page is {widths[0]} px wide in a {widths[1]} px window: {wide}"


async def test_phone_layout_has_no_horizontal_scroll(
    live_server: LiveServer, accounts, client_for, new_context, shot, js_errors
) -> None:
    base = live_server.url
    exam, _ = await exam_with_series(client_for, 10)
    rad = js_errors.watch(await loop.login(await new_context(PHONE), base, "rad"), "radiologist")
    await expect(rad.locator(f"tr.wl-row[data-id='{exam['id']}']")).to_be_visible()
    await no_horizontal_scroll(rad)
    await shot(rad, "phone-worklist")
    await open_room(rad, base, exam["id"])
    await no_horizontal_scroll(rad)
    await shot(rad, "phone-room")
    urg = js_errors.watch(await loop.login(await new_context(PHONE), base, "urg_a"), "urgentist")
    await expect(urg.locator(f"tr.wl-row[data-id='{exam['id']}']")).to_be_visible()
    await no_horizontal_scroll(urg)
    await open_room(urg, base, exam["id"])
    await no_horizontal_scroll(urg)
