"""Peer review in Chromium (docs/review.md): the reviewer opens a review from the
worklist's panel, reads the report and the images, is told a comment is needed for a
discrepancy and sends the score; the author's figures show it."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.async_api import expect

from server.testing import LiveServer
from tests.browser import loop
from tests.browser.conftest import DESKTOP
from tests.browser.test_viewer import exam_with_series
from tests.helpers import PASSWORD
from tests.reports.helpers import DRAFT, ok


async def test_the_reviewer_scores_a_report_from_the_panel(
    live_server: LiveServer, client_for, new_context, js_errors
) -> None:
    urg, rad, rad2, man = [await client_for(u) for u in ("urg_a", "rad", "rad2", "man_a")]
    exam, _ = await exam_with_series(client_for, count=4)
    base = f"/api/exams/{exam['id']}"
    await ok(await man.post(f"{base}/images-complete"))
    await ok(await rad.put(f"{base}/report", json=DRAFT))
    body = {"password": PASSWORD, "review_requested": True}
    await ok(await rad.post(f"{base}/report/sign", json=body))
    [review] = (await ok(await rad2.get("/api/reviews")))["reviews"]
    rid = review["id"]

    page = js_errors.watch(
        await loop.login(await new_context(DESKTOP), live_server.url, "rad2"), "reviewer"
    )
    await page.click("#review-panel summary")
    await expect(page.locator(f"#review-{rid}")).to_contain_text("Demandée par l'auteur")
    await page.click(f"#review-open-{rid}")
    await expect(page.locator(f"#review-report-{rid}")).to_contain_text(DRAFT["conclusion"])
    # The images, read as the author read them.
    await page.click(f"#review-series-{rid} button")
    await expect(page.locator("#viewer-canvas")).to_have_attribute("data-slice", "1")
    await expect(page.locator(".ov-slice")).to_contain_text("Coupe 1/4")
    await page.select_option(f"#review-score-{rid}", "3b")
    await page.click(f"#review-submit-{rid}")
    await expect(page.locator(f"#review-error-{rid}")).to_have_text(
        "Un commentaire est requis à partir de 2."
    )
    await page.fill(f"#review-comment-{rid}", "Occlusion M2 non décrite")
    await page.click(f"#review-submit-{rid}")
    await expect(page.locator(f"#review-{rid}")).to_have_attribute("data-score", "3b")
    got = await ok(await rad2.get(f"/api/reviews/{rid}"))
    assert (got["score"], got["comment"]) == ("3b", "Occlusion M2 non décrite")

    # The author's own figures for the month.
    author = js_errors.watch(
        await loop.login(await new_context(DESKTOP), live_server.url, "rad"), "author"
    )
    await author.click("#review-panel summary")
    await expect(author.locator("#review-figures")).to_contain_text("3b 1")
    await expect(author.locator("#review-figures")).to_contain_text("(1)")
    assert datetime.now(UTC).strftime("%Y-%m") == await author.input_value("#review-month")
