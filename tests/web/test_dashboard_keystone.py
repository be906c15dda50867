"""The dashboard's sign-in with ``auth_strategy = keystone``: the same form takes a
Keystone token, checked by the same Authenticator as the API, against a REAL Keystone
(``tests/keystone_server.py``; ``scripts/setup-keystone.sh`` installs it). Skipped
without it, failed under ``CI=true``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dashboard_helpers import Dashboard
from fastapi.testclient import TestClient

from flotilla.api.app import create_app
from flotilla.settings import ConductorSettings, KeystoneSettings, Settings
from flotilla.web import routes as web_routes
from keystone_server import KEYSTONE_VENV, KeystoneServer, keystone_installed, start_keystone

pytestmark = pytest.mark.keystone
PASSWORD = "correct-horse-battery"


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class Keystone:
    server: KeystoneServer
    service: KeystoneSettings


@pytest.fixture(scope="module")
def keystone() -> Iterator[Keystone]:
    if not keystone_installed():
        _skip_or_fail(f"no Keystone in {KEYSTONE_VENV}: run scripts/setup-keystone.sh")
    try:
        import keystonemiddleware  # noqa: F401
    except ImportError:
        _skip_or_fail("keystonemiddleware is not installed: pip install -e '.[keystone]'")
    server = start_keystone()
    try:
        name, password, project = server.create_service_user()
        project_id = server.create_project("webdemo")
        for role in ("member", "reader"):
            server.create_user(f"web-{role}", PASSWORD, project_id, role)
        service = KeystoneSettings(
            auth_url=server.url, username=name, password=password, project_name=project,
            user_domain_name="Default", project_domain_name="Default",
        )  # fmt: skip
        yield Keystone(server, service)
    finally:
        server.stop()


@pytest.fixture
def client(keystone: Keystone, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'flotilla.db'}", auth_strategy="keystone",
        keystone=keystone.service, conductor=ConductorSettings(enabled=False),
    )  # fmt: skip
    app = create_app(settings)
    if not any(getattr(r, "path", "").startswith("/dashboard") for r in app.routes):
        app.include_router(web_routes.router)
    with TestClient(app) as c:
        yield c
    app.state.runtime.db.dispose()


def test_sign_in_with_a_keystone_token(keystone: Keystone, client: TestClient) -> None:
    dash = Dashboard(client)
    form = client.get("/dashboard/login").text
    assert "Keystone token" in form and "openstack token issue" in form
    assert dash.login("gAAAAAB-not-a-token").status_code == 401

    token = keystone.server.get_token("web-reader", PASSWORD, "webdemo")
    assert dash.login(token).status_code == 303
    page = client.get("/dashboard/clusters")
    assert page.status_code == 200 and "web-reader @ webdemo" in page.text and "reader" in page.text
    assert "new-cluster" not in page.text  # a reader: no create button
