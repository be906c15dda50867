"""notifications outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 00:10:00.000000
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
    op.create_table(
        "notifications_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(length=255), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("publisher_id", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notifications_outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notifications_outbox_next_attempt_at"), ["next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notifications_outbox_delivered_at"), ["delivered_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_outbox_delivered_at"))
        batch_op.drop_index(batch_op.f("ix_notifications_outbox_next_attempt_at"))

    op.drop_table("notifications_outbox")
