"""Faults on real clusters: the server SIGKILLed at random points of create, scale and
delete; a delete after the nodes and network were removed by hand; a worker killed by
hand while auto-healing is off.

The kill trials are seeded (``random.Random(SEED)``) and run one after the other on one
``flotilla serve`` (restarted on the same data dir after each kill, with a short lease so
the operation is resumed within seconds). Each kill lands at a uniformly random moment
between the request and about the operation's typical duration, measured at the start
of the module by running each operation once without a kill. After every trial: the
right terminal status, exactly the expected node containers, exactly the expected swarm
members (``docker node ls`` through the ``cluster-config`` environment), and nothing
left behind after a delete. A table of the trials is logged (``-o log_cli=true`` shows it).

Kubernetes clusters take longer to create, so they are killed at chosen steps instead
(``KUBE_KILLS``): after each resumed operation, exactly the expected node containers and
exactly the expected Node objects, all Ready.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flotilla_server import Server, docker
from test_kubernetes_cluster import Kubectl, _node_states, kubeconfig

import kube_cache
from flotilla.drivers.providers.local import Engine, leaks

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

SEED = 20261122
#: Seconds a dead server's lease keeps its operation from being resumed.
LEASE_SECONDS = "3"
#: Three swarm chains (create, scale 1->2, scale 2->1, delete) and four docker chains
#: (create, delete): 20 kill trials.
SWARM_CHAINS = 3
DOCKER_CHAINS = 4


class FaultServer(Server):
    """``Server`` with a shorter lease (its helper sets 4 s)."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env["FLOTILLA_CONDUCTOR__LEASE_SECONDS"] = LEASE_SECONDS
        return env


@dataclass
class Trial:
    op: str  # create | scale-up | scale-down | delete
    coe: str  # swarm | docker | kubernetes
    delay: float = 0.0
    at_kill: str = ""  # status and status_reason just before the kill
    restart: float = 0.0  # seconds from the kill until the new server answers
    recovered: float = 0.0  # seconds from the kill to the terminal status
    outcome: str = ""


