"""Retake the README's screenshot (docs/sandbox.png) from the sandbox: a demo alert fired through
the real Prometheus and Alertmanager, its graph and failed check, the runbook's restart approved
from the page, and the verification that saw the recovery in the metrics.

Usage: .venv/bin/python scripts/sandbox_screenshot.py [docs/sandbox.png]
Needs what `make test` provisions (PostgreSQL, Redis, Prometheus, Alertmanager, /usr/bin/chromium).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.runner import DEMO_ALERTS, sandbox_stack  # noqa: E402  (the repository on sys.path)
from sandbox.services import PostgresServer, RedisServer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 90_000


async def main(target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="incidentbot-shot-") as tmp:
        work = Path(tmp)
        with PostgresServer.start(work) as postgres, RedisServer.start(work) as redis:
            env = {"database_url": postgres.create_database("shot"), "redis_url": redis.url}
            async with (
                sandbox_stack(
                    work, web_port=0, env=env, overrides={"log_format": "console"}, metrics=True
                ) as stack,
                async_playwright() as pw,
            ):
                assert stack.web_url is not None
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
                )
                page = await browser.new_page(viewport={"width": 1500, "height": 1000})
                await page.goto(stack.web_url)
                name = next(n for n, labels, _ in DEMO_ALERTS if labels["namespace"] == "skillquest")
                await page.get_by_test_id(f"fire-{name}").click()
                channel = page.locator('#channels button[data-channel-name^="inc-"]')
                await channel.first.wait_for(timeout=WAIT_MS)
                await channel.first.click()
                approve = page.locator('#messages .msg [data-action-id="approve_action"]').first
                await approve.wait_for(timeout=WAIT_MS)
                await page.get_by_test_id("user-picker").select_option("U_BOB")
                await approve.click()
                verdict = page.locator("#messages .msg").filter(has_text="Verification of")
                await verdict.first.wait_for(timeout=WAIT_MS)
                await verdict.first.scroll_into_view_if_needed()
                await page.screenshot(path=str(target))
                await browser.close()
    print(f"wrote {target}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "sandbox.png"))
