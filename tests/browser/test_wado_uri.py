"""A RIS link in the browser: WADO-URI (PS3.18 chapter 9) with the session
cookie of the signed-in user, the image shown in an ``<img>``; another
establishment's user gets 404, nobody signed in 401 (docs/dicomweb.md)."""

from __future__ import annotations

import io
from urllib.parse import urlencode

from playwright.async_api import BrowserContext
from pydicom import dcmread

from dicomweb.samples import ct_series, multipart
from server.testing import LiveServer
from tests.browser import loop
from tests.browser.test_images_report import exam_in_acquisition
from tests.helpers import of_exam


async def test_ris_link_opens_in_the_browser(
    live_server: LiveServer, client_for, new_context
) -> None:  # type: ignore[no-untyped-def]
    exam = await exam_in_acquisition(client_for)
    man = await client_for("man_a")
    slices = list(ct_series(2, size=128, **of_exam(exam)))
    body, ctype = multipart(slices)
    stored = await man.post("/dicomweb/studies", content=body, headers={"content-type": ctype})
    assert stored.status_code == 200, stored.text
    ds = dcmread(io.BytesIO(slices[0]), stop_before_pixels=True)
    link = "/dicomweb/wado?" + urlencode(
        {
            "requestType": "WADO",
            "studyUID": ds.StudyInstanceUID,
            "seriesUID": ds.SeriesInstanceUID,
            "objectUID": ds.SOPInstanceUID,
            "contentType": "image/jpeg",
            "rows": "96",
        }
    )
    base = live_server.url

    radiologist: BrowserContext = await new_context()
    page = await loop.login(radiologist, base, "rad")
    response = await page.goto(base + link)
    assert response is not None and response.status == 200
    assert response.headers["content-type"] == "image/jpeg"
    # Embedded as a RIS page would embed it: the browser decodes the JPEG.
    await page.goto(base + "/")
    size = await page.evaluate(
        """async (src) => {
            const img = new Image();
            img.src = src;
            await img.decode();
            return [img.naturalWidth, img.naturalHeight];
        }""",
        link,
    )
    assert size == [96, 96]
    # The DICOM file itself, fetched by the page (a link to it would download).
    dicom_link = link.replace("image%2Fjpeg", "application%2Fdicom").replace("&rows=96", "")
    status, kind, data = await page.evaluate(
        """async (src) => {
            const r = await fetch(src);
            const bytes = new Uint8Array(await r.arrayBuffer());
            return [r.status, r.headers.get("content-type"), Array.from(bytes)];
        }""",
        dicom_link,
    )
    assert status == 200 and kind == "application/dicom"
    assert bytes(data) == slices[0]

    other_site: BrowserContext = await new_context()
    other = await loop.login(other_site, base, "urg_b")
    refused = await other.goto(base + link)
    assert refused is not None and refused.status == 404

    nobody: BrowserContext = await new_context()
    anonymous = await (await nobody.new_page()).goto(base + link)
    assert anonymous is not None and anonymous.status == 401
