"""An index of items' outcomes by time, for `syncStats`; items by reference, for
`searchItems`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTCOMES = "item_id IS NOT NULL AND attachment_id IS NULL AND to_status IN ('SUCCESS', 'FAILED')"


def upgrade() -> None:
    op.create_index(
        "ix_sync_event_outcomes",
        "sync_event",
        ["company_id", "occurred_at", "to_status"],
        postgresql_where=sa.text(OUTCOMES),
        sqlite_where=sa.text(OUTCOMES),
    )
    op.create_index(
        "ix_sync_item_company_reference", "sync_item", ["company_id", "reference", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_sync_item_company_reference", table_name="sync_item")
    op.drop_index("ix_sync_event_outcomes", table_name="sync_event")
