"""The ``swarm-mode`` COE, also serving the guide's ``swarm``.

Classic (standalone) Swarm is archived upstream, so ``swarm`` is realized with
swarm mode: managers and workers run Docker daemons joined into a swarm, and users
drive it with the plain ``docker`` CLI at ``api_address``. Differences from the
guide's classic Swarm: ``docker service create`` spreads work over the nodes, while
``docker run`` runs on the manager that answered; there is no etcd discovery.

With ``master_lb_enabled`` (required for ``master_count > 1``) the managers sit
behind haproxy (TCP, TLS passes through), whose address is ``api_address``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from flotilla.domain import Listener, LoadBalancerSpec, NetworkInfo, NodeInfo, NodeSpec
from flotilla.drivers.base import (
    CAP_CONTAINERS_AS_NODES,
    CAP_EXEC,
    CAP_IPVS,
    ClusterSpec,
    NodeGroupSpec,
    Observation,
    OpKind,
    Step,
    StepContext,
)
from flotilla.drivers.coe import dockerhost, native, swarm_channel
from flotilla.drivers.coe.docker import check_local_storage
from flotilla.drivers.coe.native import ClientConfigRequest, NativeConfig
from flotilla.drivers.coe.parallel import run_parallel
from flotilla.drivers.coe.swarm_channel import SwarmChannel
from flotilla.errors import Invalid

#: How long a scale-in waits for the drained nodes' tasks to stop (so swarm starts their
#: replacements elsewhere) before it removes the nodes anyway: a little over Docker's
#: default stop grace period (10 s, then SIGKILL) for tasks that ignore SIGTERM.
DRAIN_GRACE = 15.0


class SwarmModeCoe:
    name = "swarm_mode"
    coes = frozenset({"swarm", "swarm-mode"})
    requires = frozenset({CAP_CONTAINERS_AS_NODES, CAP_EXEC})
    #: The guide's table (flannel is accepted by the API; the local provider refuses it in
    #: validate_template, see there).
    network_drivers = ("docker", "flannel")
    volume_drivers = ("rexray",)
    ca_cert_types: Mapping[str, str] = {}

    def storage_summary(self, docker_storage_driver: str | None, volume_gb: int | None) -> str | None:
        return dockerhost.storage_summary(docker_storage_driver, volume_gb)

    def validate_template(self, fields: Mapping[str, object]) -> None:
        if fields.get("network_driver") not in (None, "docker"):
            raise Invalid(
                f"network_driver {fields.get('network_driver')} is not supported for swarm clusters on the local "
                "provider; supported: docker (overlay networks between nodes work out of the box)."
            )
        check_local_storage(fields)

    def plan(self, kind: OpKind, spec: ClusterSpec) -> list[Step]:
        if kind == "create":
            steps = [Step("creating network", _network)]
            if _lb_enabled(spec):  # first: the managers' certificates name its address
                steps.append(Step("creating the load balancer", _create_lb))
            steps += [
                Step("starting nodes", _start_all),
                Step("waiting for Docker daemons", _wait_all),
                Step("initializing the swarm", _init_swarm),
                Step("joining managers", _join_managers),
                Step("joining workers", _join_workers),
            ]
            if _lb_enabled(spec):
                steps.append(Step("adding the managers to the load balancer", _configure_lb))
            if spec.registry_enabled:
                steps.append(Step("starting the registry", _start_registry))
            steps.append(Step("waiting for nodes to be Ready", _wait_ready))
            return steps
        if kind == "update":
            # Reconcile: each step diffs the desired workers against what the provider (and
            # the swarm) report, so the plan is the same on resume and a retried failed scale
            # converges (a half-made node is finished or removed).
            return [
                Step("draining and removing surplus workers", _remove_workers),
                Step("starting and joining missing workers", _add_workers),
                Step("waiting for nodes to be Ready", _wait_ready_after_update),
            ]
        if kind == "delete":
            return [Step("removing nodes and network", _delete)]
        if kind == "rotate_ca":
            return [Step("installing new certificates", _reinstall_certs), Step("waiting for Docker daemons", _wait_all),
                    Step("waiting for nodes to be Ready", _wait_ready)]  # fmt: skip
        return []

    def observe(self, spec: ClusterSpec, nodes: Sequence[NodeInfo], ctx: StepContext) -> Observation:
        mine = {n.name: n for n in nodes if n.cluster_uuid == spec.uuid}
        reasons: dict[str, str] = {}
        for name in (*spec.master.names, *spec.worker.names):
            info = mine.get(name)
            if info is None:
                reasons[name] = "node missing"
            elif info.state != "running":
                reasons[name] = f"node {info.state}"
        manager = next((mine[n] for n in spec.master.names if n in mine and mine[n].state == "running"), None)
        if manager is None:
            reasons["api"] = "no manager running"
            return Observation("UNHEALTHY", reasons, tuple(k for k in reasons if k != "api"))
        states = swarm_channel.for_context(ctx).node_states(manager.name, manager.address or "")
        for name in (*spec.master.names, *spec.worker.names):
            st = states.get(name)
            if name not in reasons and st != "Ready":
                reasons[name] = f"swarm node {st or 'absent'}"
        if reasons:
            return Observation("UNHEALTHY", reasons, tuple(k for k in reasons if k != "api"))
        return Observation("HEALTHY", {"api": "ok", **dict.fromkeys(states, "Ready")})

    def image_load_argv(self) -> Sequence[str] | None:
        return ("docker", "load")

    def client_config(self, request: ClientConfigRequest) -> NativeConfig:
        return native.docker_config(request)


# ---- helpers ------------------------------------------------------------------------------


def _lb_enabled(spec: ClusterSpec) -> bool:
    return spec.master_lb_enabled or spec.master.node_count > 1


def _lb_name(spec: ClusterSpec) -> str:
    return dockerhost.cluster_prefix(spec) + "-lb-0"


_parallel = run_parallel


def _extra_ips(ctx: StepContext, net: NetworkInfo, role: str) -> list[str]:
    if role == "master" and _lb_enabled(ctx.spec):
        return [_lb_address(ctx)]
    return []


def _group(spec: ClusterSpec, name: str) -> NodeGroupSpec:
    return spec.master if name in spec.master.names else spec.worker


def _start(ctx: StepContext, net: NetworkInfo, name: str) -> NodeInfo:
    group = _group(ctx.spec, name)
    return dockerhost.start_node(ctx, net, group, name, extra_ips=_extra_ips(ctx, net, group.role))


def _network(ctx: StepContext) -> None:
    dockerhost.ensure_network(ctx)


def _start_all(ctx: StepContext) -> None:
    net = dockerhost.ensure_network(ctx)
    names = [*ctx.spec.master.names, *ctx.spec.worker.names]
    for name in names:  # in order, so the first manager gets the lowest address (.10 on the local provider)
        dockerhost.node_ip(ctx, net, _group(ctx.spec, name).role, name)
    _parallel(names, lambda n: _start(ctx, net, n), ctx, "starting nodes")


Addrs = dict[str, str]


def _ip(addrs: Addrs, name: str) -> str:
    """The provider's address of node ``name`` (from one ``list_nodes``)."""
    if name not in addrs:
        raise RuntimeError(f"node {name} is missing or has no address")
    return addrs[name]


