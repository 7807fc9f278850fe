"""Keeping a ledger connection usable: its access token refreshed before use, exactly once.

Real ledgers' access tokens last 30 to 60 minutes and their refresh tokens are single-use, so
when several workers find the token about to expire, only one may refresh it: the others
wait on a lock in Redis and then read the refreshed row. When the ledger refuses to refresh,
the connection becomes EXPIRED and stays so until the company reconnects.
"""

from datetime import datetime, timedelta

from redis.asyncio import Redis

from models.company import get_connection
from models.db import Database
from models.enums import ConnectionStatus
from models.errors import LedgerError, SyncErrorCode
from models.ledger import Ledger
from models.tables import Connection, utcnow

REFRESH_BEFORE = timedelta(minutes=2)  # a token this close to expiry is refreshed first
LOCK_SECONDS = 30


def _expiring(connection: Connection) -> bool:
    return connection.expires_at is not None and connection.expires_at < utcnow() + REFRESH_BEFORE


async def usable_connection(
    db: Database, redis: Redis, ledger: Ledger, connection: Connection, *, force: bool = False
) -> Connection:
    """The connection, its token refreshed first if it is (or, `force`, may be) expiring."""
    if connection.status != ConnectionStatus.ACTIVE or not (force or _expiring(connection)):
        return connection
    stale_expiry = connection.expires_at
    async with redis.lock(
        f"sync2books:refresh:{connection.id}", timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS
    ):
        async with db.sessions() as session:
            current = await get_connection(session, company_id=connection.company_id)
        assert current is not None
        if current.status != ConnectionStatus.ACTIVE or current.expires_at != stale_expiry:
            return current  # another worker refreshed it (or found it expired) meanwhile
        try:
            current.expires_at = await ledger.refresh()
        except LedgerError as exc:
            if exc.error.code is not SyncErrorCode.CONNECTION_EXPIRED:
                raise
            current.status = ConnectionStatus.EXPIRED
        return await _save(db, current)


async def _save(db: Database, connection: Connection) -> Connection:
    connection.updated_at = utcnow()
    async with db.transaction() as session:
        session.add(connection)
    return connection


async def reconnected(db: Database, *, company_id: str, expires_at: datetime) -> Connection:
    """Record a fresh connection (after Link, or the sandbox's `reconnect`): ACTIVE again."""
    async with db.sessions() as session:
        connection = await get_connection(session, company_id=company_id)
    assert connection is not None
    connection.status = ConnectionStatus.ACTIVE
    connection.expires_at = expires_at
    return await _save(db, connection)
