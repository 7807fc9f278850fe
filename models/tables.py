"""The service's tables. Every status column changes only through `models.transitions`."""

import functools
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import JSON, BigInteger, Column, Enum, Index, Integer, Text, inspect, text
from sqlalchemy.orm import ClassManager, InstanceState, Mapper, configure_mappers
from sqlmodel import Field, SQLModel

from models.enums import (
    AlertKind,
    AlertStatus,
    BatchStatus,
    ConnectionStatus,
    DeliveryStatus,
    ItemStatus,
    RecordType,
    SyncOperation,
)

Row = dict[str, Any]  # Any: a row's column values, as Core inserts them
T = TypeVar("T", bound=SQLModel)


def as_loaded(table: type[T], values: Row) -> T:
    """`table`'s row as a query would load it: every column's value taken as it is, without
    SQLModel's validation and attribute events, which cost 70 µs a row (a fifth of a
    1,000-record create), and without SQLAlchemy's look for a state it would not find
    (pydantic answers that miss slowly). Only for rows our own code has just written."""
    row: T = table.__new__(table)
    state: InstanceState[T] = InstanceState(row, _manager(table))
    row.__dict__.update(values, _sa_instance_state=state)
    object.__setattr__(row, "__pydantic_fields_set__", set(values))
    object.__setattr__(row, "__pydantic_extra__", None)
    object.__setattr__(row, "__pydantic_private__", None)
    return row


@functools.cache
def _manager(table: type[SQLModel]) -> ClassManager[Any]:
    configure_mappers()
    mapper: Mapper[Any] = inspect(table)
    return mapper.class_manager


def new_id(prefix: str) -> str:
    """Opaque random ids: they leak neither order nor volume."""
    return f"{prefix}_{uuid.uuid4().hex}"


def is_id(value: str) -> bool:
    """Whether a client's string could be one of our ids: anything else is simply not found,
    without asking the database (which may refuse it, e.g. a NUL in PostgreSQL text)."""
    return len(value) <= 40 and value.isascii() and value.replace("_", "").isalnum()


def utcnow() -> datetime:
    return datetime.now(UTC)


def enum_type(enum: type[StrEnum]) -> Enum:
    """A VARCHAR that reads back as the enum: new values need no database type change."""
    longest = max(len(member.value) for member in enum)
    return Enum(enum, native_enum=False, create_constraint=False, length=max(16, longest))


class Company(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("cmp"), primary_key=True, max_length=40)
    name: str = Field(max_length=255)
    api_key_hash: str = Field(max_length=64, unique=True, index=True)
    last_event_seq: int = Field(default=0, description="company_seq of its newest SyncEvent")
    events_expired_through: int | None = Field(  # see models.history
        default=None,
        sa_type=BigInteger,
        description="id of its newest SyncEvent that retention removed",
    )
    # Its batches in each status, moved with their events (`transitions._log_events`): the
    # totals of `syncBatches`, which counting 100,000 rows on every page made slow.
    pending_batches: int = 0
    processing_batches: int = 0
    completed_batches: int = 0
    failed_batches: int = 0
    created_at: datetime = Field(default_factory=utcnow)


def batches_in(status: BatchStatus) -> str:
    """The `Company` column that counts its batches in `status`."""
    return f"{status.value.lower()}_batches"


class Connection(SQLModel, table=True):
    """A company's link to its ledger; one per company."""

    id: str = Field(default_factory=lambda: new_id("con"), primary_key=True, max_length=40)
    company_id: str = Field(foreign_key="company.id", unique=True, max_length=40)
    provider: str = Field(max_length=32)
    status: ConnectionStatus = Field(
        default=ConnectionStatus.ACTIVE, sa_type=enum_type(ConnectionStatus)
    )
    expires_at: datetime | None = None  # the access token's
    tenant_id: str | None = Field(default=None, max_length=64)  # Xero's tenant, QBO's realm
    sealed_access_token: str | None = Field(default=None, sa_type=Text)  # see models.secrets
    sealed_refresh_token: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


ITEM_COUNTERS = {  # the SyncBatch column that counts its items in each status
    ItemStatus.PENDING: "pending_count",
    ItemStatus.PROCESSING: "processing_count",
    ItemStatus.SUCCESS: "success_count",
    ItemStatus.FAILED: "failed_count",
}


