"""Create expenses, then follow their sync batch live: the seed's polling loop, replaced.

    python examples/follow_batch.py --url http://127.0.0.1:8000 --key s2b_... --company-id cmp_...

One subscription instead of a poll every 2-3 s: each status transition arrives the moment
the worker makes it, and the stream completes when the batch does. Needs `gql[websockets,httpx]`.
"""

import argparse
import asyncio
import json

from gql import Client, gql
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

CREATE = gql(
    """
    mutation Create($companyId: ID!, $expenses: [ExpenseInput!]!) {
      createExpenses(companyId: $companyId, expenses: $expenses) { syncBatchId }
    }
    """
)
EVENTS = gql(
    """
    subscription Follow($batchId: ID!) {
      syncBatchEvents(batchId: $batchId) {
        eventId itemId fromStatus toStatus error { code message hint }
      }
    }
    """
)
SUMMARY = gql(
    """
    query Summary($id: ID!) {
      syncBatch(id: $id) { status itemCount successCount failedCount }
    }
    """
)

EXPENSES = [
    {"amount": "42.00", "currency": "USD", "date": "2026-11-02", "accountId": "429",
     "taxRateId": "INPUT", "vendorName": "Cafe Uno", "reference": "lunch-1"},
    {"amount": "18.90", "currency": "USD", "date": "2026-11-03", "accountId": "453",
     "vendorName": "Paper Co", "reference": "paper-1"},
]  # fmt: skip


async def follow(url: str, key: str, company_id: str) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {key}"}
    http = HTTPXAsyncTransport(url=f"{url}/graphql", headers=headers)
    live = WebsocketsTransport(
        url=f"{url.replace('http', 'ws', 1)}/graphql",
        init_payload=headers,  # the key travels in connection_init
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],  # graphql-transport-ws
    )
    async with Client(transport=http) as session:
        variables = {"companyId": company_id, "expenses": EXPENSES}
        created = await session.execute(CREATE, variable_values=variables)
    batch_id = created["createExpenses"]["syncBatchId"]
    print(f"batch {batch_id} queued")

    async with Client(transport=live) as session:
        async for result in session.subscribe(EVENTS, variable_values={"batchId": batch_id}):
            print(json.dumps(result["syncBatchEvents"]))  # ends after the batch's last event

    async with Client(transport=http) as session:
        summary = await session.execute(SUMMARY, variable_values={"id": batch_id})
    batch: dict[str, object] = summary["syncBatch"]
    print(f"batch {batch['status']}: {batch['successCount']} synced, {batch['failedCount']} failed")
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--company-id", required=True)
    args = parser.parse_args()
    asyncio.run(follow(args.url, args.key, args.company_id))


if __name__ == "__main__":
    main()
