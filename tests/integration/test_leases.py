"""Leases end with their holder: a conductor that stops (SIGTERM in ``serve``) releases
the leases of its running operations, and a conductor that starts on the same host
reclaims at once the leases held by a process that is gone (a SIGKILLed predecessor),
instead of waiting for them to run out.

The conductors run in this process with the in-memory ``fake`` provider (slowed down so
an operation is caught while it runs); the database is real (SQLite and PostgreSQL).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from flotilla.api.app import create_app
from flotilla.conductor.providers import ProviderPool
from flotilla.conductor.service import Conductor
from flotilla.db import models as m
from flotilla.db.engine import Database
from flotilla.db.models import utcnow
from flotilla.drivers.base import Provider
from flotilla.drivers.providers.fake import FakeProvider
from flotilla.idents import new_uuid
from flotilla.services import operations
from flotilla.services import tokens as token_service
from flotilla.settings import ConductorSettings, Settings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from fastapi.testclient import TestClient

#: Long enough that a test waiting for it to run out would notice (it never waits that long).
LEASE_SECONDS = 600.0
WAIT_SECONDS = 60.0


class SlowFakePool(ProviderPool):
    """Every fake provider call sleeps a little, so an operation is seen while it runs."""

    def _build(self, name: str) -> Provider:
        return FakeProvider(delay=0.3)


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=url, auth_strategy="token", secret_key="leases-test-secret",
        enabled_providers=["fake"], default_provider="fake",
        conductor=ConductorSettings(enabled=False, workers=1, poll_interval=0.05, lease_seconds=LEASE_SECONDS,
                                    health_interval=3600, sync_interval=3600),
    )  # fmt: skip


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): surely gone."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _wait(what: str, check: object, timeout: float = WAIT_SECONDS) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[tuple[Settings, TestClient, dict[str, str]]]:
    settings = _settings(tmp_path, db_url)
    app = create_app(settings)
    with app.state.runtime.db.session() as s:
        token = token_service.create(s, user_id="admin", project_id="admin", roles=["admin"])
    headers = {"X-Auth-Token": token, "OpenStack-API-Version": "container-infra latest"}
    with TestClient(app) as client:
        r = client.post("/local/v1/images", json={"name": "node", "os_distro": "debian"}, headers=headers)
        assert r.status_code == 201, r.text
        r = client.post(
            "/v1/clustertemplates",
            json={"name": "t", "coe": "swarm", "image_id": "node", "external_network_id": "public",
                  "flavor_id": "m1.small", "docker_storage_driver": "overlay2"},
            headers=headers,
        )  # fmt: skip
        assert r.status_code == 201, r.text
        yield settings, client, headers
    app.state.runtime.db.dispose()


def _op(db: Database, cluster: str) -> m.Operation:
    with db.reader() as s:
        return s.scalars(select(m.Operation).where(m.Operation.cluster_id == cluster)).one()


def _status(db: Database, cluster: str) -> str:
    with db.reader() as s:
        return s.scalars(select(m.Cluster.status).where(m.Cluster.uuid == cluster)).one()


def test_a_stopping_conductor_releases_its_leases_and_the_next_one_resumes(
    world: tuple[Settings, TestClient, dict[str, str]],
) -> None:
    settings, client, headers = world
    r = client.post("/v1/clusters", json={"name": "c1", "cluster_template_id": "t", "node_count": 1},
                    headers=headers)  # fmt: skip
    assert r.status_code == 202, r.text
    uuid = r.json()["uuid"]
    db = Database(settings)
    pool = SlowFakePool(settings)
    try:
        first = Conductor(settings, db, providers=pool)
        first.start()
        _wait("the operation to run", lambda: _op(db, uuid).lease_owner is not None)
        first.stop(grace=0.5)
        op = _op(db, uuid)
        assert op.state == "running" and op.lease_owner is None and op.lease_until is None
        second = Conductor(settings, db, providers=pool)
        second.start()
        try:
            _wait("the resumed create to complete", lambda: _status(db, uuid) == "CREATE_COMPLETE")
        finally:
            second.stop()
        assert _op(db, uuid).attempts == 2
    finally:
        db.dispose()


def test_a_starting_conductor_reclaims_the_leases_of_dead_processes_of_its_host(
    world: tuple[Settings, TestClient, dict[str, str]],
) -> None:
    settings, client, headers = world
    r = client.post("/v1/clusters", json={"name": "c2", "cluster_template_id": "t", "node_count": 1},
                    headers=headers)  # fmt: skip
    assert r.status_code == 202, r.text
    uuid = r.json()["uuid"]
    db = Database(settings)
    dead = f"{socket.gethostname()}:{_dead_pid()}/w0"
    try:
        with db.session() as s:  # what a SIGKILLed server leaves behind: a live lease, no worker
            op = s.scalars(select(m.Operation).where(m.Operation.cluster_id == uuid)).one()
            op.state, op.lease_owner = "running", dead
            op.lease_until, op.attempts = utcnow() + timedelta(seconds=LEASE_SECONDS), 1
        conductor = Conductor(settings, db, providers=SlowFakePool(settings))
        conductor.start()
        try:
            _wait("the reclaimed create to complete", lambda: _status(db, uuid) == "CREATE_COMPLETE")
        finally:
            conductor.stop()
    finally:
        db.dispose()


def test_only_leases_of_gone_processes_of_this_host_are_reclaimed(settings: Settings) -> None:
    db = Database(settings)
    host = socket.gethostname()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owners = {
        "dead": f"{host}:{_dead_pid()}/w1",
        "alive": f"{host}:{sleeper.pid}/w0",
        "other-host": f"not-{host}:{_dead_pid()}/w0",
        "odd": "something-else",
    }
    try:
        with db.session() as s:
            for key, owner in owners.items():
                s.add(m.Operation(uuid=new_uuid(), cluster_id=key, kind="create", params={}, state="running",
                                  lease_owner=owner, lease_until=utcnow() + timedelta(seconds=LEASE_SECONDS),
                                  created_at=utcnow()))  # fmt: skip
        with db.session() as s:
            reclaimed = operations.reclaim_dead(s, host, lambda pid: pid == sleeper.pid)
        assert len(reclaimed) == 1
        with db.reader() as s:
            left = {o.cluster_id: o.lease_owner for o in s.scalars(select(m.Operation))}
        assert left == {**owners, "dead": None}
    finally:
        sleeper.kill()
        sleeper.wait()
        db.dispose()