class SyncBatch(SQLModel, table=True):
    __tablename__ = "sync_batch"
    __table_args__ = (
        Index("ix_sync_batch_company_created", "company_id", "created_at", "id"),
        Index("ix_sync_batch_company_status_created", "company_id", "status", "created_at", "id"),
        Index("ix_sync_batch_status_created", "status", "created_at"),  # the recovery sweep
    )

    id: str = Field(default_factory=lambda: new_id("bat"), primary_key=True, max_length=40)
    company_id: str = Field(foreign_key="company.id", max_length=40)
    record_type: RecordType = Field(sa_type=enum_type(RecordType))
    status: BatchStatus = Field(default=BatchStatus.PENDING, sa_type=enum_type(BatchStatus))
    item_count: int = 0
    pending_count: int = 0
    processing_count: int = 0
    success_count: int = 0
    failed_count: int = 0
    error_code: str | None = Field(default=None, max_length=32)
    error_message: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class SyncItem(SQLModel, table=True):
    """One operation on a record to push: its create, an update or its void. `payload` is
    the validated record as JSON (money as decimal strings); a void's is the record's content
    when the void was accepted. `sequence` numbers a record's operations 1, 2, 3… in the
    order they were accepted: the order the ledger gets them in."""

    __tablename__ = "sync_item"
    __table_args__ = (
        Index("ix_sync_item_batch_position", "batch_id", "position", unique=True),
        Index("ix_sync_item_batch_status_position", "batch_id", "status", "position"),
        Index("ix_sync_item_company_reference", "company_id", "reference", "created_at"),
        Index("ix_sync_item_record_sequence", "record_id", "sequence", unique=True),
    )

    id: str = Field(default_factory=lambda: new_id("itm"), primary_key=True, max_length=40)
    batch_id: str = Field(foreign_key="sync_batch.id", max_length=40)
    company_id: str = Field(foreign_key="company.id", max_length=40)
    position: int
    record_type: RecordType = Field(sa_type=enum_type(RecordType))
    record_id: str = Field(max_length=40)  # its create's item id
    operation: SyncOperation = Field(default=SyncOperation.CREATE, sa_type=enum_type(SyncOperation))
    sequence: int = 1
    force: bool = False  # overwrite changes made in the ledger since our last push
    note: str | None = None  # what settled it without a push of its own
    status: ItemStatus = Field(default=ItemStatus.PENDING, sa_type=enum_type(ItemStatus))
    attempts: int = 0
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # Any: JSON document
    reference: str | None = Field(default=None, max_length=255)
    external_id: str | None = Field(default=None, max_length=255)
    error_code: str | None = Field(default=None, max_length=32)
    error_message: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class SyncRecord(SQLModel, table=True):
    """A record through its life: what the ledger holds of it, after its operations so far.

    Its id is its create's item id. `last_sequence` is its newest operation's; `applied_sequence`
    the newest whose content the ledger holds (`applied_item_id`), 0 while none does.
    `ledger_version` is the document's version as our last push saw it (QuickBooks' SyncToken,
    Xero's UpdatedDateUTC, the sandbox's version): a document whose version moved on since was
    changed in the ledger by someone else."""

    __tablename__ = "sync_record"
    __table_args__ = (Index("ix_sync_record_company", "company_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=40)
    company_id: str = Field(foreign_key="company.id", max_length=40)
    record_type: RecordType = Field(sa_type=enum_type(RecordType))
    last_sequence: int = 1
    applied_sequence: int = 0
    applied_item_id: str | None = Field(default=None, max_length=40)
    external_id: str | None = Field(default=None, max_length=255)
    ledger_version: str | None = Field(default=None, max_length=64)
    voided: bool = False  # a void succeeded: the record is closed
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class SyncAttachment(SQLModel, table=True):
    """A file attached to an item, stored under its company and SHA-256, pushed to the ledger
    once the item is SUCCESS. One file is attached to one item once."""

    __tablename__ = "sync_attachment"
    __table_args__ = (
        Index("ix_sync_attachment_item_sha256", "item_id", "sha256", unique=True),
        Index("ix_sync_attachment_batch_status", "batch_id", "status"),
    )

    id: str = Field(default_factory=lambda: new_id("att"), primary_key=True, max_length=40)
    item_id: str = Field(foreign_key="sync_item.id", max_length=40)
    batch_id: str = Field(foreign_key="sync_batch.id", max_length=40)
    company_id: str = Field(foreign_key="company.id", max_length=40)
    file_name: str = Field(max_length=255)
    content_type: str = Field(max_length=100)
    size: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64)
    status: ItemStatus = Field(default=ItemStatus.PENDING, sa_type=enum_type(ItemStatus))
    attempts: int = 0
    external_id: str | None = Field(default=None, max_length=255)
    error_code: str | None = Field(default=None, max_length=32)
    error_message: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class IdempotencyKey(SQLModel, table=True):
    """A create's idempotency key, per company: the batch its first request made, and what
    that request held (`fingerprint`), for `KEPT` after it."""

    __tablename__ = "idempotency_key"

    company_id: str = Field(foreign_key="company.id", primary_key=True, max_length=40)
    key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=64)  # sha256 of the record type and the records
    batch_id: str = Field(foreign_key="sync_batch.id", max_length=40)
    created_at: datetime = Field(default_factory=utcnow)


ITEM_OUTCOMES = (
    "item_id IS NOT NULL AND attachment_id IS NULL AND to_status IN ('SUCCESS', 'FAILED')"
)


