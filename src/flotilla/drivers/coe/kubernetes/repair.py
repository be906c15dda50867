"""Replacing a master of an HA cluster (auto-healing): the ``repair`` plan.

The operation's spec names the broken master in ``nodes_to_remove`` and already lists its
replacement (a new name) among ``spec.master.names``. Steps, each idempotent:

1. remove the broken master's etcd member (through a healthy master; etcd keeps quorum
   with the others), then its Node object (its pods deleted at once) and its node;
2. reserve the new master's address and add it as an etcd member (a new member is
   counted from here on, so this comes only after the removal);
3. put the balancer in front of the masters as they now are;
4. start the new master: its etcd joins with ``--initial-cluster-state=existing``;
5. wait for every master's API server and every node, and save the addresses.

Only with several masters behind the balancer: a single master's etcd holds the only
copy of the cluster's state, which a new master cannot bring back.
"""

from __future__ import annotations

from flotilla.domain import NodeInfo
from flotilla.drivers.base import ClusterSpec, Step, StepContext
from flotilla.drivers.coe import dockerhost

from . import apilb, bootstrap, etcd, steps
from .bootstrap import NodePlan
from .kubeapi import node_name

#: The smallest control plane a master can be replaced in (etcd keeps quorum without it).
MIN_MASTERS = 3


def plan(spec: ClusterSpec) -> list[Step]:
    if len(spec.master.names) < MIN_MASTERS or not apilb.enabled(spec) or not spec.nodes_to_remove:
        return []
    return [
        Step("removing the failed master from etcd", remove_old),
        Step("adding the new master to etcd", add_new),
        Step("updating the API load balancer", update_balancer),
        Step("starting the new master", start_new),
        Step("waiting for the API servers", steps.wait_api),
        Step("waiting for kubelets", steps.wait_nodes),
    ]


def _new_masters(spec: ClusterSpec, present: set[str]) -> list[str]:
    return [n for n in spec.master.names if n not in present]


def remove_old(ctx: StepContext) -> None:
    spec = ctx.spec
    old = [n for n in spec.nodes_to_remove if n not in spec.master.names]
    infos = steps._nodes(ctx)
    survivors = [infos[n] for n in spec.master.names if n in infos]
    node, members = etcd.healthy_member(ctx, survivors)
    for name in old:
        address = infos[name].address if name in infos else None
        for member in members:
            if member.name == name or (address and etcd.peer_url(address) in member.peer_urls):
                ctx.progress(f"removing etcd member {name}")
                etcd.remove(ctx, node, member)
    with steps.api(ctx) as k:
        listed = {node_name(n) for n in k.nodes()}
        for name in old:
            if name in listed:
                for p in k.pods_on(name):
                    meta = p["metadata"]
                    k.delete_pod(meta["namespace"], meta["name"], grace_seconds=0)
                k.delete_node(name)
    for name in old:
        ctx.provider.delete_node(spec.uuid, name)


def add_new(ctx: StepContext) -> None:
    spec = ctx.spec
    net = dockerhost.ensure_network(ctx)
    infos = steps._nodes(ctx)
    node, members = etcd.healthy_member(ctx, [infos[n] for n in spec.master.names if n in infos])
    known = {u for m in members for u in m.peer_urls}
    for name in _new_masters(spec, set(infos)):
        address = dockerhost.node_ip(ctx, net, "master", name)
        if etcd.peer_url(address) not in known:
            ctx.progress(f"adding etcd member {name} ({address})")
            etcd.add(ctx, node, address)


def update_balancer(ctx: StepContext) -> None:
    apilb.ensure(ctx, dockerhost.ensure_network(ctx))


def start_new(ctx: StepContext) -> None:
    spec = ctx.spec
    net = dockerhost.ensure_network(ctx)
    fl = steps.flannel(spec)
    infos = steps._nodes(ctx)
    booted = {n for n in spec.master.names if n in infos and _booted(ctx, infos[n])}
    for name in _new_masters(spec, booted):
        info = ctx.provider.ensure_node(steps.node_spec(ctx, net, name))
        infos = {**steps._nodes(ctx), name: info}
        masters = steps._plans(ctx, infos, spec.master.names, "master")
        server = steps.endpoint(ctx, infos)
        api_ips = [server.removeprefix("https://").rsplit(":", 1)[0]]
        plan = NodePlan(name, "master", info.address or "", joining=True)
        ctx.provider.put_files(info, bootstrap.address_files(ctx, plan, masters, server, fl, api_ips))


def _booted(ctx: StepContext, info: NodeInfo) -> bool:
    """The node got its bootstrap files (a resumed step does not write them again, which
    would hand etcd a second set of certificates mid-join)."""
    if info.state != "running" or not info.address:
        return False
    return ctx.provider.exec(info, ["test", "-f", bootstrap.MARKER], timeout=10).ok
