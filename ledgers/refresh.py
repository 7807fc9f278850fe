"""Keeping a ledger connection usable: its access token refreshed before use, exactly once.

Real ledgers' access tokens last 30 to 60 minutes and their refresh tokens are single-use, so
when several workers find the token about to expire, only one may refresh it: the others
wait on a lock in Redis and then read the refreshed row. When the ledger refuses to refresh,
the connection becomes EXPIRED and stays so until the company reconnects.
"""

from datetime import timedelta

from sqlmodel import select

from models.alerts import clear_alert, raise_alert
from models.company import get_connection
from models.db import Database
from models.enums import AlertKind, ConnectionStatus, Provider
from models.errors import LedgerError, SyncErrorCode
from ledgers.protocol import LedgerFactory, Tokens
from models.secrets import Vault, seal_tokens
from models.services import Services
from models.tables import Alert, Connection, utcnow

REFRESH_BEFORE = timedelta(minutes=2)  # a token this close to expiry is refreshed first
LOCK_SECONDS = 30


def _expiring(connection: Connection) -> bool:
    return connection.expires_at is not None and connection.expires_at < utcnow() + REFRESH_BEFORE


async def usable_connection(
    services: Services, ledger_for: LedgerFactory, connection: Connection, *, force: bool = False
) -> Connection:
    """The connection, its token refreshed first if it is (or, `force`, may be) expiring."""
    if connection.status != ConnectionStatus.ACTIVE or not (force or _expiring(connection)):
        return connection
    stale_expiry = connection.expires_at
    async with services.redis.lock(
        f"sync2books:refresh:{connection.id}", timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS
    ):
        async with services.db.sessions() as session:
            current = await get_connection(session, company_id=connection.company_id)
        assert current is not None
        if current.status != ConnectionStatus.ACTIVE or current.expires_at != stale_expiry:
            return current  # another worker refreshed it (or found it expired) meanwhile
        try:
            seal_tokens(services.vault, current, await ledger_for(current).refresh())
        except LedgerError as exc:
            if exc.error.code is not SyncErrorCode.CONNECTION_EXPIRED:
                raise
            current.status = ConnectionStatus.EXPIRED
        saved = await _save(services, current)
        if saved.status is ConnectionStatus.EXPIRED:
            await raise_alert(services, expired_alert(saved))
        return saved


async def _save(services: Services, connection: Connection) -> Connection:
    connection.updated_at = utcnow()
    async with services.db.transaction() as session:
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
    saved = await _save(services, connection)
    await clear_alert(services, company_id=company_id, kind=AlertKind.CONNECTION_EXPIRED)
    return saved


def expired_alert(connection: Connection) -> Alert:
    return Alert(
        company_id=connection.company_id,
        kind=AlertKind.CONNECTION_EXPIRED,
        message=(
            f"The {connection.provider} connection expired and could not be refreshed: "
            "reconnect it, then retry the failed items."
        ),
    )
