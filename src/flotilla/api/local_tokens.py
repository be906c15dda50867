"""``/local/v1/tokens``: Flotilla's own API tokens (``auth_strategy=token``).

Not Magnum's: Magnum has no token API (Keystone issues its tokens). Admins list and
revoke any token; anyone else only the tokens of their own user. The plain token is
never shown again after ``token-create``; rows are named by their integer id.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from flotilla.api.deps import ContextDep, RuntimeDep
from flotilla.api.v1.render import iso
from flotilla.db import models as m
from flotilla.services import tokens

router = APIRouter(prefix="/local/v1/tokens", tags=["local tokens"])


def _token(r: m.ApiToken) -> dict[str, Any]:
    return {
        "id": r.id, "user_id": r.user_id, "project_id": r.project_id, "roles": r.roles.split(","),
        "description": r.description, "created_at": iso(r.created_at),
        "expires_at": iso(r.expires_at),
    }  # fmt: skip


@router.get("")
def list_tokens(rt: RuntimeDep, ctx: ContextDep) -> dict[str, Any]:
    with rt.db.reader() as s:
        return {"tokens": [_token(r) for r in tokens.list_tokens(s, ctx)]}


@router.delete("/{ident}", status_code=204)
def revoke_token(ident: str, rt: RuntimeDep, ctx: ContextDep) -> Response:
    with rt.db.session() as s:
        tokens.revoke(s, ctx, ident)
    rt.auth.cache.clear()  # at once here; other processes within token_cache_seconds
    return Response(status_code=204)
