"""The sandbox's documents per call, configurable like its other limits.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 17:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sandbox_behaviour") as batch_op:
        batch_op.add_column(sa.Column("documents_per_call", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sandbox_behaviour") as batch_op:
        batch_op.drop_column("documents_per_call")