def _wait_all(ctx: StepContext) -> None:
    addrs = dockerhost.addresses(ctx)
    names = [*ctx.spec.master.names, *ctx.spec.worker.names]
    _parallel(names, lambda n: dockerhost.wait_daemon(ctx, n, _ip(addrs, n)), ctx, "daemons answering")


def _leader(ctx: StepContext, addrs: Addrs) -> tuple[str, str]:
    """``(name, ip)`` of the first manager: it initializes the swarm and answers for it."""
    name = ctx.spec.master.names[0]
    return name, _ip(addrs, name)


def _init_swarm(ctx: StepContext) -> None:
    chan = swarm_channel.for_context(ctx)
    name, ip = _leader(ctx, dockerhost.addresses(ctx))
    if chan.swarm_state(name, ip) != "active":
        chan.init(name, ip)
    if CAP_IPVS not in ctx.provider.capabilities():
        # Without IPVS the routing mesh cannot work (ingress-mode publish fails, service VIPs
        # do not answer); removing it before anyone joins spares every node its ingress
        # sandbox (a network namespace, a vxlan, a bridge), and publishing in ingress mode
        # fails at once with a clear error instead. Users publish with mode=host.
        chan.remove_ingress(name, ip)


def _join(ctx: StepContext, chan: SwarmChannel, addrs: Addrs, name: str, token: str) -> None:
    ip = _ip(addrs, name)
    if chan.swarm_state(name, ip) != "active":
        chan.join(name, ip, token, _leader(ctx, addrs)[1])


