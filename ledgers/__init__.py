"""Ledger adapters, one module per vendor, chosen by a connection's provider."""

from ledgers.quickbooks import QuickBooksLedger
from ledgers.sandbox import SandboxLedger
from ledgers.xero import XeroLedger
from models.enums import Provider
from models.errors import NotFound
from ledgers.protocol import Ledger
from models.secrets import open_tokens
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
