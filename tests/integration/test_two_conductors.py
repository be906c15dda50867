"""Two conductors on one PostgreSQL database share the operations queue: every cluster
completes and every create operation is claimed exactly once (``attempts == 1``).

Both ``Conductor`` objects run in this process with the in-memory ``fake`` provider;
they are told apart by their ``host`` (in production that is ``HOSTNAME:PID``, the same
for both here). The database is the module's own copy from ``tests/conftest.py``
(``FLOTILLA_TEST_PG_URL``; ``scripts/test.sh`` sets it). ``bench/load.py --burst``
does the same with separate processes and prints the numbers.
"""

from __future__ import annotations

import collections
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from flotilla.api.app import create_app
from flotilla.conductor.service import Conductor
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.services import tokens as token_service
from flotilla.settings import ConductorSettings, Settings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.postgres
log = logging.getLogger(__name__)

CLUSTERS = 20
WAIT_SECONDS = 180.0


def _settings(tmp_path: Path, url: str, *, conductor: bool) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=url,
        auth_strategy="token",
        secret_key="two-conductors-test-secret",
        enabled_providers=["fake"],
        default_provider="fake",
        max_clusters_per_project=CLUSTERS,
        conductor=ConductorSettings(enabled=conductor, workers=2, poll_interval=0.05, health_interval=3600),
    )


@pytest.fixture
def api(tmp_path: Path, pg_module_db: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = create_app(_settings(tmp_path, pg_module_db, conductor=False))
    with app.state.runtime.db.session() as s:
        token = token_service.create(s, user_id="admin", project_id="admin", roles=["admin"])
    headers = {"X-Auth-Token": token, "OpenStack-API-Version": "container-infra latest"}
    with TestClient(app) as client:
        yield client, headers
    app.state.runtime.db.dispose()


def test_two_conductors_complete_every_cluster_claiming_each_create_once(
    tmp_path: Path, pg_module_db: str, api: tuple[TestClient, dict[str, str]]
) -> None:
    client, headers = api
    r = client.post("/local/v1/images", json={"name": "node", "os_distro": "debian"}, headers=headers)
    assert r.status_code == 201, r.text
    r = client.post(
        "/v1/clustertemplates",
        json={"name": "t", "coe": "swarm", "image_id": "node", "external_network_id": "public",
              "flavor_id": "m1.small", "docker_storage_driver": "overlay2"},
        headers=headers,
    )  # fmt: skip
    assert r.status_code == 201, r.text

    def create(i: int) -> str:
        body = {"name": f"k{i}", "cluster_template_id": "t", "master_count": 1, "node_count": 1}
        r = client.post("/v1/clusters", json=body, headers=headers)
        assert r.status_code == 202, r.text
        uuid: str = r.json()["uuid"]
        return uuid

    # Half the operations wait in the queue before the conductors start (all four workers
    # race for them at once); the other half arrive while both conductors poll.
    uuids = [create(i) for i in range(CLUSTERS // 2)]
    conductors: list[tuple[Conductor, Database]] = []
    for name in ("a", "b"):
        settings = _settings(tmp_path, pg_module_db, conductor=True)
        db = Database(settings)
        conductor = Conductor(settings, db)
        conductor.host = f"conductor-{name}"  # both would be HOSTNAME:PID in one process
        conductors.append((conductor, db))
    try:
        for conductor, _ in conductors:
            conductor.start()
        uuids += [create(i) for i in range(CLUSTERS // 2, CLUSTERS)]

        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            r = client.get("/v1/clusters", params={"limit": 1000}, headers=headers)
            status = {c["uuid"]: c["status"] for c in r.json()["clusters"]}
            if all(not status.get(u, "").endswith("IN_PROGRESS") for u in uuids):
                break
            assert time.monotonic() < deadline, collections.Counter(status.values())
            time.sleep(0.2)
    finally:
        for conductor, db in conductors:
            conductor.stop()
            db.dispose()

    assert [status.get(u) for u in uuids] == ["CREATE_COMPLETE"] * CLUSTERS, status
    db = Database(_settings(tmp_path, pg_module_db, conductor=False))
    try:
        with db.reader() as s:
            ops = list(
                s.scalars(
                    select(m.Operation).where(m.Operation.cluster_id.in_(uuids), m.Operation.kind == "create")
                )
            )
            owners = collections.Counter((op.lease_owner or "").split("/")[0] for op in ops)
            claims = {op.cluster_id: (op.state, op.attempts) for op in ops}
    finally:
        db.dispose()
    log.info("create operations finished per conductor: %s", dict(owners))
    assert len(ops) == CLUSTERS
    assert claims == dict.fromkeys(uuids, ("done", 1)), claims
    assert set(owners) <= {"conductor-a", "conductor-b"}, owners
