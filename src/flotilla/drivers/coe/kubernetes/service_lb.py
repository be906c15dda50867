"""Services of ``type: LoadBalancer``: what a cloud-controller-manager's service controller
does on a cloud, done by the conductor with the cluster's admin credentials held by Flotilla
(the conductor calls :func:`reconcile` every ``conductor.service_lb_interval`` seconds).

* Desired: one provider load balancer per Service of type LoadBalancer (services naming
  another implementation in ``spec.loadBalancerClass`` are left alone), named
  ``<node prefix>-svc-<hash of namespace/name>`` (so it never matches the API server's
  ``<node prefix>-lb-0``), on the cluster network, one TCP listener per service port:
  ``address:port`` -> every worker's ``nodePort``. The balancer health-checks the node
  ports, so nodes without a path to a ready endpoint (``externalTrafficPolicy: Local``)
  drop out by themselves.
* Actual: the provider's balancers of the cluster with that prefix (one listing).
* Then: ensure the missing or changed ones, write ``status.loadBalancer.ingress[].ip``
  through the status subresource, delete the balancers whose service is gone or no longer
  of type LoadBalancer (clearing its ingress when the service still exists). Workers added
  or removed (scale) and changed ports change the spec, so the balancer follows.
* Ports other than TCP are not balanced (the local provider's balancer is haproxy in TCP
  mode): the service gets a Warning event ``UnsupportedProtocol`` and its TCP ports still work.

No finalizer is put on services: a gone service's balancer is found by the diff (and a
cluster delete removes every node, so nothing is left either way).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from flotilla.domain import Listener, LoadBalancerSpec, NodeInfo
from flotilla.drivers.base import ClusterSpec, Provider
from flotilla.drivers.coe import dockerhost

log = logging.getLogger(__name__)

COMPONENT = "flotilla-service-controller"


class ServiceApi(Protocol):
    """The part of the Kubernetes API the controller uses (``KubeApi`` has it)."""

    def services(self) -> list[dict[str, Any]]: ...

    def patch_service_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...

    def create_event(self, namespace: str, event: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class Wanted:
    """One balancer a service asks for."""

    namespace: str
    service: str
    uid: str
    spec: LoadBalancerSpec
    #: Ports that cannot be balanced ("53/UDP"), for the Warning event.
    unsupported: tuple[str, ...] = ()


def name_prefix(spec: ClusterSpec) -> str:
    return f"{dockerhost.cluster_prefix(spec)}-svc-"


def balancer_name(spec: ClusterSpec, namespace: str, service: str) -> str:
    digest = hashlib.sha256(f"{namespace}/{service}".encode()).hexdigest()[:10]
    return f"{name_prefix(spec)}{digest}"


def members(spec: ClusterSpec, nodes: Sequence[NodeInfo]) -> tuple[str, ...]:
    """The addresses the balancers send to: the workers' (the masters' when there are none;
    kube-proxy opens node ports on every node)."""
    mine = [n for n in nodes if n.cluster_uuid == spec.uuid and n.address]
    workers = sorted(n.address or "" for n in mine if n.role == "worker")
    if workers:
        return tuple(workers)
    return tuple(sorted(n.address or "" for n in mine if n.role == "master"))


def _key(svc: Mapping[str, Any]) -> tuple[str, str]:
    meta = svc.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def is_ours(svc: Mapping[str, Any]) -> bool:
    s = svc.get("spec") or {}
    return s.get("type") == "LoadBalancer" and not s.get("loadBalancerClass")


def wanted(
    spec: ClusterSpec, services: Sequence[Mapping[str, Any]], to: tuple[str, ...]
) -> dict[str, Wanted]:
    """Balancer name -> what it must be, for every service of ours with a TCP node port."""
    network = spec.fixed_network or dockerhost.network_name(spec)
    out: dict[str, Wanted] = {}
    for svc in services:
        if not is_ours(svc):
            continue
        namespace, name = _key(svc)
        listeners: list[Listener] = []
        unsupported: list[str] = []
        for port in (svc.get("spec") or {}).get("ports") or []:
            proto = str(port.get("protocol") or "TCP")
            node_port = port.get("nodePort")
            if proto != "TCP":
                unsupported.append(f"{port.get('port')}/{proto}")
            elif not node_port:  # allocateLoadBalancerNodePorts: false
                unsupported.append(f"{port.get('port')}/TCP without a node port")
            else:
                listeners.append(Listener(int(port["port"]), to, int(node_port)))
        lb = LoadBalancerSpec(
            cluster_uuid=spec.uuid, name=balancer_name(spec, namespace, name), network=network,
            listeners=tuple(sorted(listeners, key=lambda x: x.port)), image_ref=spec.master.image_ref,
        )  # fmt: skip
        uid = str((svc.get("metadata") or {}).get("uid") or "")
        out[lb.name] = Wanted(namespace, name, uid, lb, tuple(unsupported))
    return out


def _ingress(svc: Mapping[str, Any]) -> list[Any]:
    return list(((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])


def _event(api: ServiceApi, w: Wanted, kind: str, reason: str, message: str) -> None:
    """Record an event on the service (``kubectl describe service``); failures only logged."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{w.service}.", "namespace": w.namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Service", "namespace": w.namespace,
                           "name": w.service, "uid": w.uid},
        "type": kind, "reason": reason, "message": message, "source": {"component": COMPONENT},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }  # fmt: skip
    try:
        api.create_event(w.namespace, event)
    except Exception as exc:  # an event is a courtesy; the balancer is what matters
        log.debug("event %s on %s/%s not recorded: %s", reason, w.namespace, w.service, exc)