class SyncEvent(SQLModel, table=True):
    """The durable log of transitions.

    `id` is unique and increasing service-wide. `company_seq` numbers a company's events
    1, 2, 3… with no gap, in commit order (taken under the company row's lock), so a live
    listener can tell a missed event from one that never was.

    On PostgreSQL it is partitioned by month of `occurred_at` (migration 0014), as is
    `push_attempt` by `started_at`: retention drops old months whole (`models.history`).
    """

    __tablename__ = "sync_event"
    __table_args__ = (
        Index("ix_sync_event_company_seq", "company_id", "company_seq"),  # see 0014
        Index("ix_sync_event_batch_id", "batch_id", "id"),
        Index(  # items' outcomes by time, for `models.stats` (which repeats the condition)
            "ix_sync_event_outcomes",
            "company_id",
            "occurred_at",
            "to_status",
            postgresql_where=text(ITEM_OUTCOMES),
            sqlite_where=text(ITEM_OUTCOMES),
        ),
        {"sqlite_autoincrement": True},  # ids never reused after retention's deletes
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    company_id: str = Field(max_length=40)
    company_seq: int = 0
    batch_id: str = Field(max_length=40)
    item_id: str | None = Field(default=None, max_length=40)
    attachment_id: str | None = Field(default=None, max_length=40)  # its item's, in item_id
    operation: SyncOperation | None = Field(  # an item's: what it does to its record
        default=None, sa_type=enum_type(SyncOperation)
    )
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str = Field(max_length=16)
    error_code: str | None = Field(default=None, max_length=32)
    error_message: str | None = None
    occurred_at: datetime = Field(default_factory=utcnow)


class PushAttempt(SQLModel, table=True):
    """One push of an item to its ledger: when, how long, and what went wrong if anything."""

    __tablename__ = "push_attempt"
    __table_args__ = (Index("ix_push_attempt_item", "item_id", "number"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    item_id: str = Field(foreign_key="sync_item.id", max_length=40)
    number: int  # 1, 2, 3… over the item's whole life, retries by the client included
    started_at: datetime
    duration_ms: float
    error_code: str | None = Field(default=None, max_length=32)  # None: it succeeded
    error_message: str | None = None


class Alert(SQLModel, table=True):
    """A condition of a company's syncing worth a person's attention, from raised to cleared.

    `active_key` is set only while it is ACTIVE and is unique: a company has at most one
    active alert of each kind, however many workers find the condition at once."""

    __table_args__ = (Index("ix_alert_company_raised", "company_id", "raised_at", "id"),)

    id: str = Field(default_factory=lambda: new_id("alr"), primary_key=True, max_length=40)
    company_id: str = Field(foreign_key="company.id", max_length=40)
    kind: AlertKind = Field(sa_type=enum_type(AlertKind))
    status: AlertStatus = Field(default=AlertStatus.ACTIVE, sa_type=enum_type(AlertStatus))
    active_key: str | None = Field(default=None, unique=True, max_length=64)
    message: str
    failure_rate: float | None = None  # FAILURE_RATE: the window's, when raised
    failed_count: int | None = None
    total_count: int | None = None
    window_seconds: int | None = None
    raised_at: datetime = Field(default_factory=utcnow)
    cleared_at: datetime | None = None


class WebhookEndpoint(SQLModel, table=True):
    """Where a company wants events sent. `event_seq` is how far into the company's event log
    deliveries have been made for it: it starts at the log's end when the endpoint is made."""

    __tablename__ = "webhook_endpoint"

    id: str = Field(default_factory=lambda: new_id("whe"), primary_key=True, max_length=40)
    company_id: str = Field(foreign_key="company.id", index=True, max_length=40)
    url: str = Field(max_length=2048)
    description: str | None = Field(default=None, max_length=255)
    event_types: list[str] = Field(sa_column=Column(JSON, nullable=False))
    sealed_secret: str = Field(sa_type=Text)  # see models.secrets
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, max_length=255)
    event_seq: int = 0
    failing_since: datetime | None = None  # the first failure since its last success
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    """One message for one endpoint, and where its attempts stand. `message_id` is the
    Standard Webhooks `webhook-id`: the same across endpoints and attempts of one message."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_endpoint_message", "endpoint_id", "message_id", unique=True),
        Index("ix_webhook_delivery_endpoint_created", "endpoint_id", "created_at", "id"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
    )

    id: str = Field(default_factory=lambda: new_id("whd"), primary_key=True, max_length=40)
    endpoint_id: str = Field(foreign_key="webhook_endpoint.id", max_length=40)
    company_id: str = Field(max_length=40)
    message_id: str = Field(max_length=64)
    event_type: str = Field(max_length=32)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # Any: JSON
    status: DeliveryStatus = Field(
        default=DeliveryStatus.PENDING, sa_type=enum_type(DeliveryStatus)
    )
    attempt_count: int = 0
    retries_left: int = 0  # further attempts after a failure, by the retry schedule
    next_attempt_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class WebhookAttempt(SQLModel, table=True):
    __tablename__ = "webhook_attempt"
    __table_args__ = (Index("ix_webhook_attempt_delivery", "delivery_id", "number", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(foreign_key="webhook_delivery.id", max_length=40)
    number: int
    attempted_at: datetime
    duration_ms: float
    status_code: int | None = None  # None: no answer (refused, timed out, …)
    error: str | None = Field(default=None, max_length=500)
    response_body: str | None = Field(default=None, max_length=1000)  # its start
