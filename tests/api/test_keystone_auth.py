"""``auth_strategy = keystone`` against a REAL Keystone (``tests/keystone_server.py``).

Needs ``scripts/setup-keystone.sh`` (Keystone in ``.venv-keystone``) and keystonemiddleware
in the project's venv (``pip install -e '.[keystone]'``). Without them these tests are
skipped, except under ``CI=true``, where they fail instead.

Keystone outages: a token validated in the last ``TOKEN_CACHE_SECONDS`` keeps working from
the in-memory cache; any other token gets ``Unavailable`` (HTTP 503 through the app).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flotilla.api.app import create_app
from flotilla.api.keystone import KeystoneValidator, _TokenCache
from flotilla.errors import Unauthorized, Unavailable
from flotilla.settings import ConductorSettings, KeystoneSettings, Settings
from keystone_server import KEYSTONE_VENV, KeystoneServer, keystone_installed, start_keystone

PASSWORD = "correct-horse-battery"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _skip_or_fail(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)


def _require_middleware() -> None:
    try:
        import keystonemiddleware  # noqa: F401
    except ImportError:
        _skip_or_fail("keystonemiddleware is not installed: pip install -e '.[keystone]'")


@dataclass(frozen=True)
class Deployment:
    """The session's Keystone with a service account and a few users in project ``demo``."""

    server: KeystoneServer
    service: KeystoneSettings
    project_id: str
    user_ids: dict[str, str]  # member / reader / admin -> user id

    def token(self, who: str, project: str | None = "demo") -> str:
        return self.server.get_token(f"{who}-user", PASSWORD, project)


def _service_settings(server: KeystoneServer, name: str, password: str, project: str) -> KeystoneSettings:
    return KeystoneSettings(
        auth_url=server.url,
        username=name,
        password=password,
        project_name=project,
        user_domain_name="Default",
        project_domain_name="Default",
    )


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    if not keystone_installed():
        _skip_or_fail(f"no Keystone in {KEYSTONE_VENV}: run scripts/setup-keystone.sh")
    _require_middleware()
    server = start_keystone()
    sys.stderr.write(f"\nkeystone {server.url} up in {server.startup_seconds:.1f}s\n")
    try:
        name, password, project = server.create_service_user()
        project_id = server.create_project("demo")
        user_ids = {
            role: server.create_user(f"{role}-user", PASSWORD, project_id, role)
            for role in ("member", "reader", "admin")
        }
        yield Deployment(server, _service_settings(server, name, password, project), project_id, user_ids)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def validator(deployment: Deployment) -> KeystoneValidator:
    return KeystoneValidator(deployment.service)


# -- without Keystone --------------------------------------------------------------------


def test_missing_keystonemiddleware_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keystonemiddleware", None)
    monkeypatch.setitem(sys.modules, "keystonemiddleware.auth_token", None)
    with pytest.raises(Unavailable, match=r"pip install 'flotilla\[keystone\]'"):
        KeystoneValidator(KeystoneSettings())


def test_token_cache_expires_and_evicts(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("flotilla.api.keystone._now", lambda: now[0])
    cache = _TokenCache(max_entries=2)
    cache.set("a", b"A", time=10)
    cache.set("b", b"B", time=0)  # no expiry
    assert cache.get("a") == b"A"
    now[0] += 11
    assert cache.get("a") is None
    assert cache.get("b") == b"B"
    cache.set("c", b"C", time=10)
    cache.set("d", b"D", time=10)  # evicts the least recently used ("b")
    assert cache.get("b") is None
    assert len(cache) == 2


def test_unreachable_keystone_is_unavailable() -> None:
    _require_middleware()
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    v = KeystoneValidator(KeystoneSettings(auth_url=f"http://127.0.0.1:{port}/v3", password="x"))
    with pytest.raises(Unavailable, match=r"Keystone cannot validate tokens right now .*ConnectFailure"):
        v.identify("gAAAAABsometoken")


# -- against the real Keystone -----------------------------------------------------------


@pytest.mark.keystone
def test_member_token(deployment: Deployment, validator: KeystoneValidator) -> None:
    token = deployment.token("member")
    ctx = validator.identify(token)
    assert ctx is not None
    assert ctx.user_id == deployment.user_ids["member"]
    assert ctx.user_name == "member-user"
    assert ctx.project_id == deployment.project_id
    assert ctx.project_name == "demo"
    assert ctx.domain_id == "default"
    assert ctx.auth_token == token
    # Keystone's implied roles: member implies reader.
    assert ctx.roles == {"member", "reader"}
    assert ctx.can_write and ctx.can_read and not ctx.is_admin
    # Second time from the cache: same answer.
    assert validator.identify(token) == ctx


@pytest.mark.keystone
def test_reader_token(deployment: Deployment, validator: KeystoneValidator) -> None:
    ctx = validator.identify(deployment.token("reader"))
    assert ctx is not None
    assert ctx.user_id == deployment.user_ids["reader"]
    assert ctx.roles == {"reader"}
    assert ctx.can_read and not ctx.can_write


@pytest.mark.keystone
def test_admin_token(deployment: Deployment, validator: KeystoneValidator) -> None:
    ctx = validator.identify(deployment.token("admin"))
    assert ctx is not None
    assert {"admin", "member", "reader"} <= ctx.roles
    assert ctx.is_admin
    assert all(r == r.lower() for r in ctx.roles)


@pytest.mark.keystone
@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "gAAAAAB" + "x" * 180,  # fernet-shaped nonsense
        "",
        " ",
        "a" * 20_000,
        "tok\nen",
        "tök",
    ],
    ids=["word", "fernet-shaped", "empty", "space", "huge", "newline", "non-ascii"],
)
def test_garbage_token_is_none(validator: KeystoneValidator, token: str) -> None:
    assert validator.identify(token) is None


