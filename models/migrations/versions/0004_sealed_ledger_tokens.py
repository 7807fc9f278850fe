"""Ledger tokens sealed at rest on each connection; the sandbox issues real tokens. Also the
recovery sweep's index on sync_batch, which 0003 declared but did not create.

Connections made before this have no tokens: their ledger refuses them, the connection turns
EXPIRED at its next use, and `reconnect` gives it sealed tokens.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connection", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed_access_token", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("sealed_refresh_token", sa.Text(), nullable=True))
    op.create_table(
        "sandbox_grant",
        sa.Column("company_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("access_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("access_expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("refresh_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("company_id"),
    )
    with op.batch_alter_table("sandbox_behaviour", schema=None) as batch_op:
        batch_op.drop_column("token_revoked")
    with op.batch_alter_table("sync_batch", schema=None) as batch_op:
        batch_op.create_index("ix_sync_batch_status_created", ["status", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("sync_batch", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_batch_status_created")
    with op.batch_alter_table("sandbox_behaviour", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token_revoked", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.drop_table("sandbox_grant")
    with op.batch_alter_table("connection", schema=None) as batch_op:
        batch_op.drop_column("sealed_refresh_token")
        batch_op.drop_column("sealed_access_token")
