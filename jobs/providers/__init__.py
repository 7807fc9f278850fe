"""Ledger adapters, one module per vendor, chosen by a connection's provider."""

from jobs.providers.sandbox import SandboxLedger
from models.enums import Provider
from models.errors import NotFound
from models.ledger import Ledger
from models.secrets import open_tokens
from models.services import Services
from models.tables import Connection


def ledger_for(connection: Connection, *, services: Services) -> Ledger:
    if connection.provider == Provider.SANDBOX:
        tokens = open_tokens(services.vault, connection)
        return SandboxLedger(services, company_id=connection.company_id, tokens=tokens)
    raise NotFound(f"no adapter for provider {connection.provider!r}")
