"""The sandbox ledger's tables: its books (accounts, tax rates, what was posted and
attached), how it misbehaves, and the tokens it issued. They live in our database, declared
here with every other table so that migrations see them; only `ledgers.books`, the sandbox's
own store, reads and writes them.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.enums import AccountType
from models.tables import enum_type, utcnow


class SandboxAccount(SQLModel, table=True):
    __tablename__ = "sandbox_account"
    __table_args__ = (UniqueConstraint("company_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    company_id: str = Field(max_length=40)
    code: str = Field(max_length=255)
    name: str = Field(max_length=255)
    type: AccountType = Field(sa_type=enum_type(AccountType))


class SandboxTaxRate(SQLModel, table=True):
    __tablename__ = "sandbox_tax_rate"
    __table_args__ = (UniqueConstraint("company_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    company_id: str = Field(max_length=40)
    code: str = Field(max_length=255)
    name: str = Field(max_length=255)
    rate: str = Field(max_length=32)  # decimal string: exact on SQLite too


class SandboxRecord(SQLModel, table=True):
    """A document in the sandbox; the idempotency key makes a repeated post a no-op.
    `version` counts its changes (1 when posted), whoever made them: our pushes or an
    accountant's edit (`sync2books sandbox edit`); a voided one keeps its content."""

    __tablename__ = "sandbox_record"
    __table_args__ = (UniqueConstraint("company_id", "idempotency_key"),)

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=64, unique=True)
    company_id: str = Field(max_length=40, index=True)
    idempotency_key: str = Field(max_length=255)
    record_type: str = Field(max_length=16)
    amount: str = Field(max_length=40)
    currency: str = Field(max_length=3)
    reference: str | None = Field(default=None, max_length=255)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # Any: JSON document
    version: int = 1
    status: str = Field(default="ACTIVE", max_length=16)  # ACTIVE or VOIDED
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class SandboxAttachment(SQLModel, table=True):
    """A file attached to a sandbox record: what it was sent, checked by size and SHA-256.
    A file already on the record is not added again."""

    __tablename__ = "sandbox_attachment"
    __table_args__ = (UniqueConstraint("record_external_id", "sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    company_id: str = Field(max_length=40)
    record_external_id: str = Field(max_length=64)
    external_id: str = Field(max_length=64, unique=True)
    file_name: str = Field(max_length=255)
    content_type: str = Field(max_length=100)
    size: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class SandboxBehaviour(SQLModel, table=True):
    """How a company's sandbox misbehaves (`sync2books sandbox configure`); None: the default."""

    __tablename__ = "sandbox_behaviour"

    company_id: str = Field(primary_key=True, max_length=40)
    rate_limit_per_minute: int | None = None
    max_concurrent: int | None = None
    documents_per_call: int | None = None
    transient_error_rate: float = 0.0  # share of calls answered 503
    latency_ms: int = 0
    timeout_rate: float = 0.0  # share of posts recorded, yet answered with a timeout


class SandboxGrant(SQLModel, table=True):
    """The tokens the sandbox's authorization server issued a company, kept as digests."""

    __tablename__ = "sandbox_grant"

    company_id: str = Field(primary_key=True, max_length=40)
    access_digest: str = Field(max_length=64)
    access_expires_at: datetime
    refresh_digest: str = Field(max_length=64)
