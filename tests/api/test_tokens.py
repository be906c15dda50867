"""Tokens end: expiry, listing and revocation (``/local/v1/tokens``), the CLI's
``token-create`` default expiry and ``token-rotate-admin``."""

from __future__ import annotations

import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from flotilla.cli.main import main as cli_main
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.db.models import utcnow
from flotilla.services import bootstrap
from flotilla.services import tokens as token_service
from flotilla.settings import Settings

Auth = Callable[..., dict[str, str]]


def _ids(api: TestClient, headers: dict[str, str]) -> dict[str, int]:
    r = api.get("/local/v1/tokens", headers=headers)
    assert r.status_code == 200, r.text
    return {t["user_id"]: t["id"] for t in r.json()["tokens"]}


def test_an_expired_token_is_refused(api: TestClient, app: FastAPI, auth: Auth) -> None:
    assert api.get("/v1/clusters", headers=auth("p1_member")).status_code == 200
    with app.state.runtime.db.session() as s:
        s.execute(
            update(m.ApiToken)
            .where(m.ApiToken.user_id == "alice")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    # A change written straight to the database reaches a process's token cache within
    # token_cache_seconds (tests/integration/test_api_workers.py shows that across
    # processes); drop this process's cache rather than wait.
    app.state.runtime.auth.cache.clear()
    r = api.get("/v1/clusters", headers=auth("p1_member"))
    assert r.status_code == 401
    assert "expired" in r.json()["errors"][0]["detail"]


def test_a_token_with_a_future_expiry_works(api: TestClient, app: FastAPI) -> None:
    with app.state.runtime.db.session() as s:
        tok = token_service.create(
            s, user_id="zed", project_id="p9", roles=["reader"], expires_at=token_service.expiry(1)
        )
    assert api.get("/v1/clusters", headers={"X-Auth-Token": tok}).status_code == 200


def test_admin_lists_every_token_others_their_own(api: TestClient, auth: Auth) -> None:
    assert set(_ids(api, auth("admin"))) == {"admin", "alice", "rita", "bob"}
    assert set(_ids(api, auth("p1_member"))) == {"alice"}
    assert set(_ids(api, auth("p1_reader"))) == {"rita"}
    listed = api.get("/local/v1/tokens", headers=auth("admin")).json()["tokens"]
    assert all(
        "token_hash" not in t and not any(str(v).startswith("flt_") for v in t.values()) for t in listed
    )


def test_a_user_revokes_only_their_own_tokens(api: TestClient, auth: Auth) -> None:
    ids = _ids(api, auth("admin"))
    r = api.delete(f"/local/v1/tokens/{ids['bob']}", headers=auth("p1_member"))
    assert r.status_code == 404
    assert api.get("/v1/clusters", headers=auth("p2_member")).status_code == 200
    assert api.delete(f"/local/v1/tokens/{ids['rita']}", headers=auth("p1_reader")).status_code == 204
    assert api.get("/v1/clusters", headers=auth("p1_reader")).status_code == 401


def test_admin_revokes_any_token(api: TestClient, auth: Auth) -> None:
    ids = _ids(api, auth("admin"))
    assert api.delete(f"/local/v1/tokens/{ids['bob']}", headers=auth("admin")).status_code == 204
    assert api.get("/v1/clusters", headers=auth("p2_member")).status_code == 401
    assert api.delete(f"/local/v1/tokens/{ids['bob']}", headers=auth("admin")).status_code == 404


@pytest.mark.parametrize("ident", ["abc", "-1", "1" * 40, "1.5"])
def test_a_malformed_token_id_is_a_400(api: TestClient, auth: Auth, ident: str) -> None:
    r = api.delete(f"/local/v1/tokens/{ident}", headers=auth("admin"))
    assert r.status_code == 400, r.text
    assert "token id" in r.json()["errors"][0]["detail"]


def test_token_routes_need_a_token(api: TestClient) -> None:
    assert api.get("/local/v1/tokens").status_code == 401
    assert api.delete("/local/v1/tokens/1").status_code == 401


def _rows(settings: Settings) -> list[m.ApiToken]:
    db = Database(settings)
    try:
        with db.reader() as s:
            return list(s.scalars(select(m.ApiToken)))
    finally:
        db.dispose()


def test_token_create_expires_after_the_default_ttl(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data-dir", str(settings.data_dir), "token-create", "--user", "u1", "--project", "p1",
            "--role", "member", "--database-url", settings.db_url]  # fmt: skip
    assert cli_main(args) == 0
    assert cli_main([*args[:-2], "--expires-days", "0", "--database-url", settings.db_url]) == 0
    assert cli_main([*args[:-2], "--expires-days", "-3", "--database-url", settings.db_url]) == 1
    by_exp = sorted(_rows(settings), key=lambda r: r.expires_at is None)
    assert len(by_exp) == 2
    lives = by_exp[0].expires_at - utcnow()  # type: ignore[operator]
    assert timedelta(days=29) < lives <= timedelta(days=30)
    assert by_exp[1].expires_at is None  # --expires-days 0: never


def test_rotate_admin_replaces_the_token_and_rewrites_clouds_yaml(settings: Settings) -> None:
    db = Database(settings)
    try:
        path = bootstrap.ensure_admin_credentials(settings, db)
        assert path is not None
        old = yaml.safe_load(path.read_text())["clouds"]["flotilla"]["auth"]["token"]
        assert cli_main(["--data-dir", str(settings.data_dir), "token-rotate-admin",
                         "--database-url", settings.db_url]) == 0  # fmt: skip
        new = yaml.safe_load(path.read_text())["clouds"]["flotilla"]["auth"]["token"]
        assert new != old
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
        with db.reader() as s:
            assert token_service.resolve(s, old) is None
            ctx = token_service.resolve(s, new)
        assert ctx is not None and ctx.is_admin
    finally:
        db.dispose()
