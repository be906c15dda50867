"""Fixtures for the dashboard tests: the app with the dashboard on SQLite, signed-in
browsers-in-process (TestClient), and a stand-in for the conductor's bookkeeping.

The conductor's *work* (provider + COE steps) needs a Docker daemon; the fast tests
drive the same service calls the conductor makes (claim, progress, outputs, finish)
so pages can be checked in every state. The real thing runs in ``test_browser.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import Conductor, Dashboard
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flotilla.api.app import create_app
from flotilla.settings import Settings
from flotilla.web import routes as web_routes


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real headless Chromium (scripts/setup-browser.sh)")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: these tests are about pages, not the database."""
    return f"sqlite:///{tmp_path / 'flotilla.db'}"


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    if not any(getattr(r, "path", "").startswith("/dashboard") for r in application.routes):
        application.include_router(web_routes.router)  # until create_app includes it itself
    yield application
    application.state.runtime.db.dispose()


@pytest.fixture
def dashboard(app: FastAPI, tokens: dict[str, str]) -> Iterator[Callable[[str], Dashboard]]:
    """``dashboard("admin")``: a signed-in Dashboard for an identity of ``tokens``."""
    clients: list[TestClient] = []

    def make(who: str) -> Dashboard:
        client = TestClient(app)
        clients.append(client)
        dash = Dashboard(client)
        response = dash.login(tokens[who])
        assert response.status_code == 303, response.text
        return dash

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def conductor(app: FastAPI) -> Conductor:
    return Conductor(app)


@pytest.fixture
def image(register_image: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return register_image("flotilla-node", "debian")
