"""Alembic environment: runs on the connection handed in by flotilla.db.migrate."""

from __future__ import annotations

from alembic import context

import flotilla.db.outbox  # noqa: F401  (registers the outbox table on Base.metadata)
from flotilla.db.models import Base

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
