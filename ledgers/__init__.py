"""Everything that talks to an accounting system: the adapters (one module per vendor, chosen
by a connection's provider), Link and token refresh, the limiter and the gateway that paces
every call, the chart cache, and the sandbox's own books."""

from ledgers import books
from ledgers.protocol import Ledger
from ledgers.quickbooks import QuickBooksLedger
from ledgers.sandbox import SandboxLedger
from ledgers.xero import XeroLedger
from models import company
from models.db import Database
from models.enums import Provider
from models.errors import NotFound
from models.secrets import Vault, open_tokens
from models.services import Services
from models.tables import Connection


def ledger_for(connection: Connection, *, services: Services) -> Ledger:
    tokens = open_tokens(services.vault, connection)
    if connection.provider == Provider.SANDBOX:
        return SandboxLedger(services, company_id=connection.company_id, tokens=tokens)
    if connection.provider == Provider.XERO:
        return XeroLedger(services, tenant_id=connection.tenant_id or "", tokens=tokens)
    if connection.provider == Provider.QUICKBOOKS:
        return QuickBooksLedger(services, realm_id=connection.tenant_id or "", tokens=tokens)
    raise NotFound(f"no adapter for provider {connection.provider!r}")


async def create_company(
    db: Database, vault: Vault, *, name: str, provider: Provider
) -> company.NewCompany:
    """A company and its connection: the sandbox opens the company's books and connects it at
    once; a real ledger connects when the company completes its Link flow."""
    connect = books.open_books if provider is Provider.SANDBOX else None
    return await company.create_company(db, vault, name=name, provider=provider, connect=connect)
