"""The monitor page in a real headless Chromium: sign in, watch a batch sync live, retry."""

import asyncio
import contextlib
import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import ConsoleMessage, Page, WebSocketRoute, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout
from sqlalchemy import delete, update
from sqlmodel import col

from api.app import create_app
from infra.services import Services
from infra.settings import Settings
from models.company import NewCompany
from models.tables import Company, SyncEvent
from tests.conftest import CHROMIUM_FLAGS, Api, RunJobs, asgi_api, runtime_of
from tests.helpers import (
    CREATE_EXPENSES,
    PDF,
    batch_events,
    data,
    eventually,
    expense,
    new_batch,
    upload,
)
from tests.live import serving

pytestmark = pytest.mark.slow
CREATE_ACCOUNT = """
mutation($c: ID!) { createAccount(companyId: $c, input: {code: "999", name: "Misc", type: EXPENSE})
{ code } }
"""


def _errors_only(message: ConsoleMessage, problems: list[str]) -> None:
    if message.type == "error":
        problems.append(message.text)


def _row(page: Page, batch_id: str) -> Any:  # Any: playwright's Locator
    return page.locator(f'#batches tr[data-batch-id="{batch_id}"]')


async def test_the_monitor_shows_a_batch_complete_live_and_retries_its_failed_item(
    api: Api, company: NewCompany, live_server: str, run_jobs: RunJobs, chromium: str
) -> None:
    pictures = os.environ.get("SYNC2BOOKS_SCREENSHOTS")  # where to save the README's pictures
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 800})
        problems: list[str] = []
        page.on("requestfailed", lambda request: problems.append(request.url))
        page.on("console", lambda message: _errors_only(message, problems))
        await page.goto(f"http://{live_server}/monitor")

        await page.get_by_label("Company API key").fill("not-a-key")
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_text("That key is not valid.").wait_for()
        problems.clear()  # the refused request is the browser's console error

        await page.get_by_label("Company API key").fill(company.api_key)
        await page.get_by_role("button", name="Sign in").click()
        await page.locator("#live.on").wait_for()
        assert not await page.locator("#sign-in").is_visible()
        throughput = page.locator("#throughput")
        await throughput.locator("canvas").wait_for()
        assert await throughput.get_attribute("data-points") == "0"
        assert "Last hour: 0 synced, 0 failed" in await throughput.inner_text()
        # The gauge shows the calls of the clock's minute: one that ends between the pushes
        # and the monitor's read would show them gone. Start with most of a minute ahead.
        await eventually(lambda: time.time() % 60 < 40, "two thirds of a minute ahead", seconds=25)
        await page.locator("#budget-minute-text").filter(has_text="left").wait_for()
        calls_used = float(await page.locator("#budget-minute").get_attribute("value") or 0)

        variables = {
            "companyId": company.company.id,
            "expenses": [expense(reference="ok-1"), expense(reference="bad-1", accountId="999")],
        }
        created = data(await api.gql(CREATE_EXPENSES, variables))["createExpenses"]
        batch_id = created["syncBatchId"]
        receipt = [("receipt.pdf", PDF, "application/pdf")]
        data(await upload(api, created["expenses"][0]["id"], receipt))
        await _row(page, batch_id).wait_for()  # it appears without a reload…
        await page.locator("#filter-state").filter(has_text="The newest of 1 batch,").wait_for()
        bar = _row(page, batch_id).get_by_role("img")
        assert (await bar.get_attribute("aria-label") or "").startswith("0% done")
        await run_jobs()
        await _row(page, batch_id).locator(".status.COMPLETED").wait_for()  # …and completes
        assert await bar.get_attribute("aria-label") == ("100% done: 1 synced, 1 failed, 0 waiting")
        await page.get_by_text("up to 50 records a call").wait_for()  # its budget…
        gauge = page.locator("#budget-minute")

        async def spent() -> bool:
            return float(await gauge.get_attribute("value") or 0) > calls_used

        await eventually(spent, "the pushes spent calls of the ledger's minute")  # …spent
        await page.locator("#throughput[data-points='1']").wait_for()  # the chart gained a point
        assert "1 synced, 1 failed" in await throughput.inner_text()
        assert "Highest 50%" in await page.locator("#failure-rate").inner_text()
        feed = page.locator("#feed")  # records named as their owner knows them
        await feed.get_by_text("Cafe Uno · 12.50 USD · bad-1: PROCESSING → FAILED").wait_for()
        shown = await _row(page, batch_id).inner_text()
        assert "50%" in shown and shown.rstrip().endswith("—")  # ended: no expected end

        await _row(page, batch_id).click()
        failed = page.locator("#failed tbody tr")
        await failed.filter(has_text="INVALID_ACCOUNT_ID").wait_for()
        assert "bad-1" in await failed.inner_text()
        await failed.get_by_role("button", name="History of Cafe Uno · 12.50 USD · bad-1").click()
        history = page.locator("#history tbody tr")
        await history.filter(has_text="INVALID_ACCOUNT_ID").wait_for()  # its one operation
        assert "create" in await history.inner_text()
        assert "not in the ledger yet" in await page.locator("#history-summary").inner_text()
        files = page.locator("#attachments tbody tr")
        await files.filter(has_text="receipt.pdf").filter(has_text="SUCCESS").wait_for()
        assert "ok-1" in await files.inner_text()
        async with page.expect_download() as downloading:  # its link, as the page gives it
            await files.get_by_role("link", name="receipt.pdf").click()
        download = await downloading.value
        assert await asyncio.to_thread(Path(await download.path()).read_bytes) == PDF
        if pictures:
            await page.screenshot(path=str(Path(pictures) / "monitor.png"), full_page=True)

        await api.gql(CREATE_ACCOUNT, {"c": company.company.id})
        await page.get_by_role("button", name="Retry failed items").click()
        await _row(page, batch_id).locator(".status.PROCESSING").wait_for()
        await run_jobs()
        await page.locator("#no-failed:not([hidden])").wait_for()  # once retried, not done
        await _row(page, batch_id).locator(".status.COMPLETED").wait_for()
        row = await _row(page, batch_id).inner_text()
        assert "COMPLETED" in row and "0%" in row
        for width in WIDTHS:
            await _fits(page, width, batch_id, pictures)
        created = await page.evaluate(  # times in the locale's one way, as the charts' axes
            "id => Times.when(new Date(document.querySelector(`tr[data-batch-id='${id}']`)"
            ".dataset.createdAt))",
            batch_id,
        )
        assert created in row
        await browser.close()
    assert problems == []  # the favicon too: a 404 is a console error


