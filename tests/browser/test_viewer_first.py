"""The first image before the viewer's library (docs/frontend.md "The first image
before the viewer"), in Chromium against the real server and archive.

- with the Cornerstone3D bundle held back (a route of the test that answers it only
  when told), the room shows slice 1 as the archive renders it: full size, the
  file's window on the real pixels, banner and orientation markers, the tools disabled
  and saying they are loading; then, the bundle let through, Cornerstone3D draws the
  same slice in the same place and the archive's image goes;
- a room without images shows none; a first slice the archive cannot render (its file
  gone from the disk) is said in words, never shown as a broken image;
- a room opened directly connects its socket, fills its other panels and starts the
  personal channel and the stroke alarm once that image is on screen, not before, and
  not waiting for the library: with the bundle held back, all of it works.
"""

from __future__ import annotations

import asyncio
from io import BytesIO
from pathlib import Path

import pydicom
from playwright.async_api import Page, Route, expect

from server.core.config import Settings
from server.testing import LiveServer
from tests.browser import loop
from tests.browser.conftest import DESKTOP
from tests.browser.test_viewer import (
    AIR,
    BONE,
    COLS,
    ROWS,
    TISSUE,
    exam_with_series,
    expect_markers,
)
from tests.helpers import dicom_patient, exam_payload

BUNDLE = "**/vendor/cornerstone/cornerstone-*.js"

# The preview's pixels as the page has them: the PNG drawn 1:1 on a canvas, read back.
PIXELS = """(points) => {
  const img = document.querySelector('#viewer-preview img');
  const c = document.createElement('canvas');
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  return {
    size: [img.naturalWidth, img.naturalHeight],
    values: points.map(([x, y]) => Array.from(g.getImageData(x, y, 1, 1).data)),
  };
}"""


