"""The reading viewer in headless Chromium (docs/benchmarks.md "Viewer").

    python bench/viewer.py [--slices 300] [--size 512] [--runs 3] [--cold-only] [--profile]

One `teleimagerie serve` process on SQLite, one exam seeded in SQL and assigned to the
radiologist, a synthetic axial CT of N slices of size x size (16-bit, 0.5 mm pixels,
1 mm apart, window 40/400 in the files) stored through STOW-RS beforehand. Then
Debian's Chromium (Playwright, headless) with the radiologist's session cookie:

- first image, two figures from the navigation to the room, each on the page's own
  clock (a Performance API mark) and as seen by Playwright (`page.goto` to the element
  read back: it adds Playwright's polling of a busy page):
  (1) "first image on screen (archive-rendered slice 1)": the archive's PNG rendering of
  the first slice shown in the viewer's place (`viewer:preview-shown`, the frame after it
  was put in; frontend/firstimage.js), before the library is evaluated;
  (2) "first image in the interactive viewer (Cornerstone)": the first slice drawn by
  Cornerstone3D (its first IMAGE_RENDERED, `viewer:first-image`), the tools usable;
  a fresh browser context each run (cold caches); where that time goes, by phase (the
  marks and the resource timings of the first-image request, the rendered slice, the
  module, the metadata and the first frame);
- scroll rate, two ways, once the stack is loaded: (1) one Playwright key press a slice
  (a DevTools round trip each; the renders of several presses may be coalesced into one
  frame), (2) the viewport driven in the page: `setImageIdIndex` for each slice, each
  awaited until Cornerstone3D has drawn it (IMAGE_RENDERED): slices actually drawn per
  second; `--profile` prints a CPU profile (CDP) of (2);
- first MPR: from the click on "MPR" to the coronal view drawn, and to all N slices
  streamed into the volume;
- first image again in the same tab (worklist, then the room): the app and the
  Cornerstone3D modules already loaded, the image cache emptied when the room was left
  (both figures; the archive's image is not shown when Cornerstone3D draws first);
- first image in a new tab of the same browser context, the first one closed: nothing
  evaluated in that tab, the HTTP cache holding what the first tab fetched (the
  radiologist's next exam).

`--cold-only` stops each run after the cold open's two figures and phases (no scroll,
MPR, warm or new-tab figures): about 30 s an invocation, for A/B runs alternated with a
copy of another version.

The vendored bundle is kept for good under its hashed name (docs/frontend.md), but a
fresh context has nothing cached: a cold open downloads (compressed) and compiles the
4.3 MB Cornerstone3D module each time. The load average is printed before and after: other
work on the machine shows in every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pydicom
from playwright.async_api import async_playwright
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

# The repository in place of bench/ on the path (bench/ holds files named like packages).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

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
        ds.WindowCenter, ds.WindowWidth = 40, 400
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


def print_profile(what: str, profile: dict) -> None:
    """The functions that took the most CPU (self time) in a V8 CPU profile (CDP)."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    counts: dict[int, int] = {}
    for sample in profile.get("samples", []):
        counts[sample] = counts.get(sample, 0) + 1
    deltas = profile.get("timeDeltas", [])
    per_sample = (sum(deltas) / len(deltas) / 1000) if deltas else 0
    by_function: dict[str, int] = {}
    for node_id, n in counts.items():
        frame = nodes[node_id]["callFrame"]
        url = frame["url"].rsplit("/", 1)[-1]
        key = f"{frame['functionName'] or '(anonymous)'} {url}:{frame['lineNumber']}"
        by_function[key] = by_function.get(key, 0) + n
    total = sum(by_function.values()) or 1
    print(f"  CPU profile of {what}: {total} samples of ~{per_sample:.2f} ms")
    for key, n in sorted(by_function.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {100 * n / total:5.1f} %  {key}")


async def one_run(
    browser,
    base: str,
    token: str,
    exam_id: str,
    count: int,
    profile: bool = False,
    cold_only: bool = False,
) -> dict[str, float]:
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    await context.add_cookies([{"name": "ti_session", "value": token, "url": base}])
    page = await context.new_page()
    if profile:
        cdp = await context.new_cdp_session(page)
        await cdp.send("Profiler.enable")
        await cdp.send("Profiler.setSamplingInterval", {"interval": 200})
        await cdp.send("Profiler.start")
    t0 = time.perf_counter()
    wall0 = time.time() * 1000
    await page.goto(f"{base}/#/exam/{exam_id}")
    await page.wait_for_selector(FIRST_SHOWN, state="attached", timeout=60_000)
    shown = time.perf_counter() - t0
    if profile:
        taken = await cdp.send("Profiler.stop")
        print_profile("the cold open, to the archive's image", taken["profile"])
        await cdp.send("Profiler.start")
    await page.wait_for_selector("#viewer-canvas[data-slice='1']", timeout=60_000)
    first = time.perf_counter() - t0
    if profile:
        taken = await cdp.send("Profiler.stop")
        print_profile("the cold open, from the archive's image to Cornerstone's", taken["profile"])
    phases = await page.evaluate(PHASES)
    # Where the page's clock starts (its navigation) after page.goto was called.
    phases["(goto called)"] = wall0 - await page.evaluate("performance.timeOrigin")
    if cold_only:
        await context.close()
        return {
            **{
                k: v / 1000
                for k, v in (
                    ("shown_page", phases.get("viewer:preview-shown")),
                    ("first_page", phases.get("viewer:first-image")),
                )
                if v is not None
            },
            "shown": shown,
            "first": first,
            **{f"phase:{k}": v for k, v in phases.items()},
        }

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
    # The same stack driven in the page (no DevTools round trip per slice): each slice
    # set on the viewport and awaited until Cornerstone3D has drawn it.
    if profile:
        await cdp.send("Profiler.start")
    direct = await page.evaluate(DIRECT_SCROLL)
    if profile:
        taken = await cdp.send("Profiler.stop")
        print_profile("direct scroll", taken["profile"])

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
    # The viewer's marks are taken once per page: cleared, they are taken again.
    start = await page.evaluate(
        f"performance.clearMarks(); [performance.now(), location.hash = '#/exam/{exam_id}'][0]"
    )
    await page.wait_for_selector("#viewer-canvas[data-slice='1']", timeout=60_000)
    warm = time.perf_counter() - t0
    # (None with a frontend older than its marks: the page figures are then left out.)
    warm_page = await page.evaluate(MARK, "viewer:first-image")
    warm_shown = await page.evaluate(MARK, "viewer:preview-shown")
    # The first tab closed and a new one opened on the room: nothing evaluated in it yet,
    # but the HTTP cache holds what the first tab fetched (the radiologist's next exam).
    # (With the first tab left open, its volume and work weigh on the second.)
    await page.close()
    tab = await context.new_page()
    await tab.goto(f"{base}/#/exam/{exam_id}")
    await tab.wait_for_selector("#viewer-canvas[data-slice='1']", timeout=60_000)
    tab_page = await tab.evaluate(MARK, "viewer:first-image")
    tab_shown = await tab.evaluate(MARK, "viewer:preview-shown")
    await context.close()
    first_page = phases.get("viewer:first-image")
    first_shown = phases.get("viewer:preview-shown")
    figures = {
        "shown_page": first_shown,
        "first_page": first_page,
        "warm_shown": warm_shown - start if warm_shown is not None else None,
        "warm_page": warm_page - start if warm_page is not None else None,
        "tab_shown": tab_shown,
        "tab_page": tab_page,
    }
    return {
        **{k: v / 1000 for k, v in figures.items() if v is not None},
        "shown": shown,
        "first": first,
        "warm": warm,
        "scroll": scroll,
        "scroll_direct": direct,
        **{f"phase:{k}": v for k, v in phases.items()},
        "mpr_shown": mpr_shown,
        "mpr_loaded": mpr_loaded,
    }


# The first image on screen: the archive's rendering of slice 1 (frontend/firstimage.js),
# or Cornerstone3D's own first draw when that came first (a warm open) or was not shown.
FIRST_SHOWN = "#viewer-preview[data-state=shown], #viewer-canvas[data-slice='1']"
MARK = "(name) => performance.getEntriesByName(name, 'mark')[0]?.startTime ?? null"

# Where the first image's time goes, from the page's own clock (ms since navigation):
# the viewer's Performance API marks (frontend/imaging.js `mark`) and the resource timings
# of the Cornerstone3D module, the series metadata and the first frame.
PHASES = r"""(() => {
  const out = {};
  for (const m of performance.getEntriesByType('mark')) out[m.name] = m.startTime;
  const res = performance.getEntriesByType('resource');
  const pick = (test) => res.find((r) => test(r.name));
  // The bundle under its hashed name (cornerstone.js only names it), or, in a frontend
  // older than the hashed names, cornerstone.js itself.
  const module = pick((n) => /\/vendor\/cornerstone\/cornerstone-[A-Z2-7]{8}\.js$/.test(n))
    || pick((n) => n.endsWith('/vendor/cornerstone/cornerstone.js'));
  const meta = pick((n) => n.endsWith('/metadata') && !n.includes('/instances/'));
  const frame = pick((n) => /\/frames\/1$/.test(n));
  const app = pick((n) => n.endsWith('/app.js'));
  const named = pick((n) => n.endsWith('/first-image'));
  const rendered = pick((n) => /\/frames\/1\/rendered$/.test(n));
  if (named) {
    out['first slice named (sent)'] = named.requestStart;
    out['first slice named (answer)'] = named.responseEnd;
  }
  if (rendered) {
    out['archive-rendered slice 1 request'] = rendered.startTime;
    out['archive-rendered slice 1 sent'] = rendered.requestStart;
    out['archive-rendered slice 1 first byte'] = rendered.responseStart;
    out['archive-rendered slice 1 received'] = rendered.responseEnd;
  }
  if (app) out['app.js loaded'] = app.responseEnd;
  if (module) {
    out['module request'] = module.startTime;
    out['module downloaded'] = module.responseEnd;
  }
  if (meta) {
    out['metadata request'] = meta.startTime;
    out['metadata received'] = meta.responseEnd;
  }
  if (frame) {
    out['first frame request'] = frame.startTime;
    out['first frame received'] = frame.responseEnd;
  }
  // Over 1: the first slice's frame was asked more than once (not the same first slice).
  out['first slice requests (count)'] = res.filter((r) => /\/frames\/1$/.test(r.name)
    && frame && r.name === frame.name).length;
  return out;
})()"""

DIRECT_SCROLL = """(async () => {
  const m = await import('/vendor/cornerstone/cornerstone.js');
  const vp = m.core.getEnabledElements().find((e) => e.viewport.id.endsWith('-vp0')).viewport;
  const n = vp.getImageIds().length;
  await vp.setImageIdIndex(0);
  const drawn = () => new Promise((resolve) => vp.element.addEventListener(
    m.core.Enums.Events.IMAGE_RENDERED, resolve, { once: true }));
  const t0 = performance.now();
  for (let i = 1; i < n; i += 1) {
    const shown = drawn();
    await vp.setImageIdIndex(i);
    await shown;
  }
  return (n - 1) / ((performance.now() - t0) / 1000);
})()"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print CPU profiles (CDP) of the cold open (to the archive's image, then to"
        " Cornerstone's) and of the direct scroll",
    )
    parser.add_argument(
        "--cold-only",
        action="store_true",
        help="time the cold open alone (no scroll, MPR, warm or new-tab figures)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = prepare_database(None, work)  # migrations run their own event loop
        asyncio.run(bench(args, work, url))


async def bench(args: argparse.Namespace, work: Path, url: str) -> None:
    load_before = os.getloadavg()
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
                    await one_run(
                        browser,
                        server.url,
                        token,
                        data.exam_ids[0],
                        args.slices,
                        args.profile,
                        args.cold_only,
                    )
                )
            await browser.close()
    finally:
        server.stop()
    print(f"viewer: {args.slices} slices of {args.size}x{args.size}, {args.runs} runs")
    print(f"  load average before / after: {load_before} / {os.getloadavg()}")
    print("  first image, cold, by phase (ms after navigation start, median):")
    names = sorted(
        {k for r in results for k in r if k.startswith("phase:")},
        key=lambda k: statistics.median(r.get(k, 0) for r in results),
    )
    for key in names:
        values = [r[key] for r in results if key in r]
        print(f"    {key[6:]:32s} {statistics.median(values):8.1f}")
    for key, label, unit in (
        ("shown_page", "first image on screen (archive-rendered slice 1), page", "ms"),
        ("shown", "same, seen by Playwright", "ms"),
        ("first_page", "first image in the interactive viewer (Cornerstone), page", "ms"),
        ("first", "same, seen by Playwright", "ms"),
        ("warm_shown", "again in the tab: archive-rendered slice 1 (page)", "ms"),
        ("warm_page", "again in the tab: Cornerstone, modules loaded (page)", "ms"),
        ("warm", "same, seen by Playwright", "ms"),
        ("tab_shown", "new tab, HTTP cache kept: archive-rendered (page)", "ms"),
        ("tab_page", "new tab, HTTP cache kept: Cornerstone (page)", "ms"),
        ("scroll", "scroll, one key press a slice", "images/s"),
        ("scroll_direct", "scroll, viewport driven in page", "images/s"),
        ("mpr_shown", "MPR click -> coronal shown", "ms"),
        ("mpr_loaded", "MPR click -> volume loaded", "ms"),
    ):
        values = [r[key] * (1000 if unit == "ms" else 1) for r in results if key in r]
        if not values:
            continue
        print(
            f"  {label:58s} median {statistics.median(values):8.1f} {unit}"
            f"  (runs: {', '.join(f'{v:.1f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
