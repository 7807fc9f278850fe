"""Everything that talks to an accounting system: the adapters (one module per vendor, chosen
by a connection's provider), Link and token refresh, the limiter and the gateway that paces
every call, the chart cache, and the sandbox's own books."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx

from infra.db import Database
from infra.services import Services
from infra.vault import Vault
from ledgers import books
from ledgers.http import open_http
from ledgers.protocol import Ledger, LedgerFactory
from ledgers.quickbooks import QuickBooksLedger
from ledgers.sandbox import SandboxLedger
from ledgers.xero import XeroLedger
from models import company
from models.enums import Provider
from models.errors import NotFound
from models.secrets import open_tokens
from models.tables import Connection


def ledger_for(connection: Connection, *, services: Services, http: httpx.AsyncClient) -> Ledger:
    """The connection's adapter, holding its current tokens; `http` is the process's pool."""
    tokens = open_tokens(services.vault, connection)
    if connection.provider == Provider.SANDBOX:
        return SandboxLedger(services, company_id=connection.company_id, tokens=tokens)
    if connection.provider == Provider.XERO:
        return XeroLedger(services, http, tenant_id=connection.tenant_id or "", tokens=tokens)
    if connection.provider == Provider.QUICKBOOKS:
        return QuickBooksLedger(services, http, realm_id=connection.tenant_id or "", tokens=tokens)
    raise NotFound(f"no adapter for provider {connection.provider!r}")


@asynccontextmanager
async def open_ledgers(services: Services) -> AsyncIterator[LedgerFactory]:
    """The process's ledger factory, over one pool of HTTP connections closed on exit."""
    async with open_http() as http:
        yield partial(ledger_for, services=services, http=http)


async def create_company(
    db: Database, vault: Vault, *, name: str, provider: Provider
) -> company.NewCompany:
    """A company and its connection: the sandbox opens the company's books and connects it at
    once; a real ledger connects when the company completes its Link flow."""
    connect = books.open_books if provider is Provider.SANDBOX else None
    return await company.create_company(db, vault, name=name, provider=provider, connect=connect)