@dataclass
class Chain:
    """One cluster through its operations; ``env`` is its ``cluster-config`` environment."""

    coe: str
    name: str
    uuid: str = ""
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def server(engine: Engine, hostroot_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = FaultServer(data_dir=tmp_path_factory.mktemp("srv-faults"), docker_host=engine.host)
    # Health checks are not under test in the kill trials: keep them out of the way.
    srv.extra_env["FLOTILLA_CONDUCTOR__HEALTH_INTERVAL"] = "300"
    srv.start()
    try:
        srv.fl("image-create", "node", "--os-distro", "debian", "--source", hostroot_image)
        for coe in ("swarm", "docker"):
            srv.fl("cluster-template-create", f"ft-{coe}", "--coe", coe, "--image", "node",
                   "--external-network", "public", "--flavor", "m1.small",
                   "--docker-storage-driver", "overlay2")  # fmt: skip
        yield srv
    finally:
        srv.stop()


# --------------------------------------------------------------------------- helpers


def _containers(engine: Engine, uuid: str) -> list[str]:
    out = engine.run(
        ["ps", "-a", "--filter", f"label=flotilla.cluster={uuid}", "--format", "{{.Names}} {{.State}}"]
    ).stdout
    return sorted(out.splitlines())


def _swarm_members(env: dict[str, str]) -> list[str]:
    out = docker(env, "node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout
    return sorted(out.splitlines())


def _request(srv: Server, chain: Chain, op: str) -> Callable[[], None]:
    """The API call that starts ``op`` on the chain's cluster."""

    def create() -> None:
        body: dict[str, Any] = {"name": chain.name, "cluster_template_id": f"ft-{chain.coe}", "node_count": 1}
        r = srv.api("POST", "/v1/clusters", json=body)
        assert r.status_code == 202, r.text
        chain.uuid = r.json()["uuid"]
        chain.workers = 1

    def scale(count: int) -> Callable[[], None]:
        def run() -> None:
            patch = [{"op": "replace", "path": "/node_count", "value": count}]
            r = srv.api("PATCH", f"/v1/clusters/{chain.uuid}", json=patch)
            assert r.status_code == 202, r.text
            chain.workers = count

        return run

    def delete() -> None:
        r = srv.api("DELETE", f"/v1/clusters/{chain.uuid}")
        assert r.status_code == 204, r.text

    return {"create": create, "scale-up": scale(2), "scale-down": scale(1), "delete": delete}[op]


def _expected_status(op: str) -> str:
    return {"create": "CREATE_COMPLETE", "delete": "gone"}.get(op, "UPDATE_COMPLETE")


def _check(srv: Server, engine: Engine, chain: Chain, op: str, cluster: dict[str, Any], tmp: Path) -> None:
    """The cluster is where ``op`` should have left it, with no node too many or too few."""
    status = cluster.get("status", "gone")
    context = f"{chain.coe} {op} on {chain.uuid}: {cluster.get('status_reason')}"
    assert status == _expected_status(op), context
    if op == "delete":
        assert leaks(engine, chain.uuid) == [], context
        return
    prefix = f"{chain.name}-{chain.uuid[:8]}"
    if chain.coe == "docker":
        expected = [f"{prefix}-master-0"]
    else:
        expected = [f"{prefix}-master-0", *(f"{prefix}-node-{i}" for i in range(chain.workers))]
        if op == "scale-down":  # the newest worker goes
            expected = [f"{prefix}-master-0", f"{prefix}-node-0"]
    assert cluster["master_count"] == 1 and cluster["node_count"] == chain.workers, cluster
    assert _containers(engine, chain.uuid) == sorted(f"{n} running" for n in expected), context
    if chain.coe == "swarm":
        if not chain.env:
            chain.env = srv.docker_env(chain.uuid, tmp / chain.name)
        assert _swarm_members(chain.env) == sorted(f"{n} Ready" for n in expected), context


def _run(srv: Server, chain: Chain, op: str, timeout: float = 240) -> tuple[dict[str, Any], float]:
    """Start ``op`` and wait for its end, without a kill; returns the cluster and the seconds."""
    started = time.monotonic()
    _request(srv, chain, op)()
    cluster = srv.wait(chain.uuid, timeout=timeout)
    return cluster, time.monotonic() - started


def _kill_during(srv: Server, chain: Chain, trial: Trial) -> dict[str, Any]:
    started = time.monotonic()
    _request(srv, chain, trial.op)()
    time.sleep(max(0.0, started + trial.delay - time.monotonic()))
    r = srv.api("GET", f"/v1/clusters/{chain.uuid}")
    trial.at_kill = "gone" if r.status_code == 404 else f"{r.json()['status']} ({r.json()['status_reason']})"
    srv.kill()
    killed = time.monotonic()
    srv.start()
    trial.restart = time.monotonic() - killed
    try:
        cluster = srv.wait(chain.uuid, timeout=240)
    except AssertionError as exc:
        raise AssertionError(f"{trial}: never terminal: {exc}\n{srv.log()[-4000:]}") from None
    trial.recovered = time.monotonic() - killed
    trial.outcome = cluster.get("status", "gone")
    return cluster


# --------------------------------------------------------------------------- tests


def test_sigkill_at_random_points_of_create_scale_and_delete(
    server: Server, engine: Engine, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    swarm_ops = ["create", "scale-up", "scale-down", "delete"]
    docker_ops = ["create", "delete"]

    # Measure first: each operation once, without a kill (also a baseline check).
    typical: dict[tuple[str, str], float] = {}
    for coe, ops in (("swarm", swarm_ops), ("docker", docker_ops)):
        chain = Chain(coe, f"cal-{coe}")
        for op in ops:
            cluster, secs = _run(server, chain, op)
            _check(server, engine, chain, op, cluster, tmp_path)
            typical[(coe, op)] = secs
    log.info("typical durations: %s", {f"{c} {o}": round(s, 1) for (c, o), s in typical.items()})

    chains = [Chain("swarm", f"ks{i}") for i in range(SWARM_CHAINS)]
    chains += [Chain("docker", f"kd{i}") for i in range(DOCKER_CHAINS)]
    rng.shuffle(chains)  # mix the COEs
    trials: list[Trial] = []
    try:
        for chain in chains:
            for op in swarm_ops if chain.coe == "swarm" else docker_ops:
                trial = Trial(op, chain.coe, delay=rng.uniform(0, typical[(chain.coe, op)]))
                trials.append(trial)
                cluster = _kill_during(server, chain, trial)
                _check(server, engine, chain, op, cluster, tmp_path)
    finally:
        log.info("kill trials (seed %d, lease %s s):", SEED, LEASE_SECONDS)
        for i, t in enumerate(trials, 1):
            log.info(
                "%2d %-6s %-10s kill at %5.2f s during %-56.56s -> %s %.1f s after the kill (restart %.1f s)",
                i, t.coe, t.op, t.delay, t.at_kill, t.outcome or "?", t.recovered, t.restart,
            )  # fmt: skip
    assert len(trials) == 4 * SWARM_CHAINS + 2 * DOCKER_CHAINS >= 20


#: Kubernetes kill points, per cluster: (operation, the step the server is SIGKILLed in; None:
#: no kill). Chosen where a resumed step could duplicate or lose nodes: while the node
#: containers start and get their certificates, while the kubelets register, while a scale
#: starts its new worker, and during the delete. Two clusters: the create takes ~30 s here.
KUBE_KILLS = {
    "kn": [("create", "starting nodes"), ("scale-up", "starting new workers"), ("delete", "removing nodes")],
    "kk": [("create", "waiting for kubelets"), ("delete", None)],
}


@pytest.fixture(scope="module")
def kube_template(server: Server) -> str:
    kube_cache.require_real_build()
    server.fl("image-build", "kube", "--os-distro", "fedora-atomic", "--tag", "flotilla-node:kube",
              "--kubernetes", "yes")  # fmt: skip
    server.fl("cluster-template-create", "ft-kubernetes", "--coe", "kubernetes", "--image", "kube",
              "--external-network", "public", "--flavor", "m1.small", "--master-flavor", "m1.medium",
              "--network-driver", "flannel", "--docker-storage-driver", "overlay2")  # fmt: skip
    return "ft-kubernetes"


def _kill_in_step(srv: Server, chain: Chain, op: str, step: str | None) -> dict[str, Any]:
    """Start ``op``; SIGKILL the server once the cluster's status_reason names ``step`` (a
    delete: at once, its only step); restart it and wait for the operation's end."""
    _request(srv, chain, op)()
    deadline = time.monotonic() + 180
    while step is not None and op != "delete":
        c = srv.cluster(chain.uuid)
        if step in (c["status_reason"] or ""):
            break
        assert c["status"].endswith("IN_PROGRESS") and time.monotonic() < deadline, (step, c["status_reason"])
        time.sleep(0.05)
    if step is not None:
        srv.kill()
        srv.start()
    return srv.wait(chain.uuid, timeout=300)


@pytest.mark.kube  # runs after the other tests of the session (and the background build)
@pytest.mark.parametrize("cluster", sorted(KUBE_KILLS))
def test_sigkill_during_kubernetes_steps(
    server: Server, engine: Engine, kube_template: str, tmp_path: Path, cluster: str
) -> None:
    """After each resumed operation: exactly the expected node containers, and exactly the
    expected Node objects, all Ready (no duplicate, no stale registration); nothing left after
    the delete."""
    chain = Chain("kubernetes", cluster)
    for op, step in KUBE_KILLS[cluster]:
        c = _kill_in_step(server, chain, op, step)
        context = f"kubernetes {op} killed in {step!r}: {c.get('status_reason')}"
        assert c.get("status", "gone") == _expected_status(op), context
        if op == "delete":
            assert leaks(engine, chain.uuid) == [], context
            continue
        prefix = f"{chain.name}-{chain.uuid[:8]}"
        expected = [f"{prefix}-master-0", *(f"{prefix}-node-{i}" for i in range(chain.workers))]
        assert _containers(engine, chain.uuid) == sorted(f"{n} running" for n in expected), context
        k = Kubectl(kubeconfig(server, c, tmp_path / f"{cluster}-{op}"))
        assert _node_states(k) == dict.fromkeys(expected, "Ready"), context


def test_delete_after_nodes_and_network_were_removed_by_hand(server: Server, engine: Engine) -> None:
    chain = Chain("docker", "gone-by-hand")
    cluster, _ = _run(server, chain, "create")
    assert cluster["status"] == "CREATE_COMPLETE", cluster["status_reason"]
    names = [line.split()[0] for line in _containers(engine, chain.uuid)]
    networks = engine.run(
        ["network", "ls", "--filter", f"label=flotilla.cluster={chain.uuid}", "--format", "{{.Name}}"]
    ).stdout.split()
    assert names and networks
    engine.run(["rm", "-f", *names])
    engine.run(["network", "rm", *networks])
    cluster, _ = _run(server, chain, "delete", timeout=120)
    assert cluster == {}, cluster
    assert leaks(engine, chain.uuid) == []


def test_worker_killed_by_hand_is_reported_unhealthy(server: Server, engine: Engine, tmp_path: Path) -> None:
    """The container is killed (it stays, exited), not removed as in test_health.py."""
    server.stop()
    server.extra_env["FLOTILLA_CONDUCTOR__HEALTH_INTERVAL"] = "1"
    server.start()
    chain = Chain("swarm", "sick")
    cluster, _ = _run(server, chain, "create")
    _check(server, engine, chain, "create", cluster, tmp_path)
    cluster = _until(server, chain.uuid, lambda c: c["health_status"] == "HEALTHY")
    victim = f"{chain.name}-{chain.uuid[:8]}-node-0"
    engine.run(["kill", victim])
    cluster = _until(server, chain.uuid, lambda c: c["health_status"] == "UNHEALTHY")
    reason = cluster["health_status_reason"]
    assert reason.get(victim) in ("node stopped", "node exited"), reason
    time.sleep(3)  # several health cycles: with auto-healing off nothing is replaced
    cluster = server.cluster(chain.uuid)
    assert cluster["status"] == "CREATE_COMPLETE" and cluster["health_status"] == "UNHEALTHY", cluster
    assert f"{victim} exited" in _containers(engine, chain.uuid)
    _, _ = _run(server, chain, "delete")
    assert leaks(engine, chain.uuid) == []


def _until(
    srv: Server, ident: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        c = srv.cluster(ident)
        if pred(c):
            return c
        assert time.monotonic() < deadline, c
        time.sleep(0.3)
