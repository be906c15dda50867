"""Deliver the notifications outbox to the sinks, at least once, with backoff.

Any number of conductors may run :func:`deliver_pending` on one database: a row is
claimed by pushing its ``next_attempt_at`` past a short lease in one transaction
(``SKIP LOCKED`` on PostgreSQL), sent outside any transaction, then marked in a
second one, guarded by the claim. A conductor that dies mid-send loses its claim
and another sends the row again later; consumers de-duplicate on ``message_id``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from flotilla.db.engine import Database
from flotilla.db.models import utcnow
from flotilla.db.outbox import OutboxNotification
from flotilla.notify.sinks import Sink

log = logging.getLogger(__name__)

BACKOFF_CAP_SECONDS = 300.0
DEFAULT_MAX_ATTEMPTS = 20
#: How long a claimed row stays invisible to other dispatchers while it is being sent.
CLAIM_SECONDS = 120.0
_MESSAGE_NS = uuid.UUID("8f5d0c1e-4a57-4d1f-9a51-6c6b3f1f0a11")

Clock = Callable[[], datetime]


def backoff_seconds(attempts: int) -> float:
    """Delay after the ``attempts``-th failure: 1 s, 2 s, 4 s, … capped at 5 min."""
    return min(2.0 ** max(attempts - 1, 0), BACKOFF_CAP_SECONDS)


def message_id(row: OutboxNotification) -> str:
    """Stable across retries: derived from the CADF event id (unique per row)."""
    return str(uuid.uuid5(_MESSAGE_NS, f"{row.event_type}:{row.payload.get('id', row.id)}"))


def envelope(row: OutboxNotification) -> dict[str, object]:
    """The oslo.messaging ``messagingv2`` envelope (the guide's example), built from a row."""
    return {
        "event_type": row.event_type,
        "message_id": message_id(row),
        "payload": row.payload,
        "priority": row.priority.upper(),
        "publisher_id": row.publisher_id,
        "timestamp": row.created_at.strftime("%Y-%m-%d %H:%M:%S.%f"),
    }


def _claim(session: Session, *, batch: int, now: datetime, lease: datetime, skip_locked: bool) -> list[int]:
    stmt = (
        select(OutboxNotification)
        .where(OutboxNotification.next_attempt_at <= now)
        .order_by(OutboxNotification.id)
        .limit(batch)
    )
    if skip_locked:
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.scalars(stmt))
    for row in rows:
        row.next_attempt_at = lease
    return [row.id for row in rows]


def _send(sinks: Sequence[Sink], message: dict[str, object]) -> str | None:
    """Send to every sink; the first failure's text, or None when all took it."""
    for sink in sinks:
        try:
            sink.send(message)
        except Exception as exc:
            return f"{sink!r}: {type(exc).__name__}: {exc}"[:2000]
    return None


def deliver_pending(
    db: Database,
    sinks: Sequence[Sink],
    batch: int = 100,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    clock: Clock = utcnow,
) -> int:
    """Send the due outbox rows (oldest first, at most ``batch``) to every sink.

    A row is delivered when every sink took it. On a failure its ``attempts`` grows,
    ``last_error`` says which sink failed and why, and it is due again after
    :func:`backoff_seconds`; after ``max_attempts`` it is given up (logged, kept).
    Returns how many rows were delivered. Sink errors never escape; database errors do.
    With no sinks nothing is claimed: the rows wait in the outbox.
    """
    if not sinks:
        return 0
    now = clock()
    lease = now + timedelta(seconds=CLAIM_SECONDS)
    with db.session() as s:
        ids = _claim(s, batch=batch, now=now, lease=lease, skip_locked=not db.is_sqlite)
    delivered = 0
    for row_id in ids:
        with db.reader() as s:
            row = s.get(OutboxNotification, row_id)
            if row is None:
                continue
            message = envelope(row)
            attempts = row.attempts + 1
        error = _send(sinks, message)
        done = clock()
        values: dict[str, object]
        if error is None:
            values = {"attempts": attempts, "delivered_at": done, "next_attempt_at": None, "last_error": None}
        elif attempts >= max_attempts:
            values = {"attempts": attempts, "next_attempt_at": None, "last_error": error}
        else:
            retry_at = done + timedelta(seconds=backoff_seconds(attempts))
            values = {"attempts": attempts, "next_attempt_at": retry_at, "last_error": error}
        with db.session() as s:
            # Guarded by our claim: if it ran out and another dispatcher took the row, it owns it now.
            result = s.execute(
                update(OutboxNotification)
                .where(OutboxNotification.id == row_id, OutboxNotification.next_attempt_at == lease)
                .values(**values)
            )
            mine = bool(result.rowcount)  # type: ignore[attr-defined]
        if not mine:
            log.warning("notification %s: claim lost while sending; another dispatcher has it", row_id)
        elif error is None:
            delivered += 1
        elif attempts >= max_attempts:
            log.error(
                "notification %s (%s) given up after %d attempts: %s",
                row_id, message["event_type"], attempts, error,
            )  # fmt: skip
        else:
            log.warning(
                "notification %s (%s) attempt %d failed, retrying in %.0f s: %s",
                row_id, message["event_type"], attempts, backoff_seconds(attempts), error,
            )  # fmt: skip
    return delivered


def purge_delivered(db: Database, older_than: timedelta, *, clock: Clock = utcnow) -> int:
    """Delete rows delivered more than ``older_than`` ago; returns how many."""
    with db.session() as s:
        result = s.execute(
            delete(OutboxNotification).where(OutboxNotification.delivered_at < clock() - older_than)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def pending_count(session: Session) -> int:
    """Rows still waiting for a (next) delivery attempt; given-up rows are not counted."""
    stmt = select(func.count(OutboxNotification.id)).where(OutboxNotification.next_attempt_at.is_not(None))
    return int(session.scalar(stmt) or 0)
