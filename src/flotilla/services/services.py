"""Conductor heartbeats behind ``/v1/mservices``."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flotilla.db import models as m
from flotilla.db.models import utcnow


def heartbeat(session: Session, *, host: str, binary: str) -> None:
    """Record that ``binary`` on ``host`` is alive: its one row (keyed by (host, binary), as in
    Magnum) is created on first report and reused after every restart."""
    query = select(m.Service).where(m.Service.host == host, m.Service.binary == binary)
    row = session.scalars(query).first()
    now = utcnow()
    if row is None:
        try:
            with session.begin_nested():  # another conductor of this host may insert it first
                session.add(m.Service(host=host, binary=binary, report_count=1, last_seen_up=now))
            return
        except IntegrityError:
            row = session.scalars(query).one()
    row.report_count += 1
    row.last_seen_up = now
    row.updated_at = now


def is_up(row: m.Service, down_after: float) -> bool:
    return row.last_seen_up is not None and utcnow() - row.last_seen_up <= timedelta(seconds=down_after)


def list_all(session: Session) -> list[m.Service]:
    return list(session.scalars(select(m.Service).order_by(m.Service.id)))
