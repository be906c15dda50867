"""Health of a Kubernetes cluster: the provider's view of the node containers, the API
server's ``/readyz`` and every node's Ready condition, with a reason per node."""

from __future__ import annotations

from collections.abc import Sequence

from flotilla.domain import NodeInfo
from flotilla.drivers.base import ClusterSpec, Observation, StepContext

from .kubeapi import ApiFailed, Errors, KubeApi, node_name, node_ready
from .steps import endpoint


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
        server = endpoint(spec, mine)
    except RuntimeError as exc:
        reasons["api"] = f"no API endpoint: {exc}"
        return Observation("UNHEALTHY", reasons, tuple(k for k in reasons if k != "api"))
    if ctx.provider.name == "fake":  # fake nodes run nothing: their container state is all there is
        return Observation("UNHEALTHY", reasons, tuple(reasons)) if reasons else Observation("HEALTHY", {})
    with KubeApi(server, ctx.client_tls(), timeout=3.0) as k:
        ok, detail = k.readyz()
        if not ok:
            reasons["api"] = f"API server not ready: {detail}"
            return Observation("UNHEALTHY", reasons, tuple(k for k in reasons if k != "api"))
        try:
            listed = {node_name(n): n for n in k.nodes()}
        except (ApiFailed, *Errors) as exc:
            reasons["api"] = f"listing nodes failed: {exc}"
            return Observation("UNHEALTHY", reasons, tuple(k for k in reasons if k != "api"))
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
        return Observation("UNHEALTHY", reasons, tuple(k for k in reasons if k != "api"))
    return Observation("HEALTHY", healthy)