@pytest.mark.keystone
def test_revoked_token_is_none(deployment: Deployment, validator: KeystoneValidator) -> None:
    token = deployment.token("member")
    deployment.server.revoke_token(token)
    assert validator.identify(token) is None


@pytest.mark.keystone
def test_unscoped_token_is_refused_with_a_reason(
    deployment: Deployment, validator: KeystoneValidator
) -> None:
    with pytest.raises(Unauthorized, match="not scoped to a project"):
        validator.identify(deployment.token("member", project=None))


@pytest.mark.keystone
def test_wrong_service_password_is_unavailable(deployment: Deployment) -> None:
    bad = KeystoneValidator(deployment.service.model_copy(update={"password": "wrong"}))
    with pytest.raises(Unavailable, match="rejected authorization"):
        bad.identify(deployment.token("member"))


@pytest.mark.keystone
def test_concurrent_identify(deployment: Deployment, validator: KeystoneValidator) -> None:
    tokens = [(who, deployment.token(who)) for who in ("member", "reader", "admin") for _ in range(2)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda wt: validator.identify(wt[1]), tokens))
    for (who, _), ctx in zip(tokens, results, strict=True):
        assert ctx is not None and ctx.user_id == deployment.user_ids[who]


# -- end to end through the app ----------------------------------------------------------


@pytest.fixture
def keystone_api(deployment: Deployment, tmp_path: Path) -> Iterator[TestClient]:

    settings = Settings(
        data_dir=tmp_path,
        auth_strategy="keystone",
        keystone=deployment.service,
        conductor=ConductorSettings(enabled=False),
    )
    app = create_app(settings)
    with TestClient(app) as client:
        yield client


@pytest.mark.keystone
def test_app_with_keystone_tokens(deployment: Deployment, keystone_api: TestClient) -> None:
    ok = keystone_api.get("/v1/clustertemplates", headers={"X-Auth-Token": deployment.token("member")})
    assert ok.status_code == 200, ok.text
    assert ok.json()["clustertemplates"] == []

    reader = keystone_api.get("/v1/clustertemplates", headers={"X-Auth-Token": deployment.token("reader")})
    assert reader.status_code == 200, reader.text

    bad = keystone_api.get("/v1/clustertemplates", headers={"X-Auth-Token": "not-a-token"})
    assert bad.status_code == 401, bad.text

    missing = keystone_api.get("/v1/clustertemplates")
    assert missing.status_code == 401, missing.text


# -- Keystone goes away (keep this last: it stops the session's Keystone) ------------


@pytest.mark.keystone
def test_keystone_stopped(deployment: Deployment, tmp_path: Path) -> None:
    """Cached tokens keep working while Keystone is down; new ones get Unavailable (503).

    Last in this module on purpose: it stops the session's Keystone (starting a second
    one just to stop it cost minutes on this 2-core machine).
    """
    twin = deployment.server
    try:
        service = deployment.service.model_copy(update={"auth_url": twin.url})
        validator = KeystoneValidator(service)
        seen = deployment.token("member")
        unseen = deployment.token("reader")
        before = validator.identify(seen)
        assert before is not None
        app = create_app(
            Settings(
                data_dir=tmp_path,
                auth_strategy="keystone",
                keystone=service,
                conductor=ConductorSettings(enabled=False),
            )
        )
        with TestClient(app) as api:
            assert api.get("/v1/clustertemplates", headers={"X-Auth-Token": seen}).status_code == 200
            twin.stop()
            assert not twin.running()
            assert validator.identify(seen) == before  # from the cache
            with pytest.raises(Unavailable, match="Keystone cannot validate tokens right now"):
                validator.identify(unseen)
            assert api.get("/v1/clustertemplates", headers={"X-Auth-Token": seen}).status_code == 200
            r = api.get("/v1/clustertemplates", headers={"X-Auth-Token": unseen})
            assert r.status_code == 503, r.text
            assert "Keystone" in r.text
    finally:
        twin.stop()
