"""The cluster list and the create-cluster form read their rows in a few statements, not a
few per row, and still show what they showed: node counts, template names, a running
cluster's step, the templates the caller may use.

Unlike the rest of ``tests/web`` these run on SQLite and PostgreSQL: the pages' queries
are what is tested. Statements are counted with ``debug_sql_count`` (the
``X-Flotilla-Sql-Statements`` header), never timed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import Conductor, Dashboard, make_cluster, make_template
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from flotilla.db.models import Base
from flotilla.settings import ConductorSettings, Settings

Dash = Callable[[str], Dashboard]
HEADER = "x-flotilla-sql-statements"
ROW = re.compile(r'<tr data-uuid="([0-9a-f-]{36})">(.*?)</tr>', re.S)
CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
OPTION = re.compile(r'<option value="([0-9a-f-]{36})"[^>]*>([^<]*)</option>')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a new SQLite file, or the module's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flotilla.db'}"
    url = str(request.getfixturevalue("pg_module_db"))
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        present = set(conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")))
        for table in reversed(Base.metadata.sorted_tables):
            if table.name in present:
                conn.execute(table.delete())
    engine.dispose()
    return url


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=db_url, auth_strategy="token",
        conductor=ConductorSettings(enabled=False), debug_sql_count=True,
    )  # fmt: skip


def rows(html: str) -> dict[str, list[str]]:
    """The cluster list's rows: uuid -> cell texts (tags stripped, whitespace folded)."""
    out = {}
    for uuid, body in ROW.findall(html):
        out[uuid] = [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in CELL.findall(body)]
    return out


def statements(dash: Dashboard, path: str) -> int:
    r = dash.get(path)
    assert r.status_code == 200, r.text[:2000]
    return int(r.headers[HEADER])


def test_cluster_list_shows_counts_names_and_steps_in_a_few_statements(
    dashboard: Dash, image: dict[str, Any], conductor: Conductor, api: TestClient, tokens: dict[str, str]
) -> None:
    dash = dashboard("p1_member")
    named = make_template(dash, name="tpl-named")
    other = make_template(dash, name="tpl-other")
    done = []
    for i, template in enumerate((named, other)):
        done.append(make_cluster(dash, template, name=f"done{i}"))
        conductor.run(done[-1], name=f"done{i}")
    few = statements(dash, "/dashboard/clusters")
    for i in range(2, 6):
        done.append(make_cluster(dash, named, name=f"done{i}"))
        conductor.run(done[-1], name=f"done{i}")
    assert statements(dash, "/dashboard/clusters") == few  # finished rows cost no statement each

    running = make_cluster(dash, named, name="busy")
    conductor.progress(running, 2, 3, "starting node", "booting")
    page = dash.get("/dashboard/clusters")
    assert int(page.headers[HEADER]) <= few + 2  # the running row's events and step
    shown = rows(page.text)
    assert set(shown) == {*done, running}
    api_rows = api.get("/v1/clusters", headers={"X-Auth-Token": tokens["p1_member"]}).json()["clusters"]
    for c in api_rows:
        name, status, _health, progress, template, masters, nodes, _created = shown[c["uuid"]]
        assert (name, status) == (c["name"], c["status"])
        assert (int(masters), int(nodes)) == (c["master_count"], c["node_count"])
        assert template == ("tpl-named" if c["cluster_template_id"] == named else "tpl-other"), template
        if c["uuid"] == running:
            assert progress.startswith("2 of 3: starting node (booting) · ") and progress.endswith(" s")
        else:
            assert "of" not in progress and status == "CREATE_COMPLETE"
    assert 'http-equiv="refresh"' in page.text  # one running cluster refreshes the page


def test_create_cluster_form_lists_the_templates_the_caller_may_use(
    dashboard: Dash, image: dict[str, Any], api: TestClient, tokens: dict[str, str]
) -> None:
    def template(who: str, name: str, coe: str, **extra: Any) -> str:
        body = {"name": name, "coe": coe, "image_id": "flotilla-node", **extra}
        r = api.post("/v1/clustertemplates", json=body, headers={"X-Auth-Token": tokens[who]})
        assert r.status_code == 201, r.text
        return str(r.json()["uuid"])

    mine = template("p1_member", "b-mine", "docker")
    theirs = template("p2_member", "a-theirs", "swarm-mode")
    public = template("admin", "c-public", "docker", public=True)
    hidden = template("admin", "d-hidden", "docker", public=True, hidden=True)

    def options(who: str) -> list[tuple[str, str]]:
        page = dashboard(who).get("/dashboard/clusters/new")
        assert page.status_code == 200, page.text[:2000]
        return OPTION.findall(page.text)

    assert options("p1_member") == [(mine, "b-mine (docker)"), (public, "c-public (docker)")]
    assert options("p2_member") == [(theirs, "a-theirs (swarm-mode)"), (public, "c-public (docker)")]
    assert options("admin") == [
        (theirs, "a-theirs (swarm-mode)"), (mine, "b-mine (docker)"), (public, "c-public (docker)"),
        (hidden, "d-hidden (docker)"),
    ]  # fmt: skip
