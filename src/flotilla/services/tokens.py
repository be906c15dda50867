"""API tokens for ``auth_strategy=token``: stored as SHA-256, bound to user, project, roles."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from flotilla.context import RequestContext
from flotilla.db import models as m
from flotilla.errors import Invalid

ROLES = ("admin", "member", "reader")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(
    session: Session, *, user_id: str, project_id: str, roles: list[str], description: str | None = None
) -> str:
    """Store a new token and return its plain text (shown once, never stored)."""
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise Invalid(f"Unknown role(s) {', '.join(bad) or '(none)'}; expected one of {', '.join(ROLES)}.")
    for label, value in (("user", user_id), ("project", project_id)):
        if not value or len(value) > 255:
            raise Invalid(f"A token needs a {label} of 1 to 255 characters.")
    token = "flt_" + secrets.token_urlsafe(32)
    session.add(
        m.ApiToken(
            token_hash=_hash(token), user_id=user_id, project_id=project_id, roles=",".join(roles),
            description=description,
        )
    )  # fmt: skip
    return token


def resolve(session: Session, token: str) -> RequestContext | None:
    """The identity behind ``token``, or None when it is unknown."""
    row = session.scalars(select(m.ApiToken).where(m.ApiToken.token_hash == _hash(token))).first()
    if row is None:
        return None
    roles = frozenset(r for r in row.roles.split(",") if r)
    if "admin" in roles:
        roles = roles | {"member", "reader"}
    elif "member" in roles:
        roles = roles | {"reader"}
    return RequestContext(
        user_id=row.user_id, project_id=row.project_id, roles=roles, user_name=row.user_id,
        project_name=row.project_id, auth_token=token,
    )  # fmt: skip


def count(session: Session) -> int:
    return len(list(session.scalars(select(m.ApiToken.id))))
