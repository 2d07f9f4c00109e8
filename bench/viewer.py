"""The reading viewer in headless Chromium (docs/benchmarks.md "Viewer").

    python bench/viewer.py [--slices 300] [--size 512] [--runs 3]

One `teleimagerie serve` process on SQLite, one exam seeded in SQL and assigned to the
radiologist, a synthetic axial CT of N slices of size x size (16-bit, 0.5 mm pixels,
1 mm apart) stored through STOW-RS beforehand. Then Debian's Chromium (Playwright,
headless) with the radiologist's session cookie:

- first image: from `page.goto` of the room to the first slice drawn by Cornerstone3D
  (the viewer's `data-slice` set, after the room socket, series metadata, loader start
  and the first WADO-RS frame); a fresh browser context each run (cold caches);
- scroll rate: the ArrowDown key held through the stack once it is loaded, slices shown
  per second (the slice index read back from the page after each key press);
- first MPR: from the click on "MPR" to the coronal view drawn, and to all N slices
  streamed into the volume;
- first image again in the same tab (worklist, then the room): the app and the
  Cornerstone3D modules already loaded, the image cache emptied when the room was left.

Every response of the server carries `Cache-Control: no-store` (docs/api.md "Conventions"), so
a cold open downloads and compiles the 4.3 MB Cornerstone3D module each time. The
scroll rate is bounded by Playwright's key presses (one DevTools round trip each), so
it is a floor of what the viewer does with a held key or the wheel.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pydicom
from playwright.async_api import Page, async_playwright
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ServerProcess, prepare_database, seed  # noqa: E402
from dicomweb.samples import multipart  # noqa: E402
from server.core.config import Settings  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def slices(study: str, accession: str, count: int, size: int) -> list[bytes]:
    series = generate_uid()
    yy, xx = np.mgrid[0:size, 0:size]
    r2 = (xx - size / 2) ** 2 + (yy - size / 2) ** 2
    out = []
    for i in range(count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.AccessionNumber = accession
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = (
            "P",
            "BENCH^Patient",
            "19500101",
            "O",
        )
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, i + 1
        ds.FrameOfReferenceUID = series + ".1"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-size / 4, -size / 4, float(i)]
        ds.SliceThickness, ds.PixelSpacing = 1.0, [0.5, 0.5]
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        radius = (size / 2.5) * (1 - abs(i - count / 2) / count)
        ds.PixelData = np.where(r2 < radius**2, 40 + (i % 50), -1000).astype(np.int16).tobytes()
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


async def stow(base: str, token: str, parts: list[bytes]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        for i in range(0, len(parts), 50):
            body, ctype = multipart(parts[i : i + 50])
            resp = await client.post(
                "/dicomweb/studies",
                content=body,
                headers={"Content-Type": ctype, "Authorization": f"Bearer {token}"},
            )
            resp.raise_for_status()


async def slice_of(page: Page, selector: str = "#viewer-canvas") -> int:
    value = await page.get_attribute(selector, "data-slice")
    return int(value or 0)


async def one_run(browser, base: str, token: str, exam_id: str, count: int) -> dict[str, float]:
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    await context.add_cookies([{"name": "ti_session", "value": token, "url": base}])
    page = await context.new_page()
    t0 = time.perf_counter()
    await page.goto(f"{base}/#/exam/{exam_id}")
    await page.wait_for_selector("#viewer-canvas[data-slice='1']", timeout=60_000)
    first = time.perf_counter() - t0

    # Scroll once the stack is loaded: wait until every slice is in Cornerstone's cache
    # (the prefetch), then step through it with the keyboard.
    await page.wait_for_function(
        """import('/vendor/cornerstone/cornerstone.js').then((m) => {
          const ids = m.core.getEnabledElements()[0].viewport.getImageIds();
          return ids.every((id) => m.core.cache.isLoaded(id));
        })""",
        timeout=120_000,
    )
    await page.locator("#viewer-canvas").focus()
    steps = count - 1
    t0 = time.perf_counter()
    for _ in range(steps):
        await page.keyboard.press("ArrowDown")
    await page.wait_for_selector(f"#viewer-canvas[data-slice='{count}']", timeout=60_000)
    scroll = steps / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    await page.click("#viewer-mode-mpr")
    await page.wait_for_selector("[data-orientation=coronal][data-slice]", timeout=120_000)
    mpr_shown = time.perf_counter() - t0
    await page.wait_for_function(
        """import('/vendor/cornerstone/cornerstone.js').then((m) => {
          const v = m.core.cache.getVolumes()[0];
          return Boolean(v && v.loadStatus && v.loadStatus.loaded);
        })""",
        timeout=120_000,
    )
    mpr_loaded = time.perf_counter() - t0

    # The room opened again in the same tab (worklist, then the exam): the app and the
    # Cornerstone3D modules are already loaded, the image cache was emptied on leaving.
    await page.evaluate("location.hash = '#/worklist'")
    await page.wait_for_selector("#worklist")
    t0 = time.perf_counter()
    await page.evaluate(f"location.hash = '#/exam/{exam_id}'")
    await page.wait_for_selector("#viewer-canvas[data-slice='1']", timeout=60_000)
    warm = time.perf_counter() - t0
    await context.close()
    return {
        "first": first,
        "warm": warm,
        "scroll": scroll,
        "mpr_shown": mpr_shown,
        "mpr_loaded": mpr_loaded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = prepare_database(None, work)  # migrations run their own event loop
        asyncio.run(bench(args, work, url))


async def bench(args: argparse.Namespace, work: Path, url: str) -> None:
    data = await seed(Settings(database_url=url), exams=1, sessions_per_role=1)
    server = ServerProcess({"DATABASE_URL": url, "DICOM_STORAGE": str(work / "dicom")})
    try:
        await server.ready()
        async with httpx.AsyncClient(base_url=server.url) as client:
            token = data.tokens["radiologist"][0]
            exam = (
                await client.get(
                    f"/api/exams/{data.exam_ids[0]}",
                    headers={"Authorization": f"Bearer {token}"},
                )
            ).json()
        parts = slices(exam["study_instance_uid"], exam["accession_number"], args.slices, args.size)
        await stow(server.url, token, parts)
        results = []
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for _ in range(args.runs):
                results.append(
                    await one_run(browser, server.url, token, data.exam_ids[0], args.slices)
                )
            await browser.close()
    finally:
        server.stop()
    print(f"viewer: {args.slices} slices of {args.size}x{args.size}, {args.runs} runs")
    for key, label, unit in (
        ("first", "room open -> first image", "ms"),
        ("warm", "same, modules loaded", "ms"),
        ("scroll", "scroll rate (stack loaded)", "images/s"),
        ("mpr_shown", "MPR click -> coronal shown", "ms"),
        ("mpr_loaded", "MPR click -> volume loaded", "ms"),
    ):
        values = [r[key] * (1000 if unit == "ms" else 1) for r in results]
        print(
            f"  {label:32s} median {statistics.median(values):8.1f} {unit}"
            f"  (runs: {', '.join(f'{v:.1f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
