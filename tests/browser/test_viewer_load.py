"""How the viewer loads a series in Chromium (docs/frontend.md "The viewer", "The
vendored Cornerstone3D"; docs/benchmarks.md "Viewer"), read from the page's own
resource timings and marks: what was asked, by whom and in which order, not how long
it took.

- the Cornerstone3D bundle arrives under its hashed name, compressed on the wire;
- the first slice's frame is asked once, by the viewer itself (`fetch`) as soon as the
  series' metadata says which slice is first, and the loader takes those bytes instead
  of asking again;
- the rest of the stack is asked only after the first image was drawn.
"""

from __future__ import annotations

from io import BytesIO

import pydicom
from playwright.async_api import expect

from server.testing import LiveServer
from tests.browser import loop
from tests.browser.conftest import DESKTOP
from tests.browser.test_viewer import exam_with_series, open_room

COUNT = 20

RESOURCES = r"""(first) => {
  const res = performance.getEntriesByType('resource');
  const hashed = /\/vendor\/cornerstone\/cornerstone-[A-Z2-7]{8}\.js$/;
  const bundle = res.find((r) => hashed.test(r.name));
  const frames = res.filter((r) => /\/frames\/\d+$/.test(r.name));
  const drawn = performance.getEntriesByName('viewer:first-image', 'mark')[0];
  return {
    bundle: bundle && { encoded: bundle.encodedBodySize, decoded: bundle.decodedBodySize },
    first: frames.filter((r) => r.name.includes(`/instances/${first}/frames/1`))
      .map((r) => r.initiatorType),
    drawn: drawn ? drawn.startTime : null,
    others: frames.filter((r) => !r.name.includes(`/instances/${first}/`)).map((r) => r.startTime),
  };
}"""


async def test_first_slice_asked_early_and_once_then_the_stack(
    live_server: LiveServer, accounts, client_for, new_context, js_errors
) -> None:
    base = live_server.url
    exam, parts = await exam_with_series(client_for, COUNT)
    # Slice i lies at i * THICKNESS along the normal: the first stored is the first shown.
    first = pydicom.dcmread(BytesIO(parts[0])).SOPInstanceUID
    rad = js_errors.watch(await loop.login(await new_context(DESKTOP), base, "rad"), "radiologist")
    await open_room(rad, base, exam["id"])
    # The whole stack loaded in the background.
    await rad.wait_for_function(
        "(n) => performance.getEntriesByType('resource')"
        ".filter((r) => /\\/frames\\/\\d+$/.test(r.name)).length >= n",
        arg=COUNT,
    )
    seen = await rad.evaluate(RESOURCES, first)

    assert seen["bundle"], "the hashed Cornerstone3D bundle was not loaded"
    # Brotli or gzip on the wire: a quarter of the 4.3 MB or less.
    assert 0 < seen["bundle"]["encoded"] < seen["bundle"]["decoded"] / 3

    assert seen["first"] == ["fetch"], seen["first"]
    assert seen["drawn"] is not None
    assert len(seen["others"]) == COUNT - 1
    assert min(seen["others"]) >= seen["drawn"]

    # The stack still scrolls and reformats with the frames it was given this way.
    await rad.locator("#viewer-canvas").focus()
    await rad.keyboard.press("End")
    await expect(rad.locator("#viewer-canvas")).to_have_attribute("data-slice", str(COUNT))
    await rad.click("#viewer-mode-mpr")
    coronal = rad.locator(".viewer-pane:has([data-orientation=coronal])")
    await expect(coronal.locator(".ori-top")).to_have_text("S")