WIDTHS = (375, 800, 1400)  # a phone, a narrow window, a desktop
# How far the page scrolls sideways, and what sticks out of the window outside a table's box.
OVERFLOW = """() => [document.documentElement.scrollWidth - window.innerWidth,
    [...document.querySelectorAll('main *, header *')].filter(e =>
      e.getBoundingClientRect().right > window.innerWidth + 0.5
      && !e.closest('.table-box')).map(e => e.outerHTML.slice(0, 80))]"""


async def _fits(page: Page, width: int, batch_id: str, pictures: str | None) -> None:
    """At this width the page never scrolls sideways (a wide table scrolls in its own box),
    and opening a batch brings its details into view with the focus on them."""
    await page.set_viewport_size({"width": width, "height": 800})
    await page.evaluate("() => window.scrollTo(0, 0)")
    with contextlib.suppress(PlaywrightTimeout):  # the charts resize on the window's event,
        await page.wait_for_function(  # which may come after this look: let it land first
            f"() => {{ const [gap, over] = ({OVERFLOW})(); return !gap && !over.length; }}",
            timeout=5000,
        )
    overflow = await page.evaluate(OVERFLOW)
    assert overflow == [0, []], (width, overflow)
    await _row(page, batch_id).click()
    await page.wait_for_function("() => document.activeElement.id === 'batch-title'")
    await page.wait_for_function(  # scrolled to it: its heading and what follows in the window
        "() => { const top = document.getElementById('batch').getBoundingClientRect().top;"
        " return top >= 0 && top < window.innerHeight - 200; }"
    )
    if pictures:
        await page.screenshot(path=str(Path(pictures) / f"monitor-{width}.png"), full_page=True)


