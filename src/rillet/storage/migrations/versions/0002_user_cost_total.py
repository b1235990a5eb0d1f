"""A running cost total per user, so a user's total is one row read, not a sum over usage.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("cost_usd_total", sa.Double(), nullable=False, server_default="0")
        )
    op.execute(
        "UPDATE users SET cost_usd_total = COALESCE("
        "(SELECT SUM(usage.cost_usd) FROM usage WHERE usage.user_id = users.id), 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("cost_usd_total")
