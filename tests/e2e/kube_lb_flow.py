"""The guide's nginx-style example behind a Service of type LoadBalancer, shared by the e2e
test and bench/k8s_lb.py: a busybox httpd Deployment (the image comes from
``cluster-image-load busybox``: there is no registry), its Service, the wait for
``status.loadBalancer.ingress`` and for an answer at that address from this process."""

from __future__ import annotations

import time
from typing import Any

import httpx
from kube_helpers import Kubectl, _deployment

APP = "nginx"


def deploy(k: Kubectl, replicas: int = 2) -> None:
    """The Deployment: busybox httpd on 8080 serving /etc (GET /hostname names the pod)."""
    k.apply(_deployment(APP, replicas, ["httpd", "-f", "-p", "8080", "-h", "/etc"]))


def service(name: str = APP, port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"app": APP}},
        "spec": {"type": "LoadBalancer", "selector": {"app": APP},
                 "ports": [{"name": "http", "port": port, "targetPort": 8080, "protocol": "TCP"}]},
    }  # fmt: skip


def wait_ingress(k: Kubectl, name: str = APP, timeout: float = 60) -> str:
    """The ingress IP Flotilla writes into the Service's status."""
    deadline = time.monotonic() + timeout
    while True:
        svc = k.json("get", "service", name)
        ingress = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        if ingress and ingress[0].get("ip"):
            return str(ingress[0]["ip"])
        if time.monotonic() > deadline:
            raise AssertionError(f"service {name}: no ingress within {timeout:g} s: {svc.get('status')}")
        time.sleep(0.05)


def wait_answer(url: str, timeout: float = 60) -> str:
    """GET ``url`` until it answers 200; return the body (the answering pod's hostname)."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200:
                return r.text.strip()
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout:g} s: {last}")
        time.sleep(0.05)
