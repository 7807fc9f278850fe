"""Companies, their API keys and their ledger connection."""

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from models import sandbox
from models.db import Database
from models.enums import Provider
from models.errors import InvalidInput, NotFound
from models.tables import Company, Connection, utcnow

KEY_PREFIX = "s2b_"


@dataclass(frozen=True)
class NewCompany:
    company: Company
    api_key: str  # shown once; only its hash is stored


def hash_key(api_key: str) -> str:
    """Keys carry 256 random bits, so one SHA-256 is a safe, fast-to-check digest."""
    return hashlib.sha256(api_key.encode()).hexdigest()


async def create_company(db: Database, *, name: str, provider: Provider) -> NewCompany:
    name = name.strip()
    if not 0 < len(name) <= 255:
        raise InvalidInput("name: 1 to 255 characters", field="name")
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    company = Company(name=name, api_key_hash=hash_key(api_key))
    async with db.transaction() as session:
        session.add(company)
        await session.flush()
        connection = Connection(company_id=company.id, provider=provider.value)
        if provider is Provider.SANDBOX:
            connection.expires_at = utcnow() + sandbox.TOKEN_LIFETIME
            sandbox.seed(session, company_id=company.id)
        session.add(connection)
    return NewCompany(company, api_key)


async def company_by_key(db: Database, *, api_key: str) -> Company | None:
    async with db.sessions() as session:
        rows = await session.scalars(
            select(Company).where(Company.api_key_hash == hash_key(api_key))
        )
        return rows.first()


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
