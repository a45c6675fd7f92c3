"""The /admin console in headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright; no browser is ever downloaded): signing in, no console errors, a real backfill
moving its session row live over SSE, and an action clicked through to its effect on the
bus. ``SYNCPLANE_CONSOLE_SCREENSHOT=path`` also saves a screenshot of the page. (The
README's docs/img/admin-console.png was taken the same way on a live stack, a few seconds
after the demo's seed and connect scenes with eight users.)"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.console_harness import Console, console_stack
from tests.integration.sync_harness import eventually, seed_strava

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
# What the machine allows and what keeps Chromium from phoning home at start.
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
USER = "u-browser"
PAGES = 12  # backfill pages, each slowed a little so the row is seen moving

if not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)):
    pytest.skip(
        f"no Chromium at {CHROMIUM} (Debian package `chromium`); the console's browser "
        "test needs it and never downloads one",
        allow_module_level=True,
    )
playwright_api = pytest.importorskip("playwright.async_api")


@pytest.fixture(scope="module")
async def console(nats_server: Any, database_url: str) -> AsyncIterator[Console]:
    async with console_stack(nats_server.url, database_url, strava_per_page=25) as c:
        yield c


async def test_console_in_chromium(console: Console) -> None:
    errors: list[str] = []
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))

            # Sign in through the form.
            await page.goto(f"{console.url}/admin")
            await page.fill("textarea[name=token]", console.gateway.token("ops", admin=True))
            await page.click("text=Sign in")
            await page.wait_for_selector("#live[data-state=open]", timeout=10_000)
            assert await page.title() == "syncplane console"

            # A real backfill, slowed per page: its row appears and moves without a reload.
            hint = f"{USER}-athlete"
            await seed_strava(console.stack, hint, PAGES * 25 - 5)
            await console.stack.control(
                "POST",
                "/_sandbox/faults",
                {"provider": "strava", "endpoint": "GET /athlete/activities", "latency_ms": 150},
            )
            try:
                await console.stack.connect(USER, "strava", hint)
                row = page.locator("#sessions-body tr", has_text=USER)
                stored_cell = row.locator('[data-field="stored"]')
                seen: list[str] = []

                async def moved() -> bool:
                    if await row.count():
                        text = (await stored_cell.text_content()) or ""
                        if text and (not seen or seen[-1] != text):
                            seen.append(text)
                        state: str | None = await row.get_attribute("data-state")
                        return state == "completed"
                    return False

                await eventually(moved, within=30.0, every=0.05)
            finally:
                await console.stack.control("DELETE", "/_sandbox/faults")
            assert len(seen) >= 3, f"the row should move page by page, saw {seen}"
            assert [int(s) for s in seen] == sorted(int(s) for s in seen)
            assert seen[-1] == str(PAGES * 25 - 5)
            assert await row.locator('[data-field="state"]').text_content() == "completed"

            # An action: sync the user now, from the form; the page says so, the bus has it.
            form = page.locator('form[action="/admin/actions/sync-user"]')
            await form.locator("input[name=user_id]").fill(USER)
            await form.locator("select[name=provider]").select_option("strava")
            await form.locator("button").click()
            flash = page.locator("#flash[data-ok=true]", has_text="Sync queued for")
            await flash.wait_for(timeout=10_000)
            await eventually(
                lambda: [
                    b
                    for b in console.seen.of("sync.requested.strava", USER)
                    if b["priority"] == "interactive" and b["request_id"].startswith("manual-")
                ]
            )

            shot = os.environ.get("SYNCPLANE_CONSOLE_SCREENSHOT")
            if shot:
                Path(shot).parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=shot, full_page=True)
        finally:
            await browser.close()
    assert errors == []
