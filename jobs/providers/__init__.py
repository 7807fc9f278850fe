"""Ledger adapters, one module per vendor, chosen by a connection's provider."""

from jobs.providers.sandbox import SandboxLedger
from models.db import Database
from models.enums import Provider
from models.errors import NotFound
from models.ledger import Ledger
from models.tables import Connection


def ledger_for(connection: Connection, *, db: Database) -> Ledger:
    if connection.provider == Provider.SANDBOX:
        return SandboxLedger(db, company_id=connection.company_id)
    raise NotFound(f"no adapter for provider {connection.provider!r}")
