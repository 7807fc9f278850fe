"""Keep every push attempt, find unfinished batches fast, let a sandbox misbehave on purpose.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 20:54:25
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sandbox_behaviour",
        sa.Column("company_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("rate_limit_per_minute", sa.Integer(), nullable=True),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        sa.Column("transient_error_rate", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("timeout_rate", sa.Float(), nullable=False),
        sa.Column("token_revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("company_id"),
    )
    op.create_table(
        "push_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("error_code", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("error_message", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["sync_item.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("push_attempt", schema=None) as batch_op:
        batch_op.create_index("ix_push_attempt_item", ["item_id", "number"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("push_attempt", schema=None) as batch_op:
        batch_op.drop_index("ix_push_attempt_item")

    op.drop_table("push_attempt")
    op.drop_table("sandbox_behaviour")
