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


async def test_graphiql_opens_ready_and_sends_nothing_until_it_has_a_key(
    company: NewCompany, live_server: str, chromium: str
) -> None:
    """The first tab says where the key goes and holds a named example; no request goes out
    (no red UNAUTHENTICATED) until the key is given in the bar; then the schema's docs load
    and the example runs. The key stays in the tab's session storage."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        sent: list[str] = []
        page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/graphql") else None)
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("requestfailed", lambda request: problems.append(request.url))
        await page.goto(f"http://{live_server}/graphql", wait_until="networkidle")
        tab: str = await page.eval_on_selector(
            ".graphiql-query-editor .CodeMirror", "element => element.CodeMirror.getValue()"
        )
        assert (
            "API key bar above" in tab and "Nothing is sent" in tab and "query MyCompany {" in tab
        )
        await page.click(".graphiql-execute-button")
        await page.wait_for_function(
            "() => document.querySelector('.graphiql-response').innerText.includes('No API key')"
        )
        assert sent == [f"http://{live_server}/graphql"]  # the page itself, and nothing else

        await page.fill("#api-key", company.api_key)
        await page.click("#use-key")
        await page.click("button[aria-label='Show Documentation Explorer']")
        await page.get_by_text("Root Types").wait_for()  # the docs loaded
        await page.click(".graphiql-execute-button")
        await page.wait_for_function(
            "name => document.querySelector('.graphiql-response').innerText.includes(name)",
            arg=company.company.name,
        )
        kept = await page.evaluate("() => sessionStorage.getItem('sync2books.graphiql.key')")
        assert kept == company.api_key
        await page.reload(wait_until="networkidle")  # the tab keeps its key: the docs load again
        await page.wait_for_function("() => document.querySelector('#forget-key').hidden === false")
        await browser.close()
    assert problems == []
