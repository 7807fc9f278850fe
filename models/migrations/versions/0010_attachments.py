"""Attachments: files on items, pushed to the ledger after them; their events; the sandbox's
copy of what it was sent.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 22:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUS = ("PENDING", "PROCESSING", "SUCCESS", "FAILED")


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "sync_attachment",
        sa.Column("id", _text(40), nullable=False),
        sa.Column("item_id", _text(40), nullable=False),
        sa.Column("batch_id", _text(40), nullable=False),
        sa.Column("company_id", _text(40), nullable=False),
        sa.Column("file_name", _text(255), nullable=False),
        sa.Column("content_type", _text(100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", _text(64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(*_STATUS, name="itemstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("external_id", _text(255), nullable=True),
        sa.Column("error_code", _text(32), nullable=True),
        sa.Column("error_message", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["sync_batch.id"]),
        sa.ForeignKeyConstraint(["company_id"], ["company.id"]),
        sa.ForeignKeyConstraint(["item_id"], ["sync_item.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_sync_attachment_item_sha256", "sync_attachment", ["item_id", "sha256"], unique=True
    )
    op.create_index("ix_sync_attachment_batch_status", "sync_attachment", ["batch_id", "status"])
    with op.batch_alter_table("sync_event") as table:
        table.add_column(sa.Column("attachment_id", _text(40), nullable=True))
    op.create_table(
        "sandbox_attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", _text(40), nullable=False),
        sa.Column("record_external_id", _text(64), nullable=False),
        sa.Column("external_id", _text(64), nullable=False),
        sa.Column("file_name", _text(255), nullable=False),
        sa.Column("content_type", _text(100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", _text(64), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("record_external_id", "sha256"),
        sa.UniqueConstraint("external_id"),
    )


def downgrade() -> None:
    op.drop_table("sandbox_attachment")
    with op.batch_alter_table("sync_event") as table:
        table.drop_column("attachment_id")
    op.drop_index("ix_sync_attachment_batch_status", "sync_attachment")
    op.drop_index("ix_sync_attachment_item_sha256", "sync_attachment")
    op.drop_table("sync_attachment")
