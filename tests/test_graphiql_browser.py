"""GraphiQL in a real headless Chromium: it runs a subscription and shows events arriving."""

import json

import pytest
from playwright.async_api import Page, async_playwright

from models.company import NewCompany
from tests.conftest import CHROMIUM_FLAGS, Api, RunJobs
from tests.helpers import CREATE_EXPENSES, data, expense

pytestmark = pytest.mark.slow


async def _set_editor(page: Page, selector: str, text: str) -> None:
    """Type into the visible one of GraphiQL's CodeMirror editors, through its own API."""
    editor = page.locator(f"{selector} .CodeMirror").locator("visible=true")
    await editor.wait_for()
    await editor.evaluate("(element, text) => element.CodeMirror.setValue(text)", text)


async def _response(page: Page) -> str:
    text: str = await page.eval_on_selector(
        ".graphiql-response .CodeMirror", "element => element.CodeMirror.getValue()"
    )
    return text


async def test_graphiql_runs_a_subscription_and_shows_events_arriving(
    api: Api, company: NewCompany, live_server: str, run_jobs: RunJobs, chromium: str
) -> None:
    variables = {"companyId": company.company.id, "expenses": [expense()]}
    batch_id = data(await api.gql(CREATE_EXPENSES, variables))["createExpenses"]["syncBatchId"]
    subscription = (
        f'subscription {{ syncBatchEvents(batchId: "{batch_id}") {{ eventId itemId toStatus }} }}'
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        failed_requests: list[str] = []
        page.on("requestfailed", lambda request: failed_requests.append(request.url))
        await page.goto(f"http://{live_server}/graphql", wait_until="networkidle")
        await _set_editor(page, ".graphiql-query-editor", subscription)
        await _set_editor(
            page,
            ".graphiql-editor-tool",
            json.dumps({"Authorization": f"Bearer {company.api_key}"}),
        )
        await page.click(".graphiql-execute-button")
        await page.wait_for_function(
            "() => document.querySelector('.graphiql-response').innerText.includes('PENDING')"
        )
        await run_jobs()
        await page.wait_for_function(
            "() => document.querySelector('.graphiql-response').innerText.includes('COMPLETED')",
            timeout=10_000,
        )
        last = json.loads(await _response(page))
        await browser.close()
    assert last["data"]["syncBatchEvents"]["toStatus"] == "COMPLETED"
    assert last["data"]["syncBatchEvents"]["itemId"] is None
    assert failed_requests == []  # every asset came from the service itself