def _join_managers(ctx: StepContext) -> None:
    others = list(ctx.spec.master.names[1:])
    if not others:
        return
    addrs = dockerhost.addresses(ctx)
    chan = swarm_channel.for_context(ctx)
    token = chan.join_token(*_leader(ctx, addrs), "manager")
    for name in others:  # one at a time: raft membership changes are serialized anyway
        _join(ctx, chan, addrs, name, token)
        ctx.progress(f"{name} joined")


def _join_workers(ctx: StepContext) -> None:
    names = list(ctx.spec.worker.names)
    if not names:
        return
    addrs = dockerhost.addresses(ctx)
    chan = swarm_channel.for_context(ctx)
    token = chan.join_token(*_leader(ctx, addrs), "worker")
    _parallel(names, lambda n: _join(ctx, chan, addrs, n, token), ctx, "workers joined")


def _wait_ready_after_update(ctx: StepContext) -> None:
    _wait_ready(ctx, read_version=False)  # a scale does not change the version: one call less


def _wait_ready(ctx: StepContext, timeout: float = 90.0, *, read_version: bool = True) -> None:
    spec = ctx.spec
    addrs = dockerhost.addresses(ctx)
    chan = swarm_channel.for_context(ctx)
    leader = _leader(ctx, addrs)
    wanted = [*spec.master.names, *spec.worker.names]
    deadline = time.monotonic() + timeout
    while True:
        states = chan.node_states(*leader)
        missing = [n for n in wanted if states.get(n) != "Ready"]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes not Ready within {timeout:.0f} s: {', '.join(missing)}")
        ctx.progress(f"{len(wanted) - len(missing)} of {len(wanted)} Ready")
        time.sleep(0.05)
    masters = [_ip(addrs, n) for n in spec.master.names]
    workers = [_ip(addrs, n) for n in spec.worker.names]
    address_ip = _lb_address(ctx) if _lb_enabled(spec) else masters[0]
    version = chan.version(*leader) if read_version else None
    ctx.save_outputs(
        api_address=dockerhost.api_address(spec, address_ip), master_addresses=masters, node_addresses=workers,
        coe_version=version, container_version=version,
    )  # fmt: skip


def _lb_spec(ctx: StepContext, net: NetworkInfo, members: Sequence[str]) -> LoadBalancerSpec:
    spec = ctx.spec
    port = dockerhost.port(spec)
    return LoadBalancerSpec(
        cluster_uuid=spec.uuid, name=_lb_name(spec), network=net.name,
        listeners=(Listener(port, tuple(members)),), image_ref=spec.master.image_ref,
    )  # fmt: skip


def _create_lb(ctx: StepContext) -> None:
    """The balancer with no members yet: its address goes into the managers' certificates."""
    net = dockerhost.ensure_network(ctx)
    if ctx.provider.find_load_balancer(ctx.spec.uuid, _lb_name(ctx.spec)) is None:
        ctx.provider.ensure_load_balancer(_lb_spec(ctx, net, ()))


def _lb_address(ctx: StepContext) -> str:
    lb = ctx.provider.find_load_balancer(ctx.spec.uuid, _lb_name(ctx.spec))
    if lb is None or not lb.address:
        raise RuntimeError(f"load balancer {_lb_name(ctx.spec)} is missing or has no address")
    return lb.address


def _configure_lb(ctx: StepContext) -> None:
    net = dockerhost.ensure_network(ctx)
    addrs = dockerhost.addresses(ctx)
    ctx.provider.ensure_load_balancer(_lb_spec(ctx, net, [_ip(addrs, n) for n in ctx.spec.master.names]))


def _delete(ctx: StepContext) -> None:
    ctx.provider.delete_load_balancer(ctx.spec.uuid, _lb_name(ctx.spec))
    dockerhost.delete_everything(ctx)