class HeldBundle:
    """The Cornerstone3D bundle answered only once released (the network stands still
    for it: the library cannot load, as on a slow link or a busy machine)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.asked = asyncio.Event()

    async def handle(self, route: Route) -> None:
        self.asked.set()
        await self.release.wait()
        await route.continue_()


def grey(hu: float, center: float = 40, width: float = 400) -> float:
    """PS3.3 C.11.2.1.2.1 linear window, 0-255."""
    return 255 * min(1.0, max(0.0, (hu - (center - 0.5)) / (width - 1) + 0.5))


async def test_archive_image_first_then_cornerstone(
    live_server: LiveServer, accounts, client_for, new_context, shot, js_errors
) -> None:
    base = live_server.url
    exam, _ = await exam_with_series(client_for)
    context = await new_context(DESKTOP)
    held = HeldBundle()
    await context.route(BUNDLE, held.handle)
    rad = js_errors.watch(await loop.login(context, base, "rad"), "radiologist")
    await rad.goto(f"{base}/#/exam/{exam['id']}")

    preview = rad.locator("#viewer-preview")
    await expect(preview).to_have_attribute("data-state", "shown")
    await asyncio.wait_for(held.asked.wait(), 10)
    # Cornerstone3D is not there: no viewport yet, the tools disabled and saying so.
    assert await rad.locator("#viewer-canvas").count() == 0
    await expect(rad.locator(".ov-loading")).to_have_text("Chargement des outils…")
    await expect(rad.get_by_role("button", name="Poumon")).to_be_disabled()
    await expect(rad.get_by_role("button", name="Distance")).to_be_disabled()
    await expect(rad.locator(".viewer-toolbar")).to_have_attribute("aria-busy", "true")
    # The real pixels at the file's window (40/400): air, tissue and bone bands.
    seen = await rad.evaluate(PIXELS, [[10, 100], [COLS // 2, 100], [110, 100]])
    assert seen["size"] == [COLS, ROWS]  # full size, not a thumbnail
    for (r, g, b, a), hu in zip(seen["values"], (AIR, TISSUE, BONE), strict=True):
        assert r == g == b and a == 255  # grayscale
        assert abs(r - grey(hu)) <= 1, (hu, r)
    await expect(preview).to_have_attribute("data-window", "40,400")
    pane = rad.locator(".viewer-preview")
    patient = dicom_patient(exam)["PatientName"].split("^")[0]
    await expect(pane.locator(".ov-banner")).to_contain_text(patient)
    await expect(pane.locator(".ov-banner")).to_contain_text("Crâne synthétique")
    await expect_markers(pane, "D", "G", "A", "P")
    await expect(pane.locator(".ov-slice")).to_have_text("Coupe 1/40 · Pos. 0,0 mm · Ép. 2,0 mm")
    await shot(rad, "viewer-first-image")
    before = [float(v) for v in (await preview.get_attribute("data-image-box") or "").split(",")]
    preview_box = await preview.bounding_box()

    held.release.set()
    canvas = rad.locator("#viewer-canvas")
    await expect(canvas).to_have_attribute("data-slice", "1")
    await expect(preview).to_have_count(0)
    await expect(rad.get_by_role("button", name="Poumon")).to_be_enabled()
    await expect(rad.locator(".viewer-toolbar")).to_have_attribute("aria-busy", "false")
    # Same place, same size: the viewport's element where the preview's was, and the
    # image drawn by Cornerstone3D in the box the archive's image filled.
    assert await canvas.bounding_box() == preview_box
    after = [float(v) for v in (await canvas.get_attribute("data-image-box") or "").split(",")]
    assert all(abs(a - b) <= 1 for a, b in zip(after, before, strict=True)), (before, after)
    real = rad.locator(".viewer-pane").first
    await expect(real.locator(".ov-slice")).to_have_text("Coupe 1/40 · Pos. 0,0 mm · Ép. 2,0 mm")
    await expect(real.locator(".ori-right")).to_have_text("G")
    await expect(canvas).to_have_attribute("data-window", "40,400")


def stored_file(storage: Path, sop_uid: str) -> Path:
    for path in storage.rglob("*.dcm"):
        if pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID == sop_uid:
            return path
    raise AssertionError(f"{sop_uid} not found under {storage}")


async def test_no_image_and_an_unrenderable_first_slice(
    live_server: LiveServer, settings: Settings, accounts, client_for, new_context
) -> None:
    base = live_server.url
    exam, parts = await exam_with_series(client_for, 6)
    rad_client = await client_for("rad")
    found = (await rad_client.get(f"/api/exams/{exam['id']}/first-image")).json()
    first = pydicom.dcmread(BytesIO(parts[0])).SOPInstanceUID
    assert found["sop_instance_uid"] == first
    stored_file(settings.dicom_storage, first).unlink()  # the disk lost it

    context = await new_context(DESKTOP)
    held = HeldBundle()  # the failed state stays until the library is let through
    await context.route(BUNDLE, held.handle)
    page: Page = await loop.login(context, base, "rad")
    # The page's own errors: none uncaught; on the console, only the failed requests
    # of the lost slice (the browser's and the image loader's own report of it).
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(f"{base}/#/exam/{exam['id']}")
    preview = page.locator("#viewer-preview")
    await expect(preview).to_have_attribute("data-state", "failed")
    await expect(page.locator(".ov-loading")).to_contain_text("Aperçu de l'archive indisponible.")
    assert await preview.locator("img").count() == 0
    held.release.set()
    # Cornerstone3D then opens the series: its first slice cannot be read either, the
    # viewer says so and the tools are usable on the others.
    await expect(page.locator("#viewer-canvas")).to_have_count(1)
    await expect(preview).to_have_count(0)
    await expect(page.get_by_role("button", name="Poumon")).to_be_enabled()

    # A room whose exam has no image yet: nothing to show.
    urg = await client_for("urg_a")
    empty = (await urg.post("/api/exams", json=exam_payload())).json()
    await page.goto(f"{base}/#/exam/{empty['id']}")
    await expect(page.locator("#room-conn")).to_have_text("En ligne")
    await expect(page.locator("#images-empty")).to_be_visible()
    assert await page.locator("#viewer-preview").count() == 0
    await expect(page.locator("#viewer")).to_be_hidden()
    unexpected = [e for e in errors if "Failed to load resource" not in e and e != "XMLHttpRequest"]
    assert not unexpected, unexpected


# When each request of the page started, and when the room mounted (page clock).
STARTS = """(examPath) => {
  const started = (path) => performance.getEntriesByType('resource')
    .filter((e) => new URL(e.name).pathname === path).map((e) => e.startTime);
  return {
    me: started('/api/me'),
    exam: started(examPath),
    mount: performance.getEntriesByName('room:mount', 'mark').map((e) => e.startTime),
  };
}"""


async def test_a_room_opened_directly_asks_its_session_and_exam_before_the_app_loads(
    live_server: LiveServer, accounts, client_for, new_context, js_errors
) -> None:
    """A link to a room (a new tab, a reload): preload.js asks the session and the exam
    with the first image, before the app's modules have loaded; the app takes those
    answers instead of asking again once the room mounts."""
    base = live_server.url
    exam, _ = await exam_with_series(client_for)
    context = await new_context(DESKTOP)
    await loop.login(context, base, "rad")
    tab = js_errors.watch(await context.new_page(), "radiologist")
    await tab.goto(f"{base}/#/exam/{exam['id']}")
    await expect(tab.locator("#viewer-canvas")).to_have_attribute("data-slice", "1")
    seen = await tab.evaluate(STARTS, f"/api/exams/{exam['id']}")
    assert len(seen["me"]) == 1 and len(seen["exam"]) == 1, seen  # asked once each
    (mount,) = seen["mount"]
    assert seen["exam"][0] < mount and seen["me"][0] < mount, seen


# When the room's other work started, against the first image on screen (page clock).
AFTER = """(examId) => {
  const mark = (name) => performance.getEntriesByName(name, 'mark')[0]?.startTime ?? null;
  const started = (test) => performance.getEntriesByType('resource')
    .filter((e) => test(new URL(e.name))).map((e) => e.startTime);
  return {
    shown: mark('viewer:preview-shown'),
    connect: mark('room:connect'),
    metadataRead: mark('viewer:metadata-end'),
    report: started((u) => u.pathname === `/api/exams/${examId}/report`),
    priors: started((u) => u.pathname === `/api/exams/${examId}/priors`),
    alarm: started((u) => u.pathname === '/api/exams'
      && u.searchParams.get('status') === 'requested'),
  };
}"""

SLOW_FRAMES = """(() => {
  const frame = window.requestAnimationFrame.bind(window);
  window.requestAnimationFrame = (callback) => {
    const shown = performance.getEntriesByName('viewer:preview-shown', 'mark').length;
    if (shown) return frame(callback);
    return setTimeout(() => frame(callback), 300);
  };
})()"""

# The header's times as drawn, and as the browser's own formatter writes them.
TIMES = """async (examId) => {
  const exam = await (await fetch(`/api/exams/${examId}`)).json();
  const want = Object.values(exam.times || {}).filter(Boolean)
    .map((iso) => new Date(iso)
      .toLocaleTimeString('fr-FR', { hour: '2-digit', minute: '2-digit' }));
  const shown = [...document.querySelectorAll('#room-head .step-time')].map((e) => e.textContent);
  return { want, shown: shown.filter(Boolean) };
}"""


async def test_the_room_connects_and_fills_its_panels_once_the_first_image_is_shown(
    live_server: LiveServer, accounts, client_for, new_context, js_errors
) -> None:
    """The room's socket (welcome, replayed events, presence), the protocol and report
    panels, the priors, the personal channel and the stroke alarm's poll start once the
    archive's image is on screen: before, their work came before it on the main thread.
    They do not wait for the library: with the bundle held, the room is whole."""
    base = live_server.url
    exam, _ = await exam_with_series(client_for)
    context = await new_context(DESKTOP)
    held = HeldBundle()
    await context.route(BUNDLE, held.handle)
    await loop.login(context, base, "rad")
    # A new tab on the room (a link): the app starts there, as in bench/viewer.py. Its
    # frames come 300 ms late until the first image is shown (a busy machine): the
    # series' metadata is then received before that image is on screen.
    rad = js_errors.watch(await context.new_page(), "radiologist")
    await rad.add_init_script(SLOW_FRAMES)
    await rad.goto(f"{base}/#/exam/{exam['id']}")
    await expect(rad.locator("#viewer-preview")).to_have_attribute("data-state", "shown")

    await expect(rad.locator("#room-conn")).to_have_text("En ligne")
    await expect(rad.locator("#presence")).to_contain_text("Radiologue")
    await expect(rad.locator("#chat-log li[data-kind='images.received']").first).to_be_visible()
    await expect(rad.locator("#report-indication")).to_have_value(exam["clinical_question"])
    await expect(rad.locator("#priors-box")).to_be_attached()
    await rad.fill("#chat-input", "Premières coupes vues.")
    await rad.click("#chat-send")
    await expect(rad.locator("#chat-log li.mine")).to_have_attribute("data-state", "sent")
    assert await rad.locator("#viewer-canvas").count() == 0  # the library still held

    seen = await rad.evaluate(AFTER, exam["id"])
    shown = seen["shown"]
    assert seen["connect"] > shown, seen
    assert seen["metadataRead"] > shown, seen
    for what in ("report", "priors", "alarm"):
        assert seen[what] and min(seen[what]) > shown, (what, seen)
    # The header's times, written without the browser's date formatter, read the same.
    times = await rad.evaluate(TIMES, exam["id"])
    assert times["shown"] and set(times["shown"]) <= set(times["want"]), times

    held.release.set()
    await expect(rad.locator("#viewer-canvas")).to_have_attribute("data-slice", "1")
    await expect(rad.locator("#viewer-preview")).to_have_count(0)


# formatNumber against the browser's own formatter, in both languages.
NUMBERS = """async () => {
  const { formatNumber } = await import('/i18n.js');
  const values = [0, -0, 5, -5, 0.04, -0.04, 0.05, 0.15, 0.25, 0.35, 1.005, 2.345, -12.25,
    123.45, 999.94, 999.95, -999.95, 1000, 1234.56, -98765.4321, 1e-7, 3e21, NaN, Infinity];
  for (let i = 0; i < 2000; i += 1) values.push((i * 7.3579 - 3000) / 7);
  const wrong = [];
  for (const lang of ['fr', 'en']) for (const digits of [0, 1, 2]) for (const x of values) {
    const options = { minimumFractionDigits: digits, maximumFractionDigits: digits };
    const want = x.toLocaleString(lang, options);
    const got = formatNumber(x, digits, lang);
    if (got !== want) wrong.push([lang, digits, String(x), want, got]);
  }
  return wrong;
}"""


async def test_numbers_written_by_hand_as_the_browser_writes_them(
    live_server: LiveServer, new_context
) -> None:
    """The viewer's positions, thicknesses and measures (formatNumber, written by hand
    under 1000 so that the first image does not wait for the browser's number
    formatter) read exactly as toLocaleString writes them, rounding included."""
    page = await (await new_context(DESKTOP)).new_page()
    await page.goto(f"{live_server.url}/#/login")
    assert await page.evaluate(NUMBERS) == []