VENDORS = ["Cafe Uno", "Northwind Travel", "Office Depot", "AWS", "Uber", "Hilton"]


async def _sign_in(page: Page, address: str, key: str) -> None:
    said: list[str] = []
    page.on("console", lambda message: said.append(f"{message.type}: {message.text}"))
    await page.goto(f"http://{address}/monitor")
    await page.get_by_label("Company API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    refused = page.locator("#sign-in-error:not(:empty)")
    try:
        await page.locator("#live.on").or_(refused).wait_for()
    except PlaywrightTimeout:
        pytest.fail(f"never live: {await page.locator('#live').inner_text()!r}; console: {said}")
    assert not await refused.count(), await refused.inner_text()  # what the page said


async def test_a_busy_hour_then_a_failure_alert_as_the_monitor_draws_them(
    api: Api,
    company: NewCompany,
    other_company: NewCompany,
    services: Services,
    live_server: str,
    run_jobs: RunJobs,
    chromium: str,
) -> None:
    """An hour of a busy company: 60 batches of 50 expenses created through the API and synced,
    each batch's transitions then dated a minute apart over the last hour (a test cannot wait
    an hour). Then another company, whose ledger refuses most of a batch, with its alert.
    `SYNC2BOOKS_SCREENSHOTS=dir` saves both pages for the README."""
    pictures = os.environ.get("SYNC2BOOKS_SCREENSHOTS")
    cid = company.company.id
    batch_ids = []
    for minute in range(60):
        failing = minute // 15  # failures creep up as the hour goes on: 0 to 3 in 50
        records = [
            expense(
                reference=f"INV-{minute:02}{n:02}",
                vendorName=VENDORS[(minute + n) % len(VENDORS)],
                amount=f"{10 + (minute * 7 + n * 13) % 490}.{n % 100:02}",
                accountId="999" if n < failing else "429",
            )
            for n in range(50)
        ]
        created = data(await api.gql(CREATE_EXPENSES, {"companyId": cid, "expenses": records}))
        batch_ids.append(created["createExpenses"]["syncBatchId"])
    await run_jobs()
    now = datetime.now(UTC)
    async with services.db.transaction() as session:
        for minute, batch_id in enumerate(batch_ids):
            await session.execute(
                update(SyncEvent)
                .where(SyncEvent.batch_id == batch_id)
                .values(occurred_at=now - timedelta(minutes=59 - minute, seconds=30))
            )

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 900})
        await _sign_in(page, live_server, company.api_key)
        throughput = page.locator("#throughput")
        await throughput.locator("canvas").wait_for()
        points = int(await throughput.get_attribute("data-points") or 0)
        assert points >= 58  # one a minute (the oldest may have slid out of the hour)
        assert "synced" in await throughput.inner_text()
        if pictures:
            await page.screenshot(path=str(Path(pictures) / "monitor-busy.png"))

        pages = page.locator("#filter-state")  # pages through the API's cursors
        await pages.filter(has_text="The newest of 60 batches").wait_for()
        await page.get_by_role("button", name="Older").click()
        await pages.filter(has_text="Page 2 of 60 batches").wait_for()
        assert await page.locator("#batches tbody tr").count() == 10
        await page.get_by_role("button", name="Newer").click()
        await pages.filter(has_text="The newest of 60 batches").wait_for()
        await page.get_by_label("Status").select_option("FAILED")
        await page.get_by_role("button", name="Show").click()
        await pages.filter(has_text="0 FAILED batches").wait_for()
        await page.get_by_text("No batches match these filters.").wait_for()
        await page.get_by_role("button", name="Latest, live").click()
        await pages.filter(has_text="The newest of 60 batches").wait_for()

        await page.get_by_label("Reference").fill("INV-0102")  # a record, by its owner's number
        await page.get_by_role("button", name="Find").click()
        found = page.locator("#found tbody tr")
        await found.filter(has_text="AWS · 43.02 USD · INV-0102").wait_for()
        assert "SUCCESS" in await found.inner_text()
        await page.get_by_text("1 record with reference INV-0102.").wait_for()

        await page.close()

        # Another company, whose ledger refuses most of a batch: its failure rate alert
        services.settings.alert_min_items = 10
        burst = [
            expense(reference=f"BAD-{n}", accountId="999" if n % 3 else "429") for n in range(30)
        ]
        variables = {"companyId": other_company.company.id, "expenses": burst}
        data(await api.gql(CREATE_EXPENSES, variables, key=other_company.api_key))
        await run_jobs()
        page = await browser.new_page(viewport={"width": 1200, "height": 900})
        await _sign_in(page, live_server, other_company.api_key)
        await page.locator("#alerts .alert").filter(has_text="failure rate").wait_for()
        rates = page.locator("#failure-rate .summary")
        assert "this minute 67%" in await rates.inner_text()
        if pictures:
            await page.screenshot(path=str(Path(pictures) / "monitor-alert.png"))
        await browser.close()


