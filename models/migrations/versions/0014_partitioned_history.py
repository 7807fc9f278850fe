"""Bounded history: on PostgreSQL the event log and the push attempts become tables
partitioned by month (their rows copied over), so retention drops whole partitions; each
company keeps the id of the newest event retention removed, for `EVENTS_EXPIRED`.

On SQLite event ids become AUTOINCREMENT, never reused once retention deleted them.

A partitioned table's unique indexes must hold its partition key, so the company's event
numbers and an item's attempt numbers are indexed without UNIQUE on both backends: they are
taken under the company's and the item's row locks, which is what kept them unique.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 17:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONTHS_AHEAD = 2  # then the worker's sweep keeps them ahead (`models.history`)
OUTCOMES = "item_id IS NOT NULL AND attachment_id IS NULL AND to_status IN ('SUCCESS', 'FAILED')"
# table → (its time column, its id's sequence, the indexes it had besides its primary key)
_TABLES = {
    "sync_event": ("occurred_at", "sync_event_id_seq"),
    "push_attempt": ("started_at", "push_attempt_id_seq"),
}


def _months(first: datetime, last: datetime) -> list[tuple[datetime, datetime]]:
    """Each month from the one holding `first` to the one holding `last`, as [start, end)."""
    months, start = [], datetime(first.year, first.month, 1, tzinfo=UTC)
    while start <= last:
        end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
        months.append((start, end))
        start = end
    return months


def _partition(table: str, time_column: str, sequence: str) -> None:
    """Copy `table` into a table of the same name partitioned by month of `time_column`."""
    old = f"{table}_unpartitioned"
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY NONE")  # dropped with the old table else
    op.execute(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS) PARTITION BY RANGE ({time_column})"
    )
    op.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE BIGINT")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pk PRIMARY KEY (id, {time_column})")
    bind = op.get_bind()
    first = bind.execute(sa.text(f"SELECT min({time_column}) FROM {old}")).scalar()
    now = datetime.now(UTC)
    ahead = datetime(now.year + (now.month + MONTHS_AHEAD - 1) // 12,
                     (now.month + MONTHS_AHEAD - 1) % 12 + 1, 1, tzinfo=UTC)  # fmt: skip
    for start, end in _months(min(first or now, now), ahead):
        op.execute(
            f"CREATE TABLE {table}_p{start:%Y_%m} PARTITION OF {table}"
            f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
    op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
    op.execute(f"DROP TABLE {old}")
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY {table}.id")


def upgrade() -> None:
    op.add_column("company", sa.Column("events_expired_through", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE push_attempt DROP CONSTRAINT push_attempt_item_id_fkey")
        for table, (time_column, sequence) in _TABLES.items():
            _partition(table, time_column, sequence)
        op.create_foreign_key(
            "push_attempt_item_id_fkey", "push_attempt", "sync_item", ["item_id"], ["id"]
        )
    else:
        op.drop_index("ix_sync_event_company_seq", table_name="sync_event")
        op.drop_index("ix_sync_event_batch_id", table_name="sync_event")
        op.drop_index("ix_sync_event_outcomes", table_name="sync_event")
        op.drop_index("ix_push_attempt_item", table_name="push_attempt")
        # AUTOINCREMENT: SQLite would otherwise give the next event the id after the newest
        # row left, which a log emptied by retention would set back below ids clients hold.
        with op.batch_alter_table(
            "sync_event", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass
    op.create_index("ix_sync_event_company_seq", "sync_event", ["company_id", "company_seq"])
    op.create_index("ix_sync_event_batch_id", "sync_event", ["batch_id", "id"])
    op.create_index(
        "ix_sync_event_outcomes",
        "sync_event",
        ["company_id", "occurred_at", "to_status"],
        postgresql_where=sa.text(OUTCOMES),
        sqlite_where=sa.text(OUTCOMES),
    )
    op.create_index("ix_push_attempt_item", "push_attempt", ["item_id", "number"])


def downgrade() -> None:
    raise NotImplementedError("partitioned history is not turned back into plain tables")
