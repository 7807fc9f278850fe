"""Records that change: every item is an operation (create, update, void) on a record, in
the record's order; the records themselves; the sandbox's documents get versions and a status.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPERATION = ("CREATE", "UPDATE", "VOID")
_RECORD_TYPE = ("EXPENSE", "BILL", "INVOICE")


def _text(length: int | None = None) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def _operation() -> sa.Enum:
    return sa.Enum(*_OPERATION, name="syncoperation", native_enum=False, length=16)


def upgrade() -> None:
    with op.batch_alter_table("sync_item") as table:
        table.add_column(sa.Column("record_id", _text(40), nullable=True))
        table.add_column(
            sa.Column("operation", _operation(), nullable=False, server_default="CREATE")
        )
        table.add_column(sa.Column("sequence", sa.Integer(), nullable=False, server_default="1"))
        table.add_column(
            sa.Column("force", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        table.add_column(sa.Column("note", _text(), nullable=True))
    op.execute("UPDATE sync_item SET record_id = id")
    with op.batch_alter_table("sync_item") as table:
        table.alter_column("record_id", existing_type=_text(40), nullable=False)
        table.alter_column("operation", server_default=None)
        table.alter_column("sequence", server_default=None)
        table.alter_column("force", server_default=None)
    op.create_index(
        "ix_sync_item_record_sequence", "sync_item", ["record_id", "sequence"], unique=True
    )
    op.create_table(
        "sync_record",
        sa.Column("id", _text(40), nullable=False),
        sa.Column("company_id", _text(40), nullable=False),
        sa.Column(
            "record_type",
            sa.Enum(*_RECORD_TYPE, name="recordtype", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.Column("applied_sequence", sa.Integer(), nullable=False),
        sa.Column("applied_item_id", _text(40), nullable=True),
        sa.Column("external_id", _text(255), nullable=True),
        sa.Column("ledger_version", _text(64), nullable=True),
        sa.Column("voided", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["company.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sync_record_company", "sync_record", ["company_id", "created_at"])
    op.execute(
        """
        INSERT INTO sync_record (id, company_id, record_type, last_sequence, applied_sequence,
            applied_item_id, external_id, ledger_version, voided, created_at, updated_at)
        SELECT id, company_id, record_type, 1,
            CASE WHEN status = 'SUCCESS' THEN 1 ELSE 0 END,
            CASE WHEN status = 'SUCCESS' THEN id END,
            external_id, NULL, false, created_at, updated_at
        FROM sync_item
        """
    )
    with op.batch_alter_table("sync_event") as table:
        table.add_column(sa.Column("operation", _operation(), nullable=True))
    op.execute("UPDATE sync_event SET operation = 'CREATE' WHERE item_id IS NOT NULL")
    with op.batch_alter_table("sandbox_record") as table:
        table.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        table.add_column(sa.Column("status", _text(16), nullable=False, server_default="ACTIVE"))
        table.add_column(
            sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
    op.execute("UPDATE sandbox_record SET updated_at = created_at")
    with op.batch_alter_table("sandbox_record") as table:
        table.alter_column(
            "updated_at", existing_type=sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False
        )
        table.alter_column("version", server_default=None)
        table.alter_column("status", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("sandbox_record") as table:
        table.drop_column("updated_at")
        table.drop_column("status")
        table.drop_column("version")
    with op.batch_alter_table("sync_event") as table:
        table.drop_column("operation")
    op.drop_table("sync_record")
    op.drop_index("ix_sync_item_record_sequence", table_name="sync_item")
    with op.batch_alter_table("sync_item") as table:
        for column in ("note", "force", "sequence", "operation", "record_id"):
            table.drop_column(column)
