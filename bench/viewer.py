"""The reading viewer in headless Chromium (docs/benchmarks.md "Viewer").

    python bench/viewer.py [--slices 300] [--size 512] [--runs 3] [--cold-only]
                           [--profile] [--trace]

One `teleimagerie serve` process on SQLite, one exam seeded in SQL and assigned to the
radiologist, a synthetic axial CT of N slices of size x size (16-bit, 0.5 mm pixels,
1 mm apart, window 40/400 in the files) stored through STOW-RS beforehand. Then
Debian's Chromium (Playwright, headless) with the radiologist's session cookie:

- first image, two figures from the navigation to the room, each on the page's own
  clock (a Performance API mark) and as seen by the bench (`page.goto` to the mark,
  awaited through DevTools: nothing of Playwright's is injected into the page before
  it, its selectors' script took 15-20 ms of the main thread in the room's mount):
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

`--trace` prints, for each cold open, where the renderer's main thread spent its time
from the navigation to the archive's image (a Chromium trace: each task of 4 ms or more
with what ran in it, the self time of each kind of work, and the page's functions from
the trace's CPU samples).

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
import json
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


# Chromium's trace categories for where the main thread's time goes: tasks, scripts,
# style, layout, paint (devtools.timeline), module compilation and evaluation (v8),
# the page's own marks (blink.user_timing).
TRACE_CATEGORIES = [
    "devtools.timeline",
    "disabled-by-default-devtools.timeline",
    "v8",
    "v8.execute",
    "blink.user_timing",
    "loading",
    "disabled-by-default-v8.cpu_profiler",
]
# The names under which a task's time is told apart (what runs, not the task's wrapper).
TRACE_DETAIL = {
    "EvaluateScript": lambda a: a.get("data", {}).get("url", ""),
    "v8.compileModule": lambda a: a.get("fileName", ""),
    "v8.compile": lambda a: a.get("fileName", "") or a.get("data", {}).get("url", ""),
    "v8.evaluateModule": lambda a: a.get("data", {}).get("url", "") or a.get("fileName", ""),
    "FunctionCall": lambda a: "{}:{}".format(
        a.get("data", {}).get("url", "").rsplit("/", 1)[-1],
        a.get("data", {}).get("functionName", ""),
    ),
    "EventDispatch": lambda a: a.get("data", {}).get("type", ""),
    "TimerFire": lambda a: "",
    "ResourceReceiveResponse": lambda a: a.get("data", {}).get("url", "").rsplit("/", 1)[-1],
    "ResourceFinish": lambda a: "",
}


def print_samples(
    events: list[dict], pid: int, start: float, end: float
) -> list[tuple[float, str]]:
    """The JavaScript functions of the trace's CPU samples between two times: self time,
    and the time spent in each function and what it called (the page's own modules)."""
    nodes: dict[int, dict] = {}
    parent: dict[int, int] = {}
    samples: list[tuple[float, int]] = []
    t = None
    for e in sorted(events, key=lambda e: e.get("ts", 0)):
        if e.get("pid") != pid:
            continue
        if e.get("name") == "Profile":
            t = e["args"]["data"].get("startTime", e["ts"])
        elif e.get("name") == "ProfileChunk" and t is not None:
            data = e["args"]["data"]
            for n in data.get("cpuProfile", {}).get("nodes", []):
                nodes[n["id"]] = n["callFrame"]
                if "parent" in n:
                    parent[n["id"]] = n["parent"]
            for node, delta in zip(
                data.get("cpuProfile", {}).get("samples", []),
                data.get("timeDeltas", []),
                strict=False,
            ):
                t += delta
                samples.append((t, node))
    inside = [(ts, n) for ts, n in samples if start <= ts <= end]
    if len(inside) < 2:
        return []
    per = (inside[-1][0] - inside[0][0]) / (len(inside) - 1) / 1000

    def name(n: int) -> str:
        f = nodes[n]
        where = f"{f.get('url', '').rsplit('/', 1)[-1]}:{f.get('lineNumber', 0) + 1}"
        return f"{f.get('functionName') or '(anonymous)'} {where}"

    own: dict[str, int] = {}
    total: dict[str, int] = {}
    for _, n in inside:
        own[name(n)] = own.get(name(n), 0) + 1
        seen = set()
        while n in nodes:
            if nodes[n].get("url") and name(n) not in seen:
                seen.add(name(n))
                total[name(n)] = total.get(name(n), 0) + 1
            n = parent.get(n, -1)
    idle = ("(idle)", "(program)")
    print(f"  its JavaScript samples ({len(inside)} of ~{per:.2f} ms): self time")
    for key, c in sorted(own.items(), key=lambda kv: -kv[1])[:12]:
        if not key.startswith(idle):
            print(f"    {c * per:7.1f} ms  {key}")
    print("  time in a function and what it called (the app's modules):")
    for key, c in sorted(total.items(), key=lambda kv: -kv[1])[:25]:
        print(f"    {c * per:7.1f} ms  {key}")

    def outer(n: int) -> str:
        # The outermost function of the page's own modules in a sample's stack.
        found = name(n)
        while n in nodes:
            if nodes[n].get("url") and "/vendor/" not in nodes[n]["url"]:
                found = name(n)
            n = parent.get(n, -1)
        return found

    return [(ts, outer(n)) for ts, n in inside if not name(n).startswith(idle)]


def print_trace(trace: dict, until: str = "viewer:preview-shown") -> None:
    """The renderer's main thread from the navigation to a mark: its tasks, and the self time
    of what ran in them, from a Chromium trace (Browser.start_tracing)."""
    events = trace["traceEvents"]
    ends = [e for e in events if e.get("name") == until and "user_timing" in e.get("cat", "")]
    if not ends:
        print(f"  trace: no {until} mark")
        return
    pid, end = ends[0]["pid"], ends[0]["ts"]
    starts = [
        e["ts"]
        for e in events
        if e.get("pid") == pid and e.get("name") == "navigationStart" and e["ts"] <= end
    ]
    start = (
        max(starts)
        if starts
        else min(e["ts"] for e in events if e.get("pid") == pid and e.get("ts"))
    )
    main = next(
        e["tid"]
        for e in events
        if e.get("ph") == "M" and e.get("pid") == pid and e["args"].get("name") == "CrRendererMain"
    )
    # Complete events (X), and begin/end pairs (B/E) made into complete ones.
    spans, open_ = [], []
    for e in sorted(
        (e for e in events if e.get("pid") == pid and e.get("tid") == main), key=lambda e: e["ts"]
    ):
        if e["ph"] == "X" and "dur" in e:
            spans.append((e["ts"], e["dur"], e["name"], e.get("args", {}), e.get("tdur", 0)))
        elif e["ph"] == "B":
            open_.append(e)
        elif e["ph"] == "E" and open_:
            b = open_.pop()
            cpu = e.get("tts", 0) - b.get("tts", 0)
            spans.append((b["ts"], e["ts"] - b["ts"], b["name"], b.get("args", {}), cpu))
    spans = [s for s in spans if s[0] + s[1] > start and s[0] < end]
    spans.sort(key=lambda s: (s[0], -s[1]))
    # Self time of each span: its duration less that of the spans directly inside it.
    self_us: dict[str, float] = {}
    stack: list[list] = []  # [end_ts, key, child_total, dur]
    tasks = []

    def close(item: list) -> None:
        self_us[item[1]] = self_us.get(item[1], 0) + item[3] - item[2]

    cpu_us = 0.0  # the thread's CPU time in its outermost spans (tdur): load does not add to it
    for ts, dur, name, args, cpu in spans:
        while stack and stack[-1][0] <= ts:
            close(stack.pop())
        if not stack:
            cpu_us += cpu
        detail = TRACE_DETAIL.get(name, lambda a: None)(args)
        key = f"{name} {detail}".strip() if detail else name
        if stack:
            stack[-1][2] += dur
        elif name in ("RunTask", "ThreadControllerImpl::RunTask") and dur >= 4000:
            tasks.append((ts, dur, []))
        if (
            tasks
            and ts < tasks[-1][0] + tasks[-1][1]
            and name not in ("RunTask", "ThreadControllerImpl::RunTask")
        ):
            tasks[-1][2].append((dur, key))
        stack.append([ts + dur, key, 0.0, dur])
    while stack:
        close(stack.pop())
    busy = sum(
        d for k, d in self_us.items() if k not in ("RunTask", "ThreadControllerImpl::RunTask")
    )
    span = (end - start) / 1000
    print(
        f"  main thread, navigation -> {until} ({span:.0f} ms): {busy / 1000:.0f} ms of work,"
        f" {cpu_us / 1000:.0f} ms of CPU"
    )
    for key, us in sorted(self_us.items(), key=lambda kv: -kv[1])[:18]:
        print(f"    {us / 1000:7.1f} ms  {key[:110]}")
    sampled = print_samples(events, pid, start, end)
    marks = sorted(
        (e["ts"], e["name"])
        for e in events
        if e.get("pid") == pid and "user_timing" in e.get("cat", "") and start <= e["ts"] <= end
    )
    print("  its tasks of 4 ms or more (start ms after navigation, duration, what ran longest):")
    for ts, dur, inner in tasks:
        while marks and marks[0][0] < ts:
            print(f"    {(marks[0][0] - start) / 1000:6.0f}           mark {marks.pop(0)[1]}")
        top = ", ".join(f"{k[:50]} {d / 1000:.0f}" for d, k in sorted(inner, reverse=True)[:3])
        js: dict[str, int] = {}
        for t, f in sampled:
            if ts <= t <= ts + dur:
                js[f] = js.get(f, 0) + 1
        top_js = ", ".join(f"{f} ({c})" for f, c in sorted(js.items(), key=lambda kv: -kv[1])[:3])
        print(f"    {(ts - start) / 1000:6.0f} {dur / 1000:6.1f} ms  {top}")
        if top_js:
            print(f"                     js samples: {top_js}")


async def one_run(
    browser,
    base: str,
    token: str,
    exam_id: str,
    count: int,
    profile: bool = False,
    cold_only: bool = False,
    trace: bool = False,
) -> dict[str, float]:
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    await context.add_cookies([{"name": "ti_session", "value": token, "url": base}])
    page = await context.new_page()
    # The cold open is awaited through DevTools (a promise on the page's marks), not with
    # Playwright's selectors: their script, injected into the page when first used (just
    # after the load event, while the room mounts), took 15-20 ms of the main thread the
    # first image was waiting for.
    cdp = await context.new_cdp_session(page)
    if profile:
        await cdp.send("Profiler.enable")
        await cdp.send("Profiler.setSamplingInterval", {"interval": 200})
        await cdp.send("Profiler.start")
    if trace:
        await browser.start_tracing(page=page, categories=TRACE_CATEGORIES)
    t0 = time.perf_counter()
    wall0 = time.time() * 1000
    await page.goto(f"{base}/#/exam/{exam_id}")
    await marked(cdp, FIRST_MARKS)
    shown = time.perf_counter() - t0
    if trace:
        print_trace(json.loads(await browser.stop_tracing()))
    if profile:
        taken = await cdp.send("Profiler.stop")
        print_profile("the cold open, to the archive's image", taken["profile"])
        await cdp.send("Profiler.start")
    await marked(cdp, ["viewer:first-image"])
    first = time.perf_counter() - t0
    if profile:
        taken = await cdp.send("Profiler.stop")
        print_profile("the cold open, from the archive's image to Cornerstone's", taken["profile"])
    phases = await page.evaluate(PHASES)
    # Where the page's clock starts (its navigation) after page.goto was called.
    phases["(goto called)"] = wall0 - await page.evaluate("performance.timeOrigin")
    # The cold open's figures (page clock in s, where the mark was taken) and phases.
    cold = {
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
    if cold_only:
        await context.close()
        return cold

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
    figures = {
        "warm_shown": warm_shown - start if warm_shown is not None else None,
        "warm_page": warm_page - start if warm_page is not None else None,
        "tab_shown": tab_shown,
        "tab_page": tab_page,
    }
    return {
        **cold,
        **{k: v / 1000 for k, v in figures.items() if v is not None},
        "warm": warm,
        "scroll": scroll,
        "scroll_direct": direct,
        "mpr_shown": mpr_shown,
        "mpr_loaded": mpr_loaded,
    }


# The first image on screen: the archive's rendering of slice 1 (frontend/firstimage.js),
# or Cornerstone3D's own first draw when that came first (a warm open) or was not shown.
FIRST_MARKS = ["viewer:preview-shown", "viewer:first-image"]


async def marked(cdp, names: list[str], timeout_ms: int = 60_000) -> None:
    """Wait until the page has one of these Performance API marks: a promise evaluated in
    the page through DevTools (nothing injected, no polling of the DOM)."""
    expression = f"""new Promise((resolve, reject) => {{
      const names = {json.dumps(names)};
      const seen = () => names.some((n) => performance.getEntriesByName(n, 'mark').length);
      if (seen()) return resolve(true);
      const watch = new PerformanceObserver(() => {{
        if (seen()) {{ watch.disconnect(); resolve(true); }}
      }});
      watch.observe({{ type: 'mark' }});
      setTimeout(() => reject(new Error('no mark ' + names)), {timeout_ms});
    }})"""
    answer = await cdp.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True})
    if "exceptionDetails" in answer:
        raise RuntimeError(answer["exceptionDetails"].get("text", "no mark"))


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
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print where the main thread's time went in each cold open, navigation to the"
        " archive's image (a Chromium trace: tasks, scripts, style, layout, paint)",
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
                        args.trace,
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
        ("shown", "same, seen by the bench (DevTools)", "ms"),
        ("first_page", "first image in the interactive viewer (Cornerstone), page", "ms"),
        ("first", "same, seen by the bench (DevTools)", "ms"),
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
