"""Browser fixtures: Debian's Chromium driven by PyPI Playwright, a context per
user, screenshots kept as test artifacts.

The async API is used: the sync one keeps its own event loop running in the main
thread, which the shared async fixtures (database, accounts) cannot run beside.
The live server runs in its own thread (server/testing.py).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
DESKTOP = {"width": 1920, "height": 1080}
TABLET = {"width": 1024, "height": 768}


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `bash scripts/services.sh` (apt-get install chromium)"
        )
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def new_context(browser: Browser) -> AsyncIterator[Callable[..., Awaitable[BrowserContext]]]:
    """``new_context(viewport=TABLET)``: an isolated browser profile (own cookies)."""
    contexts: list[BrowserContext] = []

    async def make(viewport: dict[str, int] = DESKTOP, locale: str = "fr-FR") -> BrowserContext:
        context = await browser.new_context(viewport=viewport, locale=locale)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        await context.close()


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[[Page, str], Awaitable[Path]]:
    """``shot(page, "worklist-radiologist")`` saves test-artifacts/screenshots/<test>-<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def take(page: Page, name: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{name}.png"
        await page.screenshot(path=str(path))
        return path

    return take


class JsErrors:
    """Collects uncaught page errors and console errors: a test fails on any."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Page, who: str) -> Page:
        page.on("pageerror", lambda exc: self.errors.append(f"{who}: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"{who}: console {msg.text}")
                if msg.type == "error" and not _expected_console(msg.text)
                else None
            ),
        )
        return page


def _expected_console(text: str) -> bool:
    # Resource errors the app handles on purpose: routes of parts not merged yet
    # (404 on report/templates), the quiet notifications retry, the offline test.
    return (
        "Failed to load resource" in text
        or "WebSocket connection" in text
        or "ERR_INTERNET_DISCONNECTED" in text
    )


@pytest.fixture
def js_errors() -> Iterator[JsErrors]:
    errors = JsErrors()
    yield errors
    assert not errors.errors, errors.errors