async def test_the_monitor_back_after_retention_removed_what_it_missed_reads_it_again(
    api: Api, company: NewCompany, services: Services, live_server: str, run_jobs: RunJobs,
    chromium: str,
) -> None:  # fmt: skip
    sockets: list[WebSocketRoute] = []
    reconnect = asyncio.Event()

    async def through(route: WebSocketRoute) -> None:
        if sockets:  # the monitor's reconnect waits while its company's log moves on
            await reconnect.wait()
        route.connect_to_server()
        sockets.append(route)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 800})
        await page.route_web_socket("**/graphql", through)
        await page.goto(f"http://{live_server}/monitor")
        await page.get_by_label("Company API key").fill(company.api_key)
        await page.get_by_role("button", name="Sign in").click()
        await page.locator("#live.on").wait_for()

        await sockets[0].close()  # the network drops: the monitor saw nothing after this
        await page.locator("#live:not(.on)").wait_for()
        batch_id = await new_batch(api, company, [expense(reference="while-away")])
        await run_jobs()
        missed = await batch_events(services.db, batch_id=batch_id)
        async with services.db.transaction() as session:  # retention removed the first of them
            await session.execute(delete(SyncEvent).where(col(SyncEvent.id) == missed[0].id))
            await session.execute(
                update(Company)
                .where(col(Company.id) == company.company.id)
                .values(events_expired_through=missed[0].id)
            )
        reconnect.set()
        await _row(page, batch_id).locator(".status.COMPLETED").wait_for()  # read again
        await page.locator("#live.on").wait_for()  # and followed from now
        assert len(sockets) == 3  # the refused resume's, then the reloaded page's own
        await browser.close()


async def test_the_monitor_says_when_a_batch_waits_for_tomorrows_calls(
    services: Services, live_settings: Settings, company: NewCompany, chromium: str
) -> None:
    if 86_400 - time.time() % 86_400 < 120:  # the day about to turn would put nothing off
        await asyncio.sleep(125)
    daily = live_settings.model_copy(
        update={"sandbox_daily_limit": 3, "sandbox_rate_limit_per_minute": 60}
    )
    limited = replace(services, settings=daily)
    async with serving(create_app(daily, runtime=runtime_of(limited))) as address:
        async with asgi_api(limited, daily, company.api_key) as api:
            batch_id = await new_batch(api, company, [expense() for _ in range(250)])  # 5 calls
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium, args=CHROMIUM_FLAGS
            )
            page = await browser.new_page(viewport={"width": 1400, "height": 800})
            await page.goto(f"http://{address}/monitor")
            await page.get_by_label("Company API key").fill(company.api_key)
            await page.get_by_role("button", name="Sign in").click()
            row = _row(page, batch_id)
            await row.wait_for()
            shown = await row.inner_text()
            await browser.close()
    assert "left (the ledger's calls for today are used up: the rest goes after midnight" in shown
