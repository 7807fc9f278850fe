"""What every real ledger's adapter does over HTTP: send the bearer token, turn answers into
JSON and failures into `LedgerError`s (each vendor classifies its own error bodies)."""

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
from redis.asyncio import Redis

from ledgers.protocol import Change, Entry
from models.errors import LedgerError, SyncErrorCode
from models.secrets import Tokens

MEMO_SECONDS = 86400
TIMEOUT_SECONDS = 30


@asynccontextmanager
async def open_http() -> AsyncIterator[httpx.AsyncClient]:
    """A process's pool of HTTP connections to the outside (ledgers, webhook endpoints)."""
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
        yield client


class Memo:
    """Ids a ledger gave that rarely change (its bank account, vendors, items), kept in Redis
    for a day so that each push costs one call of the ledger's rate limit, not several."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    async def get(self, name: str, find: Callable[[], Awaitable[str]]) -> str:
        key = f"{self.prefix}:{name}"
        cached = await self.redis.get(key)
        if cached is not None:
            return str(cached.decode())
        found = await find()
        await self.redis.set(key, found, ex=MEMO_SECONDS)
        return found


def retry_after(response: httpx.Response) -> float | None:
    """The seconds a 429's `Retry-After` asks for, when it gives a number."""
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def call_key(entries: Sequence[Entry | Change]) -> str:
    """A batch call's idempotency key: the same documents make the same key, so the call
    repeated after a timeout gets the ledger's first answer."""
    return hashlib.sha256("\n".join(entry.key for entry in entries).encode()).hexdigest()


def money(amount: Decimal) -> float:
    """An amount as a JSON number. Records allow 18 digits; a float keeps 15 exactly, so an
    amount it cannot hold is refused rather than rounded."""
    value = float(amount)
    if Decimal(repr(value)) != amount:
        raise LedgerError(
            SyncErrorCode.VALIDATION_ERROR, f"The amount {amount} has too many digits to post."
        )
    return value


class LedgerHttp:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        headers: Mapping[str, str],
        tokens: Tokens | None,
        classify: Callable[[httpx.Response], LedgerError],
        observe: Callable[[httpx.Response], Awaitable[None]] | None = None,
    ) -> None:
        """`observe` sees every answer (Xero's remaining limits are in its headers)."""
        self.client = client
        self.base_url = base_url
        self.headers = dict(headers)
        self.tokens = tokens
        self.classify = classify
        self.observe = observe

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        content: AsyncIterable[bytes] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:  # Any: the ledger's JSON
        """One request; `content` streams a body (a file) instead of `json`."""
        if self.tokens is None:
            raise LedgerError(SyncErrorCode.CONNECTION_EXPIRED, "The connection holds no tokens.")
        sent = {**self.headers, "authorization": f"Bearer {self.tokens.access_token}"}
        try:
            response = await self.client.request(
                method,
                self.base_url + path,
                json=json,
                content=content,
                params=params,
                headers={**sent, **(headers or {})},
            )
        except httpx.TimeoutException as exc:
            raise LedgerError(SyncErrorCode.PROVIDER_ERROR, "The ledger did not answer.") from exc
        except httpx.HTTPError as exc:
            message = f"The ledger could not be reached ({type(exc).__name__})."
            raise LedgerError(SyncErrorCode.PROVIDER_ERROR, message) from exc
        if self.observe is not None:
            await self.observe(response)
        if not response.is_success:
            raise self.classify(response)
        return response.json()
