"""Dashboard sessions kept server-side, so signing out ends a session for good.

The session cookie carries a random session id next to the token; the database keeps
the id's SHA-256 until sign-out (or expiry). A copy of the cookie taken before the
sign-out is refused afterwards, although it still decrypts.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from flotilla.db import models as m
from flotilla.db.models import utcnow


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def start(session: Session, lifetime_seconds: float) -> str:
    """Record a new session and return its id (and drop sessions that have expired)."""
    now = utcnow()
    session.execute(delete(m.WebSession).where(m.WebSession.expires_at < now))
    sid = secrets.token_urlsafe(24)
    session.add(m.WebSession(sid_hash=_hash(sid), expires_at=now + timedelta(seconds=lifetime_seconds)))
    return sid


def is_live(session: Session, sid: str) -> bool:
    found = session.scalars(
        select(m.WebSession.id).where(m.WebSession.sid_hash == _hash(sid), m.WebSession.expires_at > utcnow())
    ).first()
    return found is not None


def end(session: Session, sid: str) -> None:
    """Forget the session (idempotent)."""
    session.execute(delete(m.WebSession).where(m.WebSession.sid_hash == _hash(sid)))
