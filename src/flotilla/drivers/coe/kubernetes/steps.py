"""The steps of a Kubernetes cluster's operations. Each one is idempotent: a resumed
operation runs the interrupted step again and converges (ensure_node returns running
nodes, files are rewritten, objects are server-side applied)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from flotilla.domain import NetworkInfo, NetworkSpec, NodeInfo, NodeSpec
from flotilla.drivers.base import ClusterSpec, NodeGroupSpec, StepContext
from flotilla.drivers.coe import dockerhost
from flotilla.drivers.coe.parallel import run_parallel

from . import addons, apilb, bootstrap, service_lb
from .artifacts import NODE_DIR
from .bootstrap import CONTROL_PLANE_TAINT, NodePlan
from .kubeapi import Errors, KubeApi, node_name, node_ready
from .labels import FlannelSettings, flannel_settings

API_TIMEOUT = 120.0
NODES_TIMEOUT = 150.0
#: How long a scale-in waits for evicted pods to go before removing the nodes anyway.
DRAIN_GRACE = 45.0
LOG_DIR = "/var/log/flotilla"


def flannel(spec: ClusterSpec) -> FlannelSettings:
    return flannel_settings(spec.labels)


def _group(spec: ClusterSpec, name: str) -> NodeGroupSpec:
    return spec.master if name in spec.master.names else spec.worker


def node_spec(ctx: StepContext, net: NetworkInfo, name: str) -> NodeSpec:
    spec = ctx.spec
    group = _group(spec, name)
    return NodeSpec(
        cluster_uuid=spec.uuid, name=name, role=group.role, image_ref=group.image_ref, network=net.name,
        cpus=group.flavor.vcpus, memory_mb=group.flavor.ram_mb, command=bootstrap.command(),
        volume_gb=spec.docker_volume_size,
        env=dockerhost.proxy_env(spec), files=bootstrap.static_files(spec, flannel(spec)),
        ssh_public_key=spec.ssh_public_key, login_user=dockerhost.LOGIN_USER, volume_path="/var",
        flavor=group.flavor.name,
    )  # fmt: skip


_parallel = run_parallel


def ensure_network(ctx: StepContext) -> NetworkInfo:
    """The cluster network. host-gw sends pod packets unencapsulated from node to node (routes
    via the nodes' addresses), so its network forwards any address between the cluster's nodes
    (the provider's ``routed``); udp and vxlan carry pod traffic between node addresses."""
    spec = ctx.spec
    return ctx.provider.ensure_network(
        NetworkSpec(
            cluster_uuid=spec.uuid, name=dockerhost.network_name(spec), fixed_network=spec.fixed_network,
            dns_nameserver=spec.dns_nameserver, routed=flannel(spec).backend == "host-gw",
        )
    )  # fmt: skip


def network(ctx: StepContext) -> None:
    ensure_network(ctx)


def _nodes(ctx: StepContext) -> dict[str, NodeInfo]:
    return {n.name: n for n in ctx.provider.list_nodes(ctx.spec.uuid)}


def _plans(ctx: StepContext, infos: dict[str, NodeInfo], names: Sequence[str], role: str) -> list[NodePlan]:
    plans = []
    for name in names:
        info = infos.get(name)
        if info is None or not info.address:
            raise RuntimeError(f"node {name} has no address (state {info.state if info else 'missing'})")
        plans.append(NodePlan(name, role, info.address))
    return plans


def _check_binaries(ctx: StepContext, node: NodeInfo) -> str:
    r = ctx.provider.exec(node, ["cat", f"{NODE_DIR}/VERSIONS"], timeout=20)
    if not r.ok:
        raise RuntimeError(
            f"node image {ctx.spec.image_ref} has no Kubernetes binaries under {NODE_DIR}: build them "
            "(scripts/build-kube.sh) and rebuild the node image (flotilla image-build NAME --os-distro ...)"
        )
    return r.stdout


# The API endpoint and its load balancer live in apilb; these names stay for callers.
lb_enabled = apilb.enabled
lb_name = apilb.name


#: ``driver.IMAGE_LOAD_ARGV`` for a node still booting: wait (up to 60 s) for its containerd.
BOOT_IMAGE_LOAD_ARGV = [
    "sh",
    "-c",
    "i=0; until ctr version >/dev/null 2>&1 </dev/null; do i=$((i + 1)); "
    '[ "$i" -gt 1200 ] && { echo "containerd did not start" >&2; exit 1; }; sleep 0.05; done; '
    "exec ctr -n k8s.io images import --all-platforms -",
]


def endpoint(ctx: StepContext, infos: Mapping[str, NodeInfo] | None = None) -> str:
    """The API server URL users and nodes use: the load balancer's, else the first master's."""
    if infos is None:
        infos = {} if lb_enabled(ctx.spec) else _nodes(ctx)
    return apilb.endpoint(ctx, infos)


def start_nodes(ctx: StepContext, names: Sequence[str] | None = None) -> None:
    """Start ``names`` (default: every node, and the API load balancer of an HA cluster)
    and bootstrap them: once the masters have their addresses (and the balancer its own),
    every node gets its certificates and kubeconfigs naming them. All masters start at
    once: etcd's members wait for each other to form the cluster."""
    spec = ctx.spec
    net = ensure_network(ctx)
    creating = names is None
    wanted = list(names) if names is not None else [*spec.master.names, *spec.worker.names]
    fl = flannel(spec)
    with ThreadPoolExecutor(max_workers=8) as pool:
        balancer = pool.submit(apilb.ensure, ctx, net) if creating and lb_enabled(spec) else None
        started: dict[str, Future[NodeInfo]] = {
            n: pool.submit(ctx.provider.ensure_node, node_spec(ctx, net, n)) for n in wanted
        }
        infos = {n: started[n].result() for n in spec.master.names if n in started}
        if not creating:  # adding workers: the masters already run
            infos = {**_nodes(ctx), **infos}
        if balancer is not None:
            balancer.result()
        masters = _plans(ctx, infos, spec.master.names, "master")
        server = apilb.endpoint(ctx, infos)
        api_ips = [server.removeprefix("https://").rsplit(":", 1)[0]]
        check = pool.submit(_check_binaries, ctx, infos[spec.master.names[0]])
        done = 0

        def one(name: str) -> None:
            info = started[name].result()
            # Images loaded into the cluster (cluster-image-load) reach a node added later
            # before its kubelet starts, so pods pinned to it find them once it is Ready.
            ctx.load_images(info, BOOT_IMAGE_LOAD_ARGV)
            plan = NodePlan(name, _group(spec, name).role, info.address or "")
            ctx.provider.put_files(info, bootstrap.address_files(ctx, plan, masters, server, fl, api_ips))

        errors: list[str] = []
        futures = {pool.submit(one, n): n for n in wanted}
        for fut, name in futures.items():
            try:
                fut.result()
                done += 1
                ctx.progress(f"nodes bootstrapped ({done} of {len(wanted)})")
            except Exception as exc:
                errors.append(f"{name}: {exc}")
        check.result()
        if errors:
            raise RuntimeError("; ".join(errors))


def start_all(ctx: StepContext) -> None:
    start_nodes(ctx)


def api(ctx: StepContext) -> KubeApi:
    return KubeApi(endpoint(ctx), ctx.client_tls())


def _log_tail(ctx: StepContext, node: str, service: str, lines: int = 8) -> str:
    info = _nodes(ctx).get(node)
    if info is None:
        return "node missing"
    r = ctx.provider.exec(info, ["tail", "-n", str(lines), f"{LOG_DIR}/{service}.log"], timeout=10)
    return (r.stdout or r.stderr).strip()[-1200:]


def _wait_ready(ctx: StepContext, urls: Mapping[str, str], timeout: float) -> None:
    """Poll ``/readyz`` of each ``{master or "": url}`` until all answer ready."""
    started = time.monotonic()
    clients = {who: KubeApi(url, ctx.client_tls(), timeout=3.0) for who, url in urls.items()}
    try:
        while True:
            details = {who: k.readyz() for who, k in clients.items()}
            waiting = {who: d for who, (ok, d) in details.items() if not ok}
            if not waiting:
                return
            elapsed = time.monotonic() - started
            who, detail = next(iter(waiting.items()))
            master = who or ctx.spec.master.names[0]
            if elapsed > timeout:
                raise TimeoutError(
                    f"API server on {master} not ready within {timeout:.0f} s ({detail}); its log ends: "
                    f"{_log_tail(ctx, master, 'kube-apiserver')}"
                )
            ready = len(clients) - len(waiting)
            ctx.progress(
                f"API server starting, {elapsed:.0f} s ({ready} of {len(clients)} ready): {detail[:80]}"
            )
            time.sleep(0.1)
    finally:
        for k in clients.values():
            k.close()


def wait_api(ctx: StepContext, timeout: float = API_TIMEOUT) -> None:
    """Wait for the API through its endpoint (with several masters: the first API server
    behind the balancer; the others are waited for with the kubelets, see wait_masters)."""
    _wait_ready(ctx, {"": endpoint(ctx)}, timeout)


def wait_masters(ctx: StepContext, timeout: float = API_TIMEOUT) -> None:
    """With several masters, every master's own API server ready: each one is a working
    member behind the balancer before the operation ends."""
    if len(ctx.spec.master.names) > 1:
        _wait_ready(ctx, apilb.master_urls(ctx.spec, _nodes(ctx)), timeout)


def install_addons(ctx: StepContext) -> None:
    with api(ctx) as k:
        for obj in [*addons.flannel_rbac(), *addons.coredns()]:
            k.apply(obj)


def wait_nodes(ctx: StepContext, timeout: float = NODES_TIMEOUT) -> None:
    """Wait until every node is registered and Ready; mark masters; save the outputs."""
    spec = ctx.spec
    wanted = [*spec.master.names, *spec.worker.names]
    masters = set(spec.master.names)
    started = time.monotonic()
    labelled: set[str] = set()
    with api(ctx) as k:
        while True:
            try:
                nodes = {node_name(n): n for n in k.nodes()}
            except Errors as exc:
                nodes, last = {}, str(exc)
            for name in masters & set(nodes) - labelled:
                labels = (nodes[name].get("metadata") or {}).get("labels") or {}
                if CONTROL_PLANE_TAINT not in labels:
                    k.patch_node(name, {"metadata": {"labels": {CONTROL_PLANE_TAINT: ""}}})
                labelled.add(name)
            states = {n: node_ready(nodes[n]) if n in nodes else (False, "not registered") for n in wanted}
            ready = [n for n in wanted if states[n][0]]
            if len(ready) == len(wanted):
                break
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                bad = [n for n in wanted if not states[n][0]]
                last = "; ".join(f"{n}: {states[n][1]}" for n in bad)
                tail = _log_tail(ctx, bad[0], "kubelet", 4)
                raise TimeoutError(
                    f"nodes not Ready within {timeout:.0f} s: {last}; kubelet log of {bad[0]}: {tail}"
                )
            ctx.progress(f"waiting for kubelets ({len(ready)} of {len(wanted)} Ready)")
            time.sleep(0.1)
    wait_masters(ctx)
    infos = _nodes(ctx)
    any_node = nodes[wanted[0]]
    info = (any_node.get("status") or {}).get("nodeInfo") or {}
    master_addrs = [infos[n].address or "" for n in spec.master.names]
    ctx.save_outputs(
        api_address=apilb.user_address(ctx, infos),
        master_addresses=master_addrs, node_addresses=[infos[n].address or "" for n in spec.worker.names],
        coe_version=str(info.get("kubeletVersion") or "") or None,
        container_version=str(info.get("containerRuntimeVersion") or "") or None,
    )  # fmt: skip


def wait_nodes_after_update(ctx: StepContext) -> None:
    wait_nodes(ctx)


# ---- scale --------------------------------------------------------------------------------


def add_workers(ctx: StepContext) -> None:
    """Desired workers the provider does not run yet, or whose kubelet has not registered
    (bootstrapping again is harmless), so a retried or resumed scale converges."""
    spec = ctx.spec
    running = {n.name for n in ctx.provider.list_nodes(spec.uuid) if n.state == "running"}
    with api(ctx) as k:
        registered = {node_name(n) for n in k.nodes()}
    new = [n for n in spec.worker.names if n not in running or n not in registered]
    if new:
        start_nodes(ctx, new)


def _evictable(pod: Mapping[str, Any]) -> bool:
    """What ``kubectl drain`` evicts: not DaemonSet pods, not mirror pods, not finished ones."""
    meta = pod.get("metadata") or {}
    if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or []):
        return False
    if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def remove_workers(ctx: StepContext) -> None:
    """Drain (cordon, evict), then delete the Node objects and the nodes: every worker the
    provider runs or the API server lists that is not desired (a Node object whose node is
    already gone, after an interrupted scale-in or because its container died, is deleted
    too). A node whose kubelet is gone (NotReady, or its container not running) cannot
    drain: its pods are deleted at once instead of evicted, so their controllers recreate
    them on the nodes left without waiting for a kubelet that will not answer."""
    spec = ctx.spec
    desired = {*spec.master.names, *spec.worker.names}
    workers = {n.name: n for n in ctx.provider.list_nodes(spec.uuid) if n.role == "worker"}
    present = set(workers)
    surplus_nodes = sorted(present - desired)
    with api(ctx) as k:
        listed = {node_name(n): n for n in k.nodes()}
        stale = sorted(set(listed) - desired)
        if not surplus_nodes and not stale:
            return
        dead = [n for n in stale if workers.get(n) is None or workers[n].state != "running"
                or not node_ready(listed[n])[0]]  # fmt: skip
        draining = [n for n in stale if n in present and n not in dead]
        for name in [*draining, *(n for n in dead if n in present)]:
            k.patch_node(name, {"spec": {"unschedulable": True}})
        _drain(ctx, k, draining)
        for name in dead:
            for p in k.pods_on(name):
                meta = p["metadata"]
                k.delete_pod(meta["namespace"], meta["name"], grace_seconds=0)
        for name in stale:
            k.delete_node(name)
    _parallel(surplus_nodes, lambda n: ctx.provider.delete_node(spec.uuid, n), ctx, "removing workers")


def _drain(ctx: StepContext, k: KubeApi, draining: Sequence[str]) -> None:
    """Evict what ``kubectl drain`` evicts from ``draining`` and wait (up to DRAIN_GRACE)
    for the pods to go."""
    deadline = time.monotonic() + DRAIN_GRACE
    while draining:
        pods = [p for n in draining for p in k.pods_on(n) if _evictable(p)]
        if not pods:
            break
        for p in pods:
            meta = p["metadata"]
            if not meta.get("deletionTimestamp"):
                k.evict(meta["namespace"], meta["name"])
        if time.monotonic() > deadline:
            break
        ctx.progress(f"draining: {len(pods)} pod(s) still on {', '.join(draining)}")
        time.sleep(0.3)


def delete_everything(ctx: StepContext) -> None:
    """Remove the services' balancers and the API load balancer, then every node at once
    (each is independent: its container, volume, files), then the network, then sweep
    anything still labelled."""
    spec = ctx.spec
    # Services' balancers by name (on a cloud they are not nodes; locally the node removal
    # below would find them too).
    service_lb.delete_all(spec, ctx.provider)
    if lb_enabled(spec):
        apilb.delete(ctx)
    nodes = sorted(n.name for n in ctx.provider.list_nodes(spec.uuid))
    _parallel(nodes, lambda n: ctx.provider.delete_node(spec.uuid, n), ctx, "nodes removed")
    ctx.provider.delete_network(spec.uuid, dockerhost.network_name(spec))
    ctx.provider.sweep(spec.uuid)
