"""Richer records: every sandbox company's books get the accounts an expense is paid from
(two bank accounts and a credit card), as new companies' are seeded.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PAYING = (
    ("090", "Business Bank Account", "BANK"),
    ("091", "Business Savings Account", "BANK"),
    ("092", "Company Credit Card", "CREDITCARD"),
)


def upgrade() -> None:
    for code, name, kind in _PAYING:
        op.execute(
            sa.text(
                "INSERT INTO sandbox_account (company_id, code, name, type)"
                " SELECT DISTINCT company_id, :code, :name, :kind FROM sandbox_account a"
                " WHERE NOT EXISTS (SELECT 1 FROM sandbox_account b"
                " WHERE b.company_id = a.company_id AND b.code = :code)"
            ).bindparams(code=code, name=name, kind=kind)
        )


def downgrade() -> None:
    op.execute(
        sa.text(
            "DELETE FROM sandbox_account WHERE (code, name) IN (('090', 'Business Bank Account'),"
            " ('091', 'Business Savings Account'), ('092', 'Company Credit Card'))"
        )
    )
