"""Health and self-healing on real swarm clusters: a killed worker is reported
UNHEALTHY within the interval, replaced when auto-healing is on, left alone (and
reported) when it is off."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flotilla_server import Server

from flotilla.drivers.providers.local import Engine, leaks

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(engine: Engine, hostroot_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(data_dir=tmp_path_factory.mktemp("srv-health"), docker_host=engine.host)
    srv.extra_env.update(FLOTILLA_CONDUCTOR__HEALTH_INTERVAL="1", FLOTILLA_CONDUCTOR__HEALTH_GRACE="2")
    srv.start()
    try:
        srv.fl("image-create", "node", "--os-distro", "debian", "--source", hostroot_image)
        srv.fl("cluster-template-create", "ht", "--coe", "swarm", "--image", "node", "--external-network",
               "public", "--docker-storage-driver", "overlay2")  # fmt: skip
        yield srv
    finally:
        srv.stop()


def _until(srv: Server, ident: str, pred: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        c = srv.cluster(ident)
        if pred(c):
            return c
        assert time.monotonic() < deadline, c
        time.sleep(0.3)


@pytest.mark.parametrize("healing", [False, True])
def test_killed_worker(server: Server, engine: Engine, healing: bool) -> None:
    name = f"h{int(healing)}"
    labels = ["--labels", f"auto_healing_enabled={str(healing).lower()}"]
    server.fl("cluster-create", name, "--cluster-template", "ht", "--node-count", "2", *labels, "--wait")
    c = _until(server, name, lambda c: c["health_status"] == "HEALTHY")
    victim = f"{name}-{c['uuid'][:8]}-node-0"
    engine.run(["rm", "-f", victim])
    c = _until(
        server, name, lambda c: c["health_status"] == "UNHEALTHY" or c["status"] == "UPDATE_IN_PROGRESS"
    )
    if not healing:
        assert victim in c["health_status_reason"], c
        time.sleep(5)  # well past the grace period: nothing is touched
        c = server.cluster(name)
        assert c["status"] == "CREATE_COMPLETE" and c["health_status"] == "UNHEALTHY"
    else:
        c = _until(
            server, name, lambda c: c["status"] == "UPDATE_COMPLETE" and c["health_status"] == "HEALTHY", 120
        )
        nodes = engine.run(
            ["ps", "--filter", f"label=flotilla.cluster={c['uuid']}", "--format", "{{.Names}}"]
        ).stdout
        assert victim not in nodes.split() and len(nodes.split()) == 3, nodes
        events = server.api("GET", f"/v1/clusters/{name}/events").json()["events"]
        assert any(
            "auto-healing" in (e["reason"] or "") or e["status"] == "UPDATE_IN_PROGRESS" for e in events
        )
    server.fl("cluster-delete", name, "--wait")
    assert leaks(engine, c["uuid"]) == []


def test_full_docker_volume_is_reported(server: Server, engine: Engine) -> None:
    """A node whose /var/lib/docker volume is full makes the cluster UNHEALTHY, with the
    reason; freeing space makes it HEALTHY again (issue 14, item 3)."""
    server.fl("cluster-template-create", "vt", "--coe", "docker", "--image", "node", "--external-network",
              "public", "--docker-storage-driver", "overlay2", "--docker-volume-size", "1")  # fmt: skip
    server.fl("cluster-create", "v1", "--cluster-template", "vt", "--wait")
    c = _until(server, "v1", lambda c: c["health_status"] == "HEALTHY")
    node = f"v1-{c['uuid'][:8]}-master-0"
    fill = (
        "fallocate -l $(( $(df --output=avail -k /var/lib/docker | tail -1) - 8192 ))K /var/lib/docker/fill"
    )
    engine.run(["exec", node, "sh", "-c", fill])
    c = _until(server, "v1", lambda c: c["health_status"] == "UNHEALTHY")
    reason = c["health_status_reason"].get(node, "")
    assert reason.startswith("docker volume full:") and "MiB free of" in reason, c["health_status_reason"]
    assert c["status"] == "CREATE_COMPLETE"  # reported, not "healed" (that would drop the node's data)
    engine.run(["exec", node, "rm", "/var/lib/docker/fill"])
    c = _until(server, "v1", lambda c: c["health_status"] == "HEALTHY")
    server.fl("cluster-delete", "v1", "--wait")
    assert leaks(engine, c["uuid"]) == []