def reconcile(
    spec: ClusterSpec,
    provider: Provider,
    api: ServiceApi,
    memo: MutableMapping[str, object],
    nodes: Sequence[NodeInfo] | None = None,
) -> list[str]:
    """One pass (see the module doc); ``nodes``: the provider's nodes of the cluster, when
    the caller has listed them already. ``memo``: balancer name -> the spec last applied, and
    ``"warned:<name>"`` -> the unsupported ports last reported. Returns what was done.

    Every balancer is tried; a failure on one is raised (all messages joined) after the
    others were handled, so one bad service does not hold up the rest.
    """
    services = api.services()
    prefix = name_prefix(spec)
    actual = {lb.name: lb for lb in provider.list_load_balancers(spec.uuid) if lb.name.startswith(prefix)}
    nodes = provider.list_nodes(spec.uuid) if nodes is None else nodes
    want = wanted(spec, services, members(spec, nodes))
    by_name = {balancer_name(spec, *_key(s)): s for s in services}
    done: list[str] = []
    errors: list[str] = []
    for name, w in sorted(want.items()):
        svc = by_name[name]
        ports = ", ".join(w.unsupported)
        if w.unsupported and memo.get(f"warned:{name}") != ports:
            _event(api, w, "Warning", "UnsupportedProtocol",
                   f"Flotilla's load balancers forward TCP only; not balanced: {ports}")  # fmt: skip
            memo[f"warned:{name}"] = ports
        if not w.spec.listeners:
            continue  # nothing to balance; a balancer it had is removed below
        try:
            info = actual.get(name)
            if info is None or memo.get(name) != w.spec:
                info = provider.ensure_load_balancer(w.spec)
                memo[name] = w.spec
                listeners = ", ".join(f"{x.port}->{x.backend_port}" for x in w.spec.listeners)
                done.append(f"ensured {name} for {w.namespace}/{w.service} at {info.address} ({listeners})")
                _event(api, w, "Normal", "EnsuredLoadBalancer",
                       f"Load balancer {name} at {info.address}: ports {listeners} to "
                       f"{len(w.spec.listeners[0].members)} node(s)")  # fmt: skip
            if info.address and [i.get("ip") for i in _ingress(svc)] != [info.address]:
                api.patch_service_status(
                    w.namespace, w.service, {"loadBalancer": {"ingress": [{"ip": info.address}]}}
                )
                done.append(f"status of {w.namespace}/{w.service}: ingress {info.address}")
        except Exception as exc:
            memo.pop(name, None)
            errors.append(f"service {w.namespace}/{w.service}: {exc}")
            _event(api, w, "Warning", "SyncLoadBalancerFailed", f"Error syncing load balancer: {exc}")
    for name in sorted(set(actual) - {n for n, w in want.items() if w.spec.listeners}):
        try:
            provider.delete_load_balancer(spec.uuid, name)
            memo.pop(name, None)
            done.append(f"deleted {name}")
            gone = by_name.get(name)
            if gone is not None and _ingress(gone):
                ns, svc_name = _key(gone)
                api.patch_service_status(ns, svc_name, {"loadBalancer": {"ingress": None}})
                done.append(f"status of {ns}/{svc_name}: ingress cleared")
        except Exception as exc:
            errors.append(f"balancer {name}: {exc}")
    for key in [k for k in memo if k.removeprefix("warned:") not in want]:
        del memo[key]
    if errors:
        raise RuntimeError("; ".join(errors))
    return done


def delete_all(spec: ClusterSpec, provider: Provider) -> list[str]:
    """Remove every service balancer of the cluster (never the API server's)."""
    prefix = name_prefix(spec)
    names = [lb.name for lb in provider.list_load_balancers(spec.uuid) if lb.name.startswith(prefix)]
    for name in names:
        provider.delete_load_balancer(spec.uuid, name)
    return names
