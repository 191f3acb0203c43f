"""Headless Chromium (Debian's package) driven by Playwright, and the whole sandbox in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from sandbox.runner import SandboxStack, sandbox_stack

CHROMIUM = Path("/usr/bin/chromium")
# Playwright starts Chromium headless with a fresh temporary profile (its own --user-data-dir);
# these are the flags this machine's closed network needs.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture
async def stack(tmp_path: Path, database_dsn: str, redis_url: str) -> AsyncIterator[SandboxStack]:
    """`incidentbot sandbox` as the CLI starts it, with the web view on a free port."""
    async with sandbox_stack(
        tmp_path,
        web_port=0,
        env={"database_url": database_dsn, "redis_url": redis_url},
        overrides={"log_format": "console", "sweep_interval_seconds": 0.5},
    ) as started:
        yield started


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: install the Debian package chromium "
            "(`apt-get install chromium`; scripts/provision.sh installs it)",
            pytrace=False,
        )
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1600, "height": 1000})
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield opened
    finally:
        await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(SCREENSHOTS, request.node.name)


class Shots:
    """Numbered screenshots of one test: artifacts/screenshots/<test>-<nn>-<step>.png."""

    def __init__(self, folder: Path, test: str) -> None:
        self.folder = folder
        self.test = test
        self.count = 0
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"{test}-*.png"):
            old.unlink()

    async def take(self, page: Page, step: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.test}-{self.count:02d}-{step}.png"
        await page.screenshot(path=str(path), full_page=False)
        return path
