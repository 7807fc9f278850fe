"""What a failed push does next: one decision for a call of items and for an attachment.

- A 429's `Retry-After` holds every call to the ledger (the gateway's limiter) that long; one
  longer than `RETRY_MAX_SECONDS` (a daily limit) hands the work back to the queue: its
  items or files go back to PENDING and the batch's job is deferred, holding no worker.
- A refused access token is refreshed once, and the push made again at once.
- Other transient errors are retried after a jittered backoff (never sooner than the
  ledger's `Retry-After`), up to `MAX_PUSH_ATTEMPTS` pushes; the rest fail.
"""

import asyncio
import enum

from infra.backoff import pause
from infra.settings import Settings
from ledgers.gateway import Gateway
from models.errors import TRANSIENT, SyncError, SyncErrorCode
from models.tables import Connection


class Next(enum.Enum):
    AGAIN = "again"  # push again (after the backoff, already waited)
    PENDING = "pending"  # back to PENDING: the batch's job is deferred
    FAILED = "failed"


class Retries:
    """One push's retries: the decision after each failure, and the one refresh it may make."""

    def __init__(self, gateway: Gateway, settings: Settings) -> None:
        self.gateway = gateway
        self.settings = settings
        self.refreshed = False

    async def after(
        self, error: SyncError, retry_after: float | None, *, tries: int, used: Connection
    ) -> Next:
        """What to do after the `tries`-th push failed with `error`, made with the `used`
        connection (its token is the one refused, when it was)."""
        if error.code is SyncErrorCode.RATE_LIMIT_EXCEEDED and retry_after:
            await self.gateway.limiter.hold(retry_after)  # every call to this ledger waits
            if retry_after > self.settings.retry_max_seconds:
                return Next.PENDING
        if error.code is SyncErrorCode.CONNECTION_EXPIRED and not self.refreshed:
            self.refreshed = True
            if await self.gateway.usable(refused=used):
                return Next.AGAIN
        if error.code not in TRANSIENT or tries >= self.settings.max_push_attempts:
            return Next.FAILED
        await asyncio.sleep(backoff(tries, retry_after, self.settings))
        return Next.AGAIN


def backoff(failures: int, retry_after: float | None, settings: Settings) -> float:
    """Exponential backoff with full jitter, never sooner than the ledger's Retry-After."""
    first, most = settings.retry_base_seconds, settings.retry_max_seconds
    return max(pause(failures, first=first, most=most, jitter=True), retry_after or 0.0)
