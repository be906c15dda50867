"""Races and crashes around the operations queue, on SQLite and PostgreSQL.

* Two deletes of one cluster at once: one 204, one 409.
* Two scales at once (PATCH node_count, POST actions/resize): one 202, one 409.
* A delete while the create runs cancels the create; the cluster ends deleted.
* A worker that dies mid-operation: another worker resumes at the recorded step and
  finishes once; finished steps are not run again (counted on the fake provider).
* A create past its deadline whose worker is gone is failed by the reaper ("Timed out").
* After each case every operation is terminal (done, failed or cancelled).

Requests go through the ASGI app from threads; the conductor runs in-process on the
fake provider (``FakeProvider(delay=...)`` injected through the ProviderPool).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from flotilla.conductor.providers import ProviderPool
from flotilla.conductor.runner import OpRunner
from flotilla.conductor.service import Conductor
from flotilla.db import models as m
from flotilla.db.models import utcnow
from flotilla.drivers.providers.fake import FakeProvider
from flotilla.services import operations
from flotilla.settings import ConductorSettings, Settings

Auth = Callable[..., dict[str, str]]
TERMINAL = {"done", "failed", "cancelled"}


class WorkerDied(BaseException):
    """Not an Exception: nothing in the runner catches it, like a process that is killed."""


class DyingProvider(FakeProvider):
    """A FakeProvider whose ``die_on``-th call of ``method`` raises WorkerDied (once)."""

    def __init__(self, method: str, die_on: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.die_method, self.die_on, self.seen, self.died = method, die_on, 0, False

    def _enter(self, method: str, target: str = "") -> None:
        with self._lock:
            if not self.died and method == self.die_method:
                self.seen += 1
                self.died = self.seen == self.die_on
                if self.died:
                    raise WorkerDied(f"worker killed in {method}({target})")
        super()._enter(method, target)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """The shared databases, with the fake provider and a quick conductor."""
    return Settings(
        data_dir=tmp_path, database_url=db_url, auth_strategy="token", enabled_providers=["fake"],
        default_provider="fake",
        conductor=ConductorSettings(enabled=False, poll_interval=0.05, lease_seconds=5, sync_interval=0.2),
    )  # fmt: skip


@pytest.fixture
def h(auth: Auth, register_image: Callable[..., Any]) -> dict[str, str]:
    register_image("flotilla-node", "debian")
    return auth("p1_member", "latest")


@pytest.fixture
def conductors(app: FastAPI, settings: Settings) -> Iterator[Callable[..., Conductor]]:
    """``start(provider)``: a started Conductor whose fake provider is ``provider``."""
    started: list[Conductor] = []

    def start(provider: FakeProvider | None = None, **overrides: Any) -> Conductor:
        s = settings.model_copy(update={"conductor": settings.conductor.model_copy(update=overrides)})
        pool = ProviderPool(s)
        pool._providers["fake"] = provider or FakeProvider()
        conductor = Conductor(s, app.state.runtime.db, providers=pool)
        app.state.runtime.on_enqueue.append(conductor.wake)
        conductor.start()
        started.append(conductor)
        return conductor

    yield start
    for conductor in started:
        if not conductor._stop.is_set():
            conductor.stop()


def create(api: TestClient, h: dict[str, str], name: str, node_count: int = 1) -> str:
    body = {"coe": "swarm", "image_id": "flotilla-node", "name": f"{name}-template"}
    r = api.post("/v1/clustertemplates", json=body, headers=h)
    assert r.status_code == 201, r.text
    body = {"cluster_template_id": r.json()["uuid"], "name": name, "node_count": node_count}
    r = api.post("/v1/clusters", json=body, headers=h)
    assert r.status_code == 202, r.text
    uuid: str = r.json()["uuid"]
    return uuid


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


def status(api: TestClient, h: dict[str, str], uuid: str) -> str | None:
    r = api.get(f"/v1/clusters/{uuid}", headers=h)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    out: str = r.json()["status"]
    return out


def ops(app: FastAPI, cluster: str | None = None) -> list[m.Operation]:
    with app.state.runtime.db.reader() as s:
        stmt = select(m.Operation).order_by(m.Operation.id)
        if cluster is not None:
            stmt = stmt.where(m.Operation.cluster_id == cluster)
        return list(s.scalars(stmt))


def all_terminal(app: FastAPI) -> None:
    wait_for("every operation to end", lambda: all(op.state in TERMINAL for op in ops(app)))


def at_once(*calls: Callable[[], httpx.Response]) -> list[int]:
    """Run the calls in threads released together; their status codes, sorted."""
    barrier = threading.Barrier(len(calls))
    results: list[int] = []

    def run(call: Callable[[], httpx.Response]) -> None:
        barrier.wait()
        results.append(call().status_code)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return sorted(results)


# ---- races between API requests ---------------------------------------------------------------


def test_two_deletes_at_once(app: FastAPI, api: TestClient, h: dict[str, str], conductors: Any) -> None:
    uuid = create(api, h, "twice")
    assert at_once(*[lambda: api.delete(f"/v1/clusters/{uuid}", headers=h)] * 2) == [204, 409]
    assert [op.kind for op in ops(app, uuid)] == ["create", "delete"]
    conductors()
    wait_for("the cluster to be deleted", lambda: status(api, h, uuid) is None)
    all_terminal(app)
    assert [(op.kind, op.state) for op in ops(app, uuid)] == [("create", "cancelled"), ("delete", "done")]


def test_two_scales_at_once(app: FastAPI, api: TestClient, h: dict[str, str], conductors: Any) -> None:
    uuid = create(api, h, "scaled", node_count=1)
    provider = FakeProvider()  # both conductors see the same nodes
    conductor = conductors(provider)
    wait_for("the create", lambda: status(api, h, uuid) == "CREATE_COMPLETE")
    conductor.stop()  # so the first scale is still running when the second arrives
    patch = [{"op": "replace", "path": "/node_count", "value": 2}]
    codes = at_once(
        lambda: api.patch(f"/v1/clusters/{uuid}", json=patch, headers=h),
        lambda: api.post(f"/v1/clusters/{uuid}/actions/resize", json={"node_count": 3}, headers=h),
    )
    assert codes == [202, 409]
    assert [op.kind for op in ops(app, uuid)] == ["create", "update"]
    conductors(provider)
    wait_for("the scale", lambda: status(api, h, uuid) == "UPDATE_COMPLETE")
    all_terminal(app)
    node_count = api.get(f"/v1/clusters/{uuid}", headers=h).json()["node_count"]
    assert node_count in (2, 3)  # whichever request won


def test_delete_during_create_cancels_it(
    app: FastAPI, api: TestClient, h: dict[str, str], conductors: Any
) -> None:
    provider = FakeProvider(delay=0.3)
    conductors(provider)
    uuid = create(api, h, "doomed", node_count=2)
    wait_for(
        "the create to start nodes",
        lambda: ("ensure_node", "doomed-" + uuid[:8] + "-master-0") in provider.calls,
    )
    assert status(api, h, uuid) == "CREATE_IN_PROGRESS"
    r = api.delete(f"/v1/clusters/{uuid}", headers=h)
    assert r.status_code == 204, r.text
    wait_for("the cluster to be deleted", lambda: status(api, h, uuid) is None, timeout=60)
    all_terminal(app)
    assert [(op.kind, op.state) for op in ops(app, uuid)] == [("create", "cancelled"), ("delete", "done")]
    assert provider.leaks(uuid) == []


# ---- a worker that dies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("die_in", "step"),
    [("ensure_node", "starting nodes"), ("exec", "waiting for Docker daemons")],
    ids=["during-starting-nodes", "after-starting-nodes"],
)
def test_dead_workers_operation_resumes_at_its_step(
    app: FastAPI, api: TestClient, h: dict[str, str], conductors: Any, die_in: str, step: str
) -> None:
    """Killed at the 2nd ensure_node (step re-run once) or at the first exec of the next step
    (no node started again)."""
    uuid = create(api, h, "phoenix", node_count=2)
    provider = DyingProvider(die_in, die_on=2 if die_in == "ensure_node" else 1)
    rt = app.state.runtime
    pool = ProviderPool(rt.settings)
    pool._providers["fake"] = provider
    owner = "dead-host:1/w0"
    with rt.db.session() as s:
        op = operations.claim(s, owner, 1.0, skip_locked=not rt.db.is_sqlite)
    assert op is not None and op.cluster_id == uuid
    runner = OpRunner(rt.db, rt.box, rt.coes, pool, owner, 1.0)
    with pytest.raises(WorkerDied):
        runner.run(op)
    (dead,) = ops(app, uuid)
    assert (dead.state, dead.lease_owner, dead.step_name, dead.attempts) == ("running", owner, step, 1)
    mark = len(provider.calls)  # the dead worker's threads have all returned
    done_before = Counter(t for meth, t in provider.calls if meth == "ensure_node")

    conductors(provider, lease_seconds=5)  # claims the op once the dead worker's lease ran out
    wait_for("the resumed create", lambda: status(api, h, uuid) == "CREATE_COMPLETE")
    all_terminal(app)
    (resumed,) = ops(app, uuid)
    assert (resumed.state, resumed.attempts) == ("done", 2)
    after = Counter(t for meth, t in provider.calls[mark:] if meth == "ensure_node")
    nodes = sorted(n for n in provider.nodes if uuid[:8] in n)
    assert len(nodes) == 3  # one master, two workers
    if step == "starting nodes":  # the interrupted step runs again, once, for every node
        assert after == Counter(nodes)
    else:  # a finished step is never run again
        assert after == Counter() and done_before == Counter(nodes)
    with rt.db.reader() as s:
        events = list(s.scalars(select(m.ClusterEvent.status).where(m.ClusterEvent.cluster_id == uuid)))
    assert events.count("CREATE_COMPLETE") == 1


def test_reaper_fails_a_create_past_its_deadline(
    app: FastAPI, api: TestClient, h: dict[str, str], conductors: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    uuid = create(api, h, "late")
    rt = app.state.runtime
    with rt.db.session() as s:  # a worker claimed it, then died
        op = operations.claim(s, "dead-host:2/w0", 60, skip_locked=not rt.db.is_sqlite)
        assert op is not None and op.cluster_id == uuid
    looked = threading.Semaphore(0)
    claimable = operations.claimable

    def counted_look(*args: Any, **kwargs: Any) -> bool:
        try:
            return claimable(*args, **kwargs)
        finally:
            looked.release()

    monkeypatch.setattr(operations, "claimable", counted_look)
    # Workers look once (a read), find the op leased, and sleep; only the reaper (every 0.2 s) acts.
    conductor = conductors(poll_interval=600)
    for _ in range(conductor.settings.conductor.workers):
        assert looked.acquire(timeout=30)
    with rt.db.session() as s:  # the lease ran out long ago, and so did the deadline
        past = utcnow() - timedelta(seconds=5)
        s.execute(update(m.Operation).where(m.Operation.id == op.id).values(lease_until=past, deadline=past))
    wait_for("the reaper", lambda: status(api, h, uuid) == "CREATE_FAILED")
    reason = api.get(f"/v1/clusters/{uuid}", headers=h).json()["status_reason"]
    assert reason.startswith("Timed out after"), reason
    all_terminal(app)
    assert [(o.kind, o.state, o.attempts) for o in ops(app, uuid)] == [("create", "failed", 1)]
