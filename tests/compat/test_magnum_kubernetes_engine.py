"""The guide's Kubernetes flow driven by the REAL ``magnum`` shell (python-magnumclient
2.17.0, token mode) on the real Docker Engine (issue 11, item 5), one cluster:

* ``cluster-template-create --coe kubernetes --network-driver flannel`` with the guide's
  other options (``--master-flavor m1.medium`` added: a master's control plane needs
  more than m1.small's 1 GB), ``cluster-create`` with 1 master and 2 nodes;
* ``cluster-config`` gets a client certificate signed through ``POST /v1/certificates``,
  writes ``DIR/config`` and prints only ``export KUBECONFIG=DIR/config``. 2.17 writes that
  kubeconfig without the credentials (its shell never hands the certificates to its
  kubeconfig writer; see tests/compat/test_kube_config.py), so kubectl is given the
  ``ca.pem``/``cert.pem``/``key.pem`` it wrote next to it: with them ``kubectl get nodes``
  lists every node Ready over TLS and a ReplicationController (the guide's word) runs;
* ``cluster-update ... replace node_count=3`` adds a Ready node; ``cluster-delete``
  leaves nothing behind on the engine.

Needs the session's Docker Engine (tests/engine_fixtures.py) and the Kubernetes build:
run under the engine lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from flotilla.drivers.providers.local import Engine, leaks

if TYPE_CHECKING:  # conftest.py is pytest's, not a package module: types only
    from conftest import Magnum, Server

pytestmark = [pytest.mark.compat, pytest.mark.e2e, pytest.mark.kube]

KUBECTL = Path(sys.executable).with_name("kubectl")  # the same path kube_server checks
#: The guide's Kubernetes baymodel options, as cluster-template-create spells them.
TEMPLATE = [
    "cluster-template-create", "--name", "k8s-guide", "--image", "fedora-atomic-latest", "--keypair", "testkey",
    "--external-network", "public", "--dns-nameserver", "8.8.8.8", "--flavor", "m1.small",
    "--master-flavor", "m1.medium", "--docker-volume-size", "5", "--network-driver", "flannel",
    "--coe", "kubernetes",
]  # fmt: skip


def _show(magnum: Magnum, srv: Server, cluster: str) -> dict[str, str]:
    shown = magnum("cluster-show", cluster, on=srv)
    return shown.props() if shown.returncode == 0 else {}


def _settled(magnum: Magnum, srv: Server, cluster: str, timeout: float = 600) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        props = _show(magnum, srv, cluster)
        if not props or not props["status"].endswith("IN_PROGRESS"):
            return props
        assert time.monotonic() < deadline, props
        time.sleep(1)


class Kubectl:
    """kubectl with the kubeconfig 2.17 wrote and the certificates it wrote beside it."""

    def __init__(self, config_dir: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(config_dir / "config")}
        self.flags = [f"--certificate-authority={config_dir / 'ca.pem'}",
                      f"--client-certificate={config_dir / 'cert.pem'}", f"--client-key={config_dir / 'key.pem'}"]  # fmt: skip

    def json(self, *args: str, stdin: str | None = None) -> Any:
        r = subprocess.run([str(KUBECTL), *self.flags, *args, "-o", "json"], input=stdin, env=self.env,
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stdout}\n{r.stderr}"
        return json.loads(r.stdout)

    def ready_nodes(self) -> dict[str, bool]:
        return {
            n["metadata"]["name"]: any(
                c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]
            )
            for n in self.json("get", "nodes")["items"]
        }


def _running(k: Kubectl, selector: str, count: int, timeout: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        pods = k.json("get", "pods", "-l", selector)["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        if len(running) >= count:
            return running
        assert time.monotonic() < deadline, [(p["metadata"]["name"], p["status"]) for p in pods]
        time.sleep(0.5)


def test_the_guides_kubernetes_flow_with_magnum_217(
    magnum: Magnum, kube_server: Server, engine: Engine, tmp_path: Path
) -> None:
    srv = kube_server
    model = magnum(*TEMPLATE, on=srv).ok().props()
    try:
        assert model["coe"] == "kubernetes" and model["network_driver"] == "flannel", model
        out = magnum("cluster-create", "--name", "k8s-guide", "--cluster-template", "k8s-guide",
                     "--master-count", "1", "--node-count", "2", on=srv).ok()  # fmt: skip
        assert len(out.lines) == 1 and out.lines[0].startswith("Request to create cluster "), out
        uuid = out.lines[0].split()[4]
        try:
            props = _settled(magnum, srv, uuid)
            assert props["status"] == "CREATE_COMPLETE", props
            assert props["api_address"].startswith("https://") and props["api_address"].endswith(":6443"), (
                props
            )
            reason = props["status_reason"]
            assert "containerd's overlayfs snapshotter on a 5 GB volume per node" in reason, reason
            assert "Docker" not in reason, reason

            config = tmp_path / "k8s"
            config.mkdir()
            shown = magnum("cluster-config", "k8s-guide", "--dir", str(config), on=srv).ok()
            assert [ln for ln in shown.lines if ln.strip()] == [f"export KUBECONFIG={config}/config"], shown
            k = Kubectl(config)
            nodes = k.ready_nodes()
            assert len(nodes) == 3 and all(nodes.values()), nodes

            # The guide's replication controller, from an image every node has (no registry here).
            rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "guide-rc"},
                  "spec": {"replicas": 2, "selector": {"app": "guide-rc"},
                           "template": {"metadata": {"labels": {"app": "guide-rc"}},
                                        "spec": {"terminationGracePeriodSeconds": 1,
                                                 "containers": [{"name": "pause", "image": "flotilla.local/pause:3.10",
                                                                 "imagePullPolicy": "Never"}]}}}}  # fmt: skip
            k.json("apply", "-f", "-", stdin=json.dumps(rc))
            pods = _running(k, "app=guide-rc", 2)
            assert all("-node-" in p["spec"]["nodeName"] for p in pods), pods  # not on the tainted master

            magnum("cluster-update", "k8s-guide", "replace", "node_count=3", on=srv).ok()
            props = _settled(magnum, srv, uuid)
            assert props["status"] == "UPDATE_COMPLETE" and props["node_count"] == "3", props
            nodes = k.ready_nodes()
            assert len(nodes) == 4 and all(nodes.values()), nodes
        finally:
            magnum("cluster-delete", "k8s-guide", on=srv)
            assert _settled(magnum, srv, uuid) == {}
        assert leaks(engine, uuid) == []
    finally:
        magnum("cluster-template-delete", "k8s-guide", on=srv).ok()
