"""Number each company's events without gaps, so live listeners can detect a missed one.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 19:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("company") as batch_op:
        batch_op.add_column(
            sa.Column("last_event_seq", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("sync_event") as batch_op:
        batch_op.add_column(
            sa.Column("company_seq", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.drop_index("ix_sync_event_company_id")
    # Existing events are numbered in id order, which was their commit order.
    op.execute(
        """
        UPDATE sync_event SET company_seq = (
            SELECT COUNT(*) FROM sync_event AS earlier
            WHERE earlier.company_id = sync_event.company_id AND earlier.id <= sync_event.id
        )
        """
    )
    op.execute(
        """
        UPDATE company SET last_event_seq = (
            SELECT COUNT(*) FROM sync_event WHERE sync_event.company_id = company.id
        )
        """
    )
    with op.batch_alter_table("sync_event") as batch_op:
        batch_op.create_index(
            "ix_sync_event_company_seq", ["company_id", "company_seq"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_event") as batch_op:
        batch_op.drop_index("ix_sync_event_company_seq")
        batch_op.create_index("ix_sync_event_company_id", ["company_id", "id"], unique=False)
        batch_op.drop_column("company_seq")
    with op.batch_alter_table("company") as batch_op:
        batch_op.drop_column("last_event_seq")
