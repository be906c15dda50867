"""API tokens for ``auth_strategy=token``: stored as SHA-256, bound to user, project, roles.

A token may carry an expiry (``expires_at``; None: never, used for the bootstrap admin
token, which ``rotate_admin`` replaces). An expired or revoked token resolves to None,
so every request (and every dashboard page) made with it is refused at once.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, or_, select
from sqlalchemy.orm import Session

from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.db.models import utcnow
from flotilla.db.prepared import Prepared
from flotilla.errors import Invalid, NotFound

ROLES = ("admin", "member", "reader")
PREFIX = "flt_"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def expiry(ttl_days: float | None) -> datetime | None:
    """The expiry of a token made now that lives ``ttl_days`` (None or 0: never)."""
    if not ttl_days:
        return None
    return utcnow() + timedelta(days=ttl_days)


def create(
    session: Session,
    *,
    user_id: str,
    project_id: str,
    roles: list[str],
    description: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """Store a new token and return its plain text (shown once, never stored)."""
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise Invalid(f"Unknown role(s) {', '.join(bad) or '(none)'}; expected one of {', '.join(ROLES)}.")
    for label, value in (("user", user_id), ("project", project_id)):
        if not value or len(value) > 255:
            raise Invalid(f"A token needs a {label} of 1 to 255 characters.")
    if description is not None and len(description) > 255:
        raise Invalid("A token description has at most 255 characters.")
    if expires_at is not None and expires_at <= utcnow():
        raise Invalid("A token's expiry must be in the future.")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(
        m.ApiToken(
            token_hash=_hash(token), user_id=user_id, project_id=project_id, roles=",".join(roles),
            description=description, expires_at=expires_at,
        )
    )  # fmt: skip
    return token


def _live() -> object:
    return or_(m.ApiToken.expires_at.is_(None), m.ApiToken.expires_at > utcnow())


def find(session: Session, token: str) -> m.ApiToken | None:
    """The live (known, unexpired) row of ``token``, or None."""
    return session.scalars(
        select(m.ApiToken).where(m.ApiToken.token_hash == _hash(token), _live())  # type: ignore[arg-type]
    ).first()


def resolve(session: Session, token: str) -> RequestContext | None:
    """The identity behind ``token``, or None when it is unknown, revoked or expired."""
    found = resolve_until(session, token)
    return found[0] if found is not None else None


def resolve_until(session: Session, token: str) -> tuple[RequestContext, datetime | None] | None:
    """The identity behind ``token`` and the token's expiry (None: never), or None when it
    is unknown, revoked or expired."""
    row = find(session, token)
    if row is None:
        return None
    return _context(token, row.user_id, row.project_id, row.roles), row.expires_at


_TABLE = m.ApiToken.__table__
_LOOKUP = Prepared(
    select(_TABLE.c.user_id, _TABLE.c.project_id, _TABLE.c.roles, _TABLE.c.expires_at).where(
        _TABLE.c.token_hash == bindparam("hash")
    )
)


def lookup(db: Database, token: str) -> tuple[RequestContext, datetime | None] | None:
    """:func:`resolve_until` as one prepared statement (no ORM session): what the API's
    authentication runs: about 65 us of CPU on SQLite against 1.25 ms through a session.
    Thread-safe; on SQLite cheap enough for the event loop (one indexed row)."""
    engine = db.read_engine
    rows = _LOOKUP.fetch(engine, {"hash": _hash(token)})
    if not rows:
        return None
    row = _LOOKUP.convert(engine, rows[0])
    expires_at: datetime | None = row["expires_at"]
    if expires_at is not None and expires_at <= utcnow():
        return None
    return _context(token, row["user_id"], row["project_id"], row["roles"]), expires_at


def _context(token: str, user_id: str, project_id: str, roles_text: str) -> RequestContext:
    roles = frozenset(r for r in roles_text.split(",") if r)
    if "admin" in roles:
        roles = roles | {"member", "reader"}
    elif "member" in roles:
        roles = roles | {"reader"}
    return RequestContext(
        user_id=user_id, project_id=project_id, roles=roles, user_name=user_id,
        project_name=project_id, auth_token=token,
    )  # fmt: skip


def count(session: Session) -> int:
    return len(list(session.scalars(select(m.ApiToken.id))))


def list_tokens(session: Session, ctx: RequestContext) -> list[m.ApiToken]:
    """Admins see every token; anyone else the tokens of their own user. Expired ones are
    listed too (their ``expires_at`` says so) until they are revoked."""
    stmt = select(m.ApiToken).order_by(m.ApiToken.id)
    if not ctx.is_admin:
        stmt = stmt.where(m.ApiToken.user_id == ctx.user_id)
    return list(session.scalars(stmt))


def _parse_id(ident: str) -> int:
    if not ident.isdigit() or len(ident) > 18:
        raise Invalid(f"A token id is a positive integer (see token-list), got {ident[:40]!r}.")
    return int(ident)


def revoke(session: Session, ctx: RequestContext, ident: str) -> m.ApiToken:
    """Delete a token by its id: admins any, others only their own user's.

    Raises NotFound for an id the caller may not see (no hint that it exists) and
    Invalid for a malformed id. Revoking the token one is using is allowed (sign-out).
    """
    row = session.get(m.ApiToken, _parse_id(ident))
    if row is None or (not ctx.is_admin and row.user_id != ctx.user_id):
        raise NotFound(f"Token {ident} could not be found.")
    session.delete(row)
    session.flush()
    return row


def rotate(session: Session, old_token: str | None, *, description: str) -> str:
    """Replace the bootstrap admin token: a new admin token (no expiry), the old one
    (when given and known) deleted in the same transaction."""
    token = create(session, user_id="admin", project_id="admin", roles=["admin"], description=description)
    if old_token:
        session.execute(delete(m.ApiToken).where(m.ApiToken.token_hash == _hash(old_token)))
    return token
