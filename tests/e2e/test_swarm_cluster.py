"""The guide's Swarm chapter on the real Docker Engine: swarm-mode clusters driven with
the plain docker CLI, scaling with drain, several managers behind haproxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flotilla_server import Server, docker

from flotilla.drivers.providers.local import Engine, leaks

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(engine: Engine, hostroot_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(data_dir=tmp_path_factory.mktemp("srv-swarm"), docker_host=engine.host).start()
    try:
        srv.fl("image-create", "node", "--os-distro", "debian", "--source", hostroot_image)
        srv.fl(
            "baymodel-create", "--name", "swarmbaymodel", "--image-id", "node", "--keypair-id", "testkey",
            "--external-network-id", "public", "--dns-nameserver", "8.8.8.8", "--flavor-id", "m1.small",
            "--docker-volume-size", "5", "--docker-storage-driver", "overlay2", "--coe", "swarm",
            "--master-lb-enabled",
        )  # fmt: skip
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module", autouse=True)
def keypair(server: Server) -> None:
    server.fl("keypair-create", "testkey")


def _states(env: dict[str, str]) -> dict[str, str]:
    out = docker(env, "node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_guide_swarm_flow(server: Server, engine: Engine, tmp_path: Path) -> None:
    server.fl("bay-create", "--name", "swarmbay", "--baymodel", "swarmbaymodel", "--master-count", "1",
              "--node-count", "2", "--wait")  # fmt: skip
    c = server.cluster("swarmbay")
    assert c["status"] == "CREATE_COMPLETE", c["status_reason"]
    assert c["api_address"].endswith(":2376") and len(c["node_addresses"]) == 2
    uuid = c["uuid"]
    env = server.docker_env("swarmbay", tmp_path / "certs")
    states = _states(env)
    assert len(states) == 3 and set(states.values()) == {"Ready"}, states

    # A service spreads over every node; an overlay network carries traffic between tasks.
    server.fl("cluster-image-load", "swarmbay", "busybox")
    docker(env, "network", "create", "-d", "overlay", "--attachable", "--subnet", "10.250.0.0/24", "appnet")
    docker(env, "service", "create", "-q", "--detach", "--name", "web", "--replicas", "6", "--network", "appnet",
           "--endpoint-mode", "dnsrr", "--stop-grace-period", "1s", "busybox:local",
           "httpd", "-f", "-p", "8080", "-h", "/etc")  # fmt: skip
    docker(env, "service", "create", "-q", "--name", "probe", "--network", "appnet", "--endpoint-mode", "dnsrr",
           "--stop-grace-period", "1s", "busybox:local", "sleep", "3600")  # fmt: skip
    nodes = _wait_running(env, "web", 6)
    assert len(set(nodes)) == 3, nodes
    probe = docker(
        env, "service", "ps", "probe", "--filter", "desired-state=running", "--format", "{{.Node}}"
    ).stdout.strip()
    # From the probe task (one node), fetch from every web task (all nodes) by task IP.
    probe_env = {**env}
    ips = docker(
        env, "run", "--rm", "--network", "appnet", "busybox:local", "nslookup", "tasks.web", check=False
    ).stdout
    task_ips = [
        line.split()[-1] for line in ips.splitlines() if line.startswith("Address") and "10.250." in line
    ]
    assert len(task_ips) == 6, ips
    for ip in task_ips:
        r = docker(probe_env, "run", "--rm", "--network", "appnet", "busybox:local", "sh", "-c",
                   f"echo -e 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 8080")  # fmt: skip
        assert "200 OK" in r.stdout, (ip, probe, r.stdout, r.stderr)

    # Scale to 3 workers, then back to 1 (draining first: tasks move before the node goes).
    server.fl("bay-update", "swarmbay", "replace", "node_count=3", "--wait")
    assert len(_states(env)) == 4
    server.fl("bay-update", "swarmbay", "replace", "node_count=1", "--wait")
    states = _states(env)
    assert len(states) == 2 and set(states.values()) == {"Ready"}, states
    nodes = _wait_running(env, "web", 6)
    assert set(nodes) <= set(states), nodes
    # Drained, not cut off: the tasks of the removed workers stopped before their nodes went
    # (a task on a node removed under it would be "Orphaned").
    history = docker(env, "service", "ps", "web", "--format", "{{.CurrentState}}").stdout
    assert "Shutdown" in history and "Orphaned" not in history, history

    server.fl("bay-delete", "swarmbay", "--wait")
    assert server.wait(uuid) == {}
    assert leaks(engine, uuid) == []


def _wait_running(env: dict[str, str], service: str, count: int, timeout: float = 90) -> list[str]:
    import time

    deadline = time.monotonic() + timeout
    while True:
        out = docker(env, "service", "ps", service, "--filter", "desired-state=running",
                     "--format", "{{.Node}} {{.CurrentState}}").stdout  # fmt: skip
        running = [line.split()[0] for line in out.splitlines() if " Running " in f" {line} "]
        if len(running) >= count:
            return running
        assert time.monotonic() < deadline, out
        time.sleep(0.5)


def test_three_managers_behind_the_load_balancer(server: Server, engine: Engine, tmp_path: Path) -> None:
    server.fl("bay-create", "--name", "habay", "--baymodel", "swarmbaymodel", "--master-count", "3",
              "--node-count", "1", "--wait")  # fmt: skip
    c = server.cluster("habay")
    assert c["status"] == "CREATE_COMPLETE", c["status_reason"]
    assert len(c["master_addresses"]) == 3
    lb_ip = c["api_address"].removeprefix("tcp://").split(":")[0]
    assert lb_ip not in c["master_addresses"]
    env = server.docker_env("habay", tmp_path / "certs")
    managers = [h for h, s in _states(env).items() if "master" in h]
    assert len(managers) == 3
    # Lose one manager: the API still answers through the same address.
    engine.run(["stop", "-t", "1", managers[1]])
    for _ in range(6):
        r = docker(env, "node", "ls", check=False)
        assert r.returncode == 0, r.stderr
    server.fl("bay-delete", "habay", "--wait")
    assert leaks(engine, c["uuid"]) == []


def test_registry_enabled(server: Server, engine: Engine, tmp_path: Path) -> None:
    """registry_enabled: a registry in the cluster, on a volume, reachable from every node."""
    server.fl("cluster-template-create", "regtpl", "--coe", "swarm", "--image", "node", "--external-network",
              "public", "--docker-storage-driver", "overlay2", "--registry-enabled")  # fmt: skip
    server.fl("cluster-create", "reg", "--cluster-template", "regtpl", "--node-count", "1", "--wait")
    c = server.cluster("reg")
    assert c["status"] == "CREATE_COMPLETE", c["status_reason"]
    registry = c["master_addresses"][0].rsplit(".", 1)[0] + ".6:5000"
    env = server.docker_env("reg", tmp_path / "certs")
    server.fl("cluster-image-load", "reg", "busybox")
    docker(env, "tag", "busybox:local", f"{registry}/busybox:shared")
    docker(env, "push", f"{registry}/busybox:shared")  # from the manager
    # A worker pulls it: a service pinned to the worker runs the pushed image.
    worker = next(h for h in _states(env) if "-node-" in h)
    docker(env, "service", "create", "-q", "--name", "pulled", "--constraint", f"node.hostname=={worker}",
           "--stop-grace-period", "1s", f"{registry}/busybox:shared", "sleep", "3600")  # fmt: skip
    assert _wait_running(env, "pulled", 1) == [worker]
    server.fl("cluster-delete", "reg", "--wait")
    assert leaks(engine, c["uuid"]) == []
