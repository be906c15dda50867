"""Health of a Kubernetes cluster: the provider's view of the node containers, the API
server's ``/readyz`` through the cluster's endpoint, each master's own API server (so a
cluster whose balancer hides a dead master still says which one), and every node's Ready
condition, with a reason per node."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from flotilla.domain import NodeInfo
from flotilla.drivers.base import ClusterSpec, Observation, StepContext

from . import apilb
from .kubeapi import ApiFailed, Errors, KubeApi, node_name, node_ready

#: Seconds one health probe may take (the monitor observes every cluster in turn).
PROBE_TIMEOUT = 3.0


def _unhealthy(reasons: dict[str, str]) -> Observation:
    return Observation("UNHEALTHY", reasons, tuple(k for k in reasons if k != "api"))


def _masters_ready(spec: ClusterSpec, mine: dict[str, NodeInfo], ctx: StepContext) -> dict[str, str]:
    """``{master: why}`` for each running master whose own API server is not ready."""
    urls = apilb.master_urls(spec, mine)

    def probe(url: str) -> tuple[bool, str]:
        with KubeApi(url, ctx.client_tls(), timeout=PROBE_TIMEOUT) as k:
            return k.readyz()

    with ThreadPoolExecutor(max_workers=max(1, len(urls))) as pool:
        results = dict(zip(urls, pool.map(probe, urls.values()), strict=True))
    return {m: f"API server not ready: {detail}" for m, (ok, detail) in results.items() if not ok}


def observe(spec: ClusterSpec, nodes: Sequence[NodeInfo], ctx: StepContext) -> Observation:
    mine = {n.name: n for n in nodes if n.cluster_uuid == spec.uuid}
    wanted = [*spec.master.names, *spec.worker.names]
    reasons: dict[str, str] = {}
    for name in wanted:
        info = mine.get(name)
        if info is None:
            reasons[name] = "node missing"
        elif info.state != "running":
            reasons[name] = f"node {info.state}"
    try:
        server = apilb.endpoint(ctx, mine)
    except RuntimeError as exc:
        reasons["api"] = f"no API endpoint: {exc}"
        return _unhealthy(reasons)
    if ctx.provider.name == "fake":  # fake nodes run nothing: their container state is all there is
        return _unhealthy(reasons) if reasons else Observation("HEALTHY", {})
    with KubeApi(server, ctx.client_tls(), timeout=PROBE_TIMEOUT) as k:
        ok, detail = k.readyz()
        if not ok:
            reasons["api"] = f"API server not ready: {detail}"
            if apilb.enabled(spec) and len(_masters_ready(spec, mine, ctx)) < len(
                apilb.master_urls(spec, mine)
            ):
                reasons["api"] = (
                    f"the API load balancer {apilb.name(spec)} ({server}) does not answer ({detail}), "
                    "while masters' API servers do"
                )
            return _unhealthy(reasons)
        try:
            listed = {node_name(n): n for n in k.nodes()}
        except (ApiFailed, *Errors) as exc:
            reasons["api"] = f"listing nodes failed: {exc}"
            return _unhealthy(reasons)
    if len(spec.master.names) > 1:
        for master, why in _masters_ready(spec, mine, ctx).items():
            reasons.setdefault(master, why)
        down = [m for m in spec.master.names if m in reasons]
        for master in down:  # the balancer still answers: say who carries the control plane
            serving = len(spec.master.names) - len(down)
            reasons[master] = (
                f"master down ({reasons[master]}); the API is served by the other {serving} master(s)"
            )
    healthy: dict[str, str] = {"api": "ok"}
    for name in wanted:
        if name in reasons:
            continue
        node = listed.get(name)
        if node is None:
            reasons[name] = "not registered with the API server"
            continue
        ready, why = node_ready(node)
        if ready:
            healthy[name] = "Ready"
        else:
            reasons[name] = why
    if reasons:
        return _unhealthy(reasons)
    return Observation("HEALTHY", healthy)
