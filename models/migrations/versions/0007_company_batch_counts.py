"""Each company's batches in each status, kept with its events: totals without counting.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("PENDING", "PROCESSING", "COMPLETED", "FAILED")


def upgrade() -> None:
    with op.batch_alter_table("company") as batch_op:
        for status in STATUSES:
            batch_op.add_column(
                sa.Column(
                    f"{status.lower()}_batches", sa.Integer(), nullable=False, server_default="0"
                )
            )
    for status in STATUSES:
        op.execute(
            f"""
            UPDATE company SET {status.lower()}_batches = (
                SELECT COUNT(*) FROM sync_batch
                WHERE sync_batch.company_id = company.id AND sync_batch.status = '{status}'
            )
            """
        )


def downgrade() -> None:
    with op.batch_alter_table("company") as batch_op:
        for status in STATUSES:
            batch_op.drop_column(f"{status.lower()}_batches")
