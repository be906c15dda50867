"""The notifications outbox: CADF notifications waiting to be delivered to the sinks.

``services.notifications.emit`` inserts a row in the caller's transaction, so a
notification exists exactly when the change it describes was committed; the
conductor's dispatcher (``notify.dispatcher``) delivers it later, at least once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from flotilla.db.models import Base, UtcDateTime, utcnow


class OutboxNotification(Base):
    """One notification: the oslo.messaging envelope fields plus the delivery state.

    Due for delivery when ``next_attempt_at`` has passed. ``next_attempt_at`` is cleared
    when the row is delivered (``delivered_at`` set) or given up on (``delivered_at``
    null, ``last_error`` says why), so the due scan only ever sees pending rows.
    """

    __tablename__ = "notifications_outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    event_type: Mapped[str] = mapped_column(String(255))
    priority: Mapped[str] = mapped_column(String(16))  # info | error (oslo.messaging's names)
    publisher_id: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
