"""A real webhook receiver on loopback, and the steps tests take to get something sent to it."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from infra.services import Services
from jobs.webhooks import dispatch_new_events, send_due
from ledgers.http import open_http
from models.company import NewCompany
from tests.conftest import Api
from tests.helpers import data
from tests.live import serving

CREATE_ENDPOINT = """
mutation($companyId: ID!, $input: WebhookEndpointInput!) {
  createWebhookEndpoint(companyId: $companyId, input: $input) {
    secret endpoint { id url eventTypes enabled }
  }
}
"""


@dataclass
class Receiver:
    """A webhook receiver: records what it is sent, answers `status`."""

    status: int = 204
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.received.append((dict(request.headers), await request.body()))
        return Response(status_code=self.status)


@asynccontextmanager
async def receiving(receiver: Receiver, port: int = 0) -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    async with serving(app, port=port) as address:
        yield f"http://{address}/hook"


async def create_endpoint(api: Api, company: NewCompany, url: str, *types: str) -> tuple[str, str]:
    variables = {
        "companyId": company.company.id,
        "input": {"url": url, "eventTypes": list(types or ["BATCH_COMPLETED", "ITEM_FAILED"])},
    }
    created = data(await api.gql(CREATE_ENDPOINT, variables))["createWebhookEndpoint"]
    return created["endpoint"]["id"], created["secret"]


async def pump(services: Services) -> None:
    await dispatch_new_events(services)
    async with open_http() as http:
        await send_due(services, http)
