"""A company's ledger connection as stored: saved, reconnected, its tokens resealed."""

from sqlmodel import select

from infra.db import Database
from infra.services import Services
from infra.vault import Vault
from models.alerts import clear_alert
from models.company import get_connection
from models.enums import AlertKind, ConnectionStatus, Provider
from models.secrets import Tokens, seal_tokens
from models.tables import Connection, utcnow


async def save_connection(db: Database, connection: Connection) -> Connection:
    connection.updated_at = utcnow()
    async with db.transaction() as session:
        session.add(connection)
    return connection


async def reseal_tokens(db: Database, vault: Vault) -> int:
    """Seal every connection's tokens with the vault's first key; how many connections."""
    async with db.transaction() as session:
        rows = list(await session.scalars(select(Connection).with_for_update()))
        for row in rows:
            if row.sealed_access_token is not None:
                row.sealed_access_token = vault.reseal(row.sealed_access_token)
            if row.sealed_refresh_token is not None:
                row.sealed_refresh_token = vault.reseal(row.sealed_refresh_token)
            session.add(row)
    return len(rows)


async def reconnected(
    services: Services,
    *,
    company_id: str,
    tokens: Tokens,
    provider: Provider | None = None,
    tenant_id: str | None = None,
) -> Connection:
    """Record a fresh connection (after Link, or the sandbox's `reconnect`): ACTIVE again.
    Link names the ledger and the organisation in it (a company may change ledgers)."""
    async with services.db.sessions() as session:
        connection = await get_connection(session, company_id=company_id)
    assert connection is not None
    connection.status = ConnectionStatus.ACTIVE
    if provider is not None:
        connection.provider, connection.tenant_id = provider, tenant_id
    seal_tokens(services.vault, connection, tokens)
    saved = await save_connection(services.db, connection)
    await clear_alert(services, company_id=company_id, kind=AlertKind.CONNECTION_EXPIRED)
    return saved
