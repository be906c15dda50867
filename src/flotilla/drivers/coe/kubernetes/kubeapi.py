"""A small Kubernetes API client for the conductor: readiness, nodes, server-side apply
of the add-ons, cordon/evict/delete for scale-in. Over TLS with the conductor's client
certificate (``O=system:masters``), the same path kubectl takes to ``api_address``."""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from flotilla.domain import TlsMaterial
from flotilla.drivers.coe.dockerapi import ssl_context

#: kind -> (API path prefix, plural, namespaced) for the objects Flotilla applies.
_RESOURCES: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Service": ("/api/v1", "services", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Deployment": ("/apis/apps/v1", "deployments", True),
}

Errors = (httpx.HTTPError, ssl.SSLError, OSError)


class ApiFailed(RuntimeError):
    """The API server answered with an error status."""


class KubeApi:
    def __init__(self, server: str, tls: TlsMaterial | None, *, timeout: float = 5.0) -> None:
        verify: ssl.SSLContext | bool = ssl_context(tls) if tls is not None else False
        self.server = server
        self._c = httpx.Client(base_url=server, verify=verify, timeout=timeout)

    def __enter__(self) -> KubeApi:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._c.close()

    def _check(self, r: httpx.Response, what: str) -> Any:
        if r.status_code >= 400:
            try:
                message = r.json().get("message") or r.text
            except ValueError:
                message = r.text
            raise ApiFailed(f"{what}: HTTP {r.status_code}: {str(message)[:300]}")
        return r.json() if r.content else None

    # ---- reads ------------------------------------------------------------------------

    def readyz(self) -> tuple[bool, str]:
        """``(ready, detail)``; never raises."""
        try:
            r = self._c.get("/readyz")
        except Errors as exc:
            return False, str(exc) or type(exc).__name__
        if r.status_code == 200:
            return True, "ok"
        failed = [ln.strip() for ln in r.text.splitlines() if "failed" in ln]
        return False, f"HTTP {r.status_code}" + (f" ({'; '.join(failed)[:200]})" if failed else "")

    def nodes(self) -> list[dict[str, Any]]:
        data = self._check(self._c.get("/api/v1/nodes"), "listing nodes")
        return list(data.get("items") or [])

    def pods_on(self, node: str) -> list[dict[str, Any]]:
        r = self._c.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={node}"})
        return list((self._check(r, f"listing pods on {node}") or {}).get("items") or [])

    def services(self) -> list[dict[str, Any]]:
        """Every Service of every namespace (one request)."""
        data = self._check(self._c.get("/api/v1/services"), "listing services")
        return list(data.get("items") or [])

    def config_map_data(self, namespace: str, name: str) -> dict[str, str]:
        """A ConfigMap's ``data`` (empty when it does not exist)."""
        r = self._c.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        if r.status_code == 404:
            return {}
        return dict((self._check(r, f"reading configmap {namespace}/{name}") or {}).get("data") or {})

    # ---- writes -----------------------------------------------------------------------

    def apply(self, obj: Mapping[str, Any]) -> None:
        """Server-side apply (create or update), so a resumed step applies again harmlessly."""
        kind = str(obj["kind"])
        prefix, plural, namespaced = _RESOURCES[kind]
        meta = obj["metadata"]
        ns = f"/namespaces/{meta.get('namespace', 'default')}" if namespaced else ""
        r = self._c.patch(
            f"{prefix}{ns}/{plural}/{meta['name']}",
            params={"fieldManager": "flotilla", "force": "true"},
            content=json.dumps(obj).encode(),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        self._check(r, f"applying {kind} {meta['name']}")

    def patch_node(self, name: str, patch: Mapping[str, Any]) -> None:
        r = self._c.patch(
            f"/api/v1/nodes/{name}",
            content=json.dumps(patch).encode(),
            headers={"Content-Type": "application/strategic-merge-patch+json"},
        )
        self._check(r, f"updating node {name}")

    def evict(self, namespace: str, pod: str) -> bool:
        """Ask for an eviction; False when a disruption budget refuses it for now (429)."""
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": namespace},
        }
        r = self._c.post(f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", json=body)
        if r.status_code in (404, 200, 201):
            return True
        if r.status_code == 429:
            return False
        self._check(r, f"evicting pod {namespace}/{pod}")
        return True

    def restart_deployment(self, namespace: str, name: str, stamp: str) -> int:
        """``kubectl rollout restart`` (new pods before old ones go: maxUnavailable 0);
        returns the Deployment's new generation."""
        patch = {"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                          "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}  # fmt: skip
        r = self._c.patch(
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
            content=json.dumps(patch).encode(),
            headers={"Content-Type": "application/strategic-merge-patch+json"},
        )
        return int(self._check(r, f"restarting deployment {namespace}/{name}")["metadata"]["generation"])

    def rolled_out(self, namespace: str, name: str, generation: int) -> tuple[bool, str]:
        """Whether the Deployment's rollout of ``generation`` is complete (as ``kubectl rollout status``)."""
        r = self._c.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        d = self._check(r, f"reading deployment {namespace}/{name}")
        st, want = d.get("status") or {}, int((d.get("spec") or {}).get("replicas", 1))
        counts = (st.get("updatedReplicas", 0), st.get("availableReplicas", 0), st.get("replicas", 0))
        done = st.get("observedGeneration", 0) >= generation and counts == (want, want, want)
        return done, f"{counts[0]} of {want} updated, {counts[1]} available, {counts[2]} in all"

    def patch_service_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge ``status`` into the Service's status (the status subresource)."""
        r = self._c.patch(
            f"/api/v1/namespaces/{namespace}/services/{name}/status",
            content=json.dumps({"status": status}).encode(),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        self._check(r, f"updating the status of service {namespace}/{name}")

    def create_event(self, namespace: str, event: Mapping[str, Any]) -> None:
        r = self._c.post(f"/api/v1/namespaces/{namespace}/events", json=event)
        self._check(r, f"recording an event in {namespace}")

    def delete_pod(self, namespace: str, pod: str, *, grace_seconds: int | None = None) -> None:
        """Delete a pod (``grace_seconds=0``: at once, for a pod whose kubelet is gone and so
        can never confirm it stopped); a missing pod counts as deleted."""
        params = {"gracePeriodSeconds": str(grace_seconds)} if grace_seconds is not None else None
        r = self._c.delete(f"/api/v1/namespaces/{namespace}/pods/{pod}", params=params)
        if r.status_code != 404:
            self._check(r, f"deleting pod {namespace}/{pod}")

    def delete_node(self, name: str) -> None:
        r = self._c.delete(f"/api/v1/nodes/{name}")
        if r.status_code != 404:
            self._check(r, f"deleting node {name}")


def node_ready(node: Mapping[str, Any]) -> tuple[bool, str]:
    """``(ready, reason)`` from a Node's Ready condition."""
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            if cond.get("status") == "True":
                return True, "Ready"
            detail = cond.get("message") or cond.get("reason") or "not ready"
            return False, f"NotReady: {str(detail)[:160]}"
    return False, "NotReady: no status yet"


def node_name(node: Mapping[str, Any]) -> str:
    return str((node.get("metadata") or {}).get("name", ""))
