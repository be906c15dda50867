"""cluster template driver

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cluster_templates") as batch:
        batch.add_column(sa.Column("driver", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cluster_templates") as batch:
        batch.drop_column("driver")
