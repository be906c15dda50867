"""mservices rows keyed by (host, binary), as in Magnum

Conductors used to report as ``<hostname>:<pid>``, so every restart added a row and
left the previous one ``down``. They now report as ``<hostname>`` (or the configured
``conductor.host``). This folds the old per-process rows of one host and binary into
one row: the most recently seen one, renamed to the bare host name, keeps its id; the
others are deleted. The (host, binary) unique constraint has existed since 0001.

Revision ID: 0004_mservice_identity
Revises: 0003
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004_mservice_identity"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PID_SUFFIX = re.compile(r"^(?P<host>.+):\d+$")
_OLDEST = datetime.min.replace(tzinfo=UTC)

services = sa.table(
    "services",
    sa.column("id", sa.Integer),
    sa.column("host", sa.String),
    sa.column("binary", sa.String),
    sa.column("last_seen_up", sa.DateTime(timezone=True)),
)


def _aware(value: datetime | None) -> datetime:
    if value is None:
        return _OLDEST
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(services.c.id, services.c.host, services.c.binary, services.c.last_seen_up))
    groups: dict[tuple[str, str], list[tuple[datetime, int, str]]] = {}
    for row_id, host, binary, seen in rows:
        match = _PID_SUFFIX.match(host)
        bare = match.group("host") if match else host
        groups.setdefault((bare, binary), []).append((_aware(seen), row_id, host))
    for (bare, _binary), members in groups.items():
        members.sort(reverse=True)  # most recently seen first (then the highest id)
        keep_id, keep_host = members[0][1], members[0][2]
        drop = [row_id for _, row_id, _ in members[1:]]
        if drop:
            conn.execute(sa.delete(services).where(services.c.id.in_(drop)))
        if keep_host != bare:
            conn.execute(sa.update(services).where(services.c.id == keep_id).values(host=bare))


def downgrade() -> None:
    """Nothing to undo in the schema; the folded rows are not restored (they were stale)."""