def _start_registry(ctx: StepContext) -> None:
    """A Docker registry (Debian's docker-registry) on its own node, storing images on the
    node's volume, serving TLS with a certificate of the cluster's CA; every daemon trusts
    it through /etc/docker/certs.d/<address>/ca.crt."""
    spec = ctx.spec
    net = dockerhost.ensure_network(ctx)
    name = dockerhost.registry_name(spec)
    ip = dockerhost.node_ip(ctx, net, "registry", name)
    tls = ctx.server_tls(name, [name, "localhost"], [ip])
    config = (
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/docker/registry\n"
        "  delete:\n    enabled: true\nhttp:\n  addr: :5000\n  tls:\n"
        "    certificate: /etc/docker/registry/cert.pem\n    key: /etc/docker/registry/key.pem\n"
    )
    ctx.provider.ensure_node(
        NodeSpec(
            cluster_uuid=spec.uuid, name=name, role="registry", image_ref=spec.master.image_ref, network=net.name,
            cpus=0.5, memory_mb=512, command=["docker-registry", "serve", "/etc/docker/registry/config.yml"],
            volume_gb=spec.docker_volume_size, ip=ip,
            files={"/etc/docker/registry/config.yml": config.encode(),
                   "/etc/docker/registry/cert.pem": tls.cert_pem.encode(),
                   "/etc/docker/registry/key.pem": tls.key_pem.encode()},
        )
    )  # fmt: skip


def _remove_workers(ctx: StepContext) -> None:
    """Workers that are not desired: drain and delete those the provider still has, and
    remove them, and any swarm member left without a node (a step interrupted between
    the delete and the ``node rm``), from the swarm."""
    spec = ctx.spec
    nodes = ctx.provider.list_nodes(spec.uuid)
    gone = [n.name for n in nodes if n.role == "worker" and n.name not in spec.worker.names]
    chan = swarm_channel.for_context(ctx)
    leader = _leader(ctx, {n.name: n.address for n in nodes if n.address})
    wanted = {*spec.master.names, *spec.worker.names}
    stale = [h for h in chan.node_states(*leader) if h not in wanted and h not in gone]
    if not gone and not stale:
        return
    if gone:
        chan.drain(*leader, gone)
        deadline = time.monotonic() + DRAIN_GRACE
        while time.monotonic() < deadline:
            live = chan.live_tasks(*leader, gone)
            if live == 0:
                break
            ctx.progress(f"draining: {live} task(s) still running" if live > 0 else "draining")
            time.sleep(0.2)
        _parallel(gone, lambda n: ctx.provider.delete_node(spec.uuid, n), ctx, "removing workers")
    chan.remove_nodes(*leader, [*gone, *stale])


def _add_workers(ctx: StepContext) -> None:
    """Scale-up as one pipeline per new worker (start, daemon up, join) while the join
    token is fetched: the step boundaries and state probes of the create path cost more
    than the work itself when only one node is added. Idempotent: a resumed step finds
    the node running and joined ("already part of a swarm" counts as done).

    Missing: a desired worker the provider does not run, or the swarm does not see Ready
    (a node a failed scale started but never joined)."""
    spec = ctx.spec
    nodes = {n.name: n for n in ctx.provider.list_nodes(spec.uuid)}
    chan = swarm_channel.for_context(ctx)
    leader = _leader(ctx, {n.name: n.address for n in nodes.values() if n.address})
    states = chan.node_states(*leader)
    new = [
        n
        for n in spec.worker.names
        if n not in nodes or nodes[n].state != "running" or states.get(n) != "Ready"
    ]
    if not new:
        return
    net = dockerhost.ensure_network(ctx)
    with ThreadPoolExecutor(max_workers=1) as pool:
        token = pool.submit(chan.join_token, *leader, "worker")

        def one(name: str) -> None:
            ip = _start(ctx, net, name).address
            if not ip:
                raise RuntimeError(f"node {name} has no address")
            dockerhost.wait_daemon(ctx, name, ip)
            chan.join(name, ip, token.result(), leader[1])

        _parallel(new, one, ctx, "workers joined")


def _reinstall_certs(ctx: StepContext) -> None:
    spec = ctx.spec
    net = dockerhost.ensure_network(ctx)
    addrs = dockerhost.addresses(ctx)

    def one(name: str) -> None:
        node = dockerhost.find_node(ctx, name)
        role = _group(spec, name).role
        ip = _ip(addrs, name)
        ctx.provider.put_files(node, dockerhost.tls_files(ctx, name, [ip, *_extra_ips(ctx, net, role)], net))
        ctx.provider.restart_node(node)

    _parallel([*spec.master.names, *spec.worker.names], one, ctx, "certificates installed")
