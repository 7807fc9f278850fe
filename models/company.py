"""Companies, their API keys and their ledger connection."""

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from infra import keys
from infra.db import Database
from infra.vault import Vault
from models.enums import ConnectionStatus, Provider
from models.errors import InvalidInput, NotFound
from models.secrets import Tokens, seal_tokens
from models.tables import Company, Connection

KEY_PREFIX = "s2b_"


Connect = Callable[[AsyncSession, str], Awaitable[Tokens]]
"""Connects a new company at once, in the transaction that creates it (the sandbox does)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The company an API key belongs to, as a request or a socket holds it: a few plain
    fields, not an ORM row (each idle subscriber keeps one for its connection's life)."""

    id: str
    name: str
    api_key_hash: str


@dataclass(frozen=True)
class NewCompany:
    company: Company
    api_key: str  # shown once; only its hash is stored


def hash_key(api_key: str) -> str:
    """Keys carry 256 random bits, so one SHA-256 is a safe, fast-to-check digest."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)  # 256 random bits


async def create_company(
    db: Database, vault: Vault, *, name: str, provider: Provider, connect: Connect | None = None
) -> NewCompany:
    """The company, its key and its connection: ACTIVE at once through `connect`, else
    DISCONNECTED until the company completes its ledger's Link flow."""
    name = name.strip()
    if not 0 < len(name) <= 255:
        raise InvalidInput("name: 1 to 255 characters", field="name")
    api_key = new_key()
    company = Company(name=name, api_key_hash=hash_key(api_key))
    async with db.transaction() as session:
        session.add(company)
        await session.flush()
        connection = Connection(company_id=company.id, provider=provider.value)
        if connect is None:
            connection.status = ConnectionStatus.DISCONNECTED
        else:
            seal_tokens(vault, connection, await connect(session, company.id))
        session.add(connection)
    return NewCompany(company, api_key)


async def company_by_key(db: Database, *, api_key: str) -> Caller | None:
    """Looked up by the key's digest (a unique index); compared once more in constant time."""
    key_hash = hash_key(api_key)
    query = select(Company.id, Company.name, Company.api_key_hash).where(
        Company.api_key_hash == key_hash
    )
    async with db.sessions() as session:
        row = (await session.execute(query)).first()
    if row is None or not hmac.compare_digest(row.api_key_hash, key_hash):
        return None
    return Caller(row.id, row.name, row.api_key_hash)


async def valid_key_hashes(db: Database, *, key_hashes: Sequence[str]) -> set[str]:
    """Which of these key digests still belong to a company."""
    async with db.sessions() as session:
        rows = await session.scalars(
            select(Company.api_key_hash).where(col(Company.api_key_hash).in_(key_hashes))
        )
        return set(rows)


async def replace_key(db: Database, redis: Redis | None, *, company_id: str) -> str:
    """Give the company a new key, returned once; the old one stops working at once, on open
    WebSockets too (announced on `keys.KEYS_CHANNEL`). Revoking is replacing without telling."""
    api_key = new_key()
    async with db.transaction() as session:
        company = await session.get(Company, company_id, with_for_update=True)
        if company is None:
            raise NotFound(f"company {company_id} not found")
        old_hash, company.api_key_hash = company.api_key_hash, hash_key(api_key)
        session.add(company)
    if redis is not None:
        await redis.publish(keys.KEYS_CHANNEL, old_hash)
    return api_key


async def get_connection(session: AsyncSession, *, company_id: str) -> Connection | None:
    rows = await session.scalars(select(Connection).where(Connection.company_id == company_id))
    return rows.first()


async def connection_of(db: Database, *, company_id: str) -> Connection:
    """The company's ledger connection; a company without one cannot reach any ledger."""
    async with db.sessions() as session:
        connection = await get_connection(session, company_id=company_id)
    if connection is None:
        raise NotFound("this company has no ledger connection")
    return connection
