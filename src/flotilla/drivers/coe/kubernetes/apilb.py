"""Where a Kubernetes cluster's API is.

With ``master_lb_enabled`` (required for several masters) every master's kube-apiserver
sits behind the provider's load balancer (:meth:`Provider.ensure_load_balancer`: haproxy
on the local provider, Octavia on a cloud) on :6443 (and :8080 for ``tls_disabled``);
its address is ``api_address``, is in every apiserver certificate and is the server of
every node's kubeconfig, so losing a master costs nothing but its share of the work.
Without the balancer the first master's address is the API endpoint.

The balancer is made with its members at once: the masters' addresses are reserved
first (``reserve_address``), so it can start alongside the nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from flotilla.domain import Listener, LoadBalancerInfo, LoadBalancerSpec, NetworkInfo, NodeInfo
from flotilla.drivers.base import ClusterSpec, StepContext
from flotilla.drivers.coe import dockerhost

from .bootstrap import API_PORT, INSECURE_PORT


def enabled(spec: ClusterSpec) -> bool:
    return spec.master_lb_enabled or spec.master.node_count > 1


def name(spec: ClusterSpec) -> str:
    return dockerhost.cluster_prefix(spec) + "-lb-0"


def ports(spec: ClusterSpec) -> tuple[int, ...]:
    return (API_PORT, INSECURE_PORT) if spec.tls_disabled else (API_PORT,)


def lb_spec(spec: ClusterSpec, network: str, members: Sequence[str]) -> LoadBalancerSpec:
    return LoadBalancerSpec(
        cluster_uuid=spec.uuid, name=name(spec), network=network,
        listeners=tuple(Listener(port, tuple(members)) for port in ports(spec)),
        image_ref=spec.master.image_ref,
    )  # fmt: skip


def ensure(ctx: StepContext, net: NetworkInfo) -> LoadBalancerInfo:
    """The balancer in front of every desired master (their addresses reserved now if the
    masters do not exist yet). Idempotent: the same spec again changes nothing."""
    members = [dockerhost.node_ip(ctx, net, "master", n) for n in ctx.spec.master.names]
    return ctx.provider.ensure_load_balancer(lb_spec(ctx.spec, net.name, members))


def address(ctx: StepContext) -> str:
    lb = ctx.provider.find_load_balancer(ctx.spec.uuid, name(ctx.spec))
    if lb is None or not lb.address:
        raise RuntimeError(f"load balancer {name(ctx.spec)} is missing or has no address")
    return lb.address


def host(ctx: StepContext, infos: Mapping[str, NodeInfo]) -> str:
    """The API's address: the balancer's, else the first master's."""
    if enabled(ctx.spec):
        return address(ctx)
    first = ctx.spec.master.names[0]
    info = infos.get(first)
    if info is None or not info.address:
        raise RuntimeError(f"node {first} has no address (state {info.state if info else 'missing'})")
    return info.address


def endpoint(ctx: StepContext, infos: Mapping[str, NodeInfo]) -> str:
    """The API server URL users and nodes use."""
    return f"https://{host(ctx, infos)}:{API_PORT}"


def user_address(ctx: StepContext, infos: Mapping[str, NodeInfo]) -> str:
    """``api_address``: the TLS endpoint, or the insecure port of a ``tls_disabled`` cluster."""
    if ctx.spec.tls_disabled:
        return f"http://{host(ctx, infos)}:{INSECURE_PORT}"
    return endpoint(ctx, infos)


def master_urls(spec: ClusterSpec, infos: Mapping[str, NodeInfo]) -> dict[str, str]:
    """Each running master's own API server URL (its certificate names its address)."""
    out: dict[str, str] = {}
    for master in spec.master.names:
        info = infos.get(master)
        if info is not None and info.address and info.state == "running":
            out[master] = f"https://{info.address}:{API_PORT}"
    return out


def delete(ctx: StepContext) -> None:
    ctx.provider.delete_load_balancer(ctx.spec.uuid, name(ctx.spec))
