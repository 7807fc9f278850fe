"""Keeping a ledger connection usable: its access token refreshed before use, exactly once.

Real ledgers' access tokens last 30 to 60 minutes and their refresh tokens are single-use, so
when several workers find the token about to expire, only one may refresh it: the others
wait on a lock in Redis and then read the refreshed row. When the ledger refuses to refresh,
the connection becomes EXPIRED and stays so until the company reconnects.
"""

from datetime import timedelta

from infra import keys
from infra.services import Services
from ledgers.protocol import LedgerFactory
from models.alerts import raise_alert
from models.company import get_connection
from models.connections import save_connection
from models.enums import AlertKind, ConnectionStatus
from models.errors import LedgerError, SyncErrorCode
from models.secrets import seal_tokens
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
        keys.refresh_lock(connection.id), timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS
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
        saved = await save_connection(services.db, current)
        if saved.status is ConnectionStatus.EXPIRED:
            await raise_alert(services, expired_alert(saved))
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
