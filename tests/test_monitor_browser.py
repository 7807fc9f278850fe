"""The monitor page in a real headless Chromium: sign in, watch a batch sync live, retry."""

import os
from typing import Any

import pytest
from playwright.async_api import ConsoleMessage, Page, async_playwright

from models.company import NewCompany
from tests.conftest import CHROMIUM_FLAGS, Api
from tests.helpers import CREATE_EXPENSES, PDF, data, expense, upload

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
    api: Api, company: NewCompany, live_server: str, run_jobs: Any, chromium: str
) -> None:
    screenshot = os.environ.get("SYNC2BOOKS_SCREENSHOT")  # where to save the README's picture
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

        variables = {
            "companyId": company.company.id,
            "expenses": [expense(reference="ok-1"), expense(reference="bad-1", accountId="999")],
        }
        created = data(await api.gql(CREATE_EXPENSES, variables))["createExpenses"]
        batch_id = created["syncBatchId"]
        receipt = [("receipt.pdf", PDF, "application/pdf")]
        data(await upload(api, created["expenses"][0]["id"], receipt))
        await _row(page, batch_id).wait_for()  # it appears without a reload…
        bar = _row(page, batch_id).get_by_role("img")
        assert (await bar.get_attribute("aria-label") or "").startswith("0% done")
        await run_jobs()
        await _row(page, batch_id).locator(".status.COMPLETED").wait_for()  # …and completes
        assert await bar.get_attribute("aria-label") == ("100% done: 1 synced, 1 failed, 0 waiting")
        await page.get_by_text("calls a minute of up to 50 records").wait_for()  # its budget
        shown = await _row(page, batch_id).inner_text()
        assert "50%" in shown and shown.rstrip().endswith("—")  # ended: no expected end

        await _row(page, batch_id).click()
        failed = page.locator("#failed tbody tr")
        await failed.filter(has_text="INVALID_ACCOUNT_ID").wait_for()
        assert "bad-1" in await failed.inner_text()
        files = page.locator("#attachments tbody tr")
        await files.filter(has_text="receipt.pdf").filter(has_text="SUCCESS").wait_for()
        assert "ok-1" in await files.inner_text()
        if screenshot:
            await page.screenshot(path=screenshot, full_page=True)

        await api.gql(CREATE_ACCOUNT, {"c": company.company.id})
        await page.get_by_role("button", name="Retry failed items").click()
        await _row(page, batch_id).locator(".status.PROCESSING").wait_for()
        await run_jobs()
        await page.locator("#no-failed:not([hidden])").wait_for()  # once retried, not done
        await _row(page, batch_id).locator(".status.COMPLETED").wait_for()
        row = await _row(page, batch_id).inner_text()
        assert "COMPLETED" in row and "0%" in row
        await browser.close()
    assert problems == []
