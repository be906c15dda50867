"""The kubeconfig ``cluster-config``/``bay-config`` and the dashboard hand out.

Standalone (``DIR/config``) it is what ``openstack coe cluster config`` writes: the
cluster named after the Flotilla cluster with the CA inlined, user ``admin`` with the
client certificate and key inlined (a CSR with ``CN=admin, O=system:masters`` signed
through ``POST /v1/certificates``; Kubernetes' default RBAC maps the group to
cluster-admin), context ``default``. Merged into a shared kubeconfig (as kind and k3d
do) every entry is named ``flotilla-<cluster>`` so several clusters live side by side,
and that context becomes the current one.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

from flotilla.drivers.coe.native import ClientConfigRequest, ConfigFile, Credentials, Merge, NativeConfig, pem
from flotilla.errors import Invalid

CONFIG_FILE = "config"
MERGED_PREFIX = "flotilla-"
TRY_IT = "kubectl get nodes"


def _b64(text: str) -> str:
    return base64.b64encode(pem(text).encode("ascii")).decode("ascii")


def kubeconfig(
    server: str, creds: Credentials | None, *, cluster: str, user: str = "admin", context: str = "default"
) -> dict[str, Any]:
    """A kubeconfig document with one cluster, one user and one (current) context."""
    entry: dict[str, Any] = {"server": server}
    credentials: dict[str, Any] = {}
    if creds is not None:
        entry["certificate-authority-data"] = _b64(creds.ca_pem)
        credentials = {
            "client-certificate-data": _b64(creds.cert_pem),
            "client-key-data": _b64(creds.key_pem),
        }
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": entry}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    }


def dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def merge_kubeconfig(existing: str | None, new: dict[str, Any]) -> str:
    """``existing`` (a kubeconfig's text, or None/empty) with ``new``'s cluster, user and
    context added, replacing entries of the same names, and ``new``'s context made current.
    Everything else in ``existing`` is kept. Raises Invalid when ``existing`` is not a kubeconfig."""
    doc: Any = yaml.safe_load(existing) if existing and existing.strip() else None
    if doc is None:
        doc = {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    if not isinstance(doc, dict):
        raise Invalid("the kubeconfig to merge into is not a YAML mapping; fix or move it, then run again.")
    for key in ("clusters", "users", "contexts"):
        current = doc.get(key) or []
        if not isinstance(current, list):
            raise Invalid(f"the kubeconfig to merge into has a {key} entry that is not a list.")
        names = {item["name"] for item in new[key]}
        doc[key] = [item for item in current if not (isinstance(item, dict) and item.get("name") in names)]
        doc[key] += new[key]
    doc["current-context"] = new["current-context"]
    return dump(doc)


def default_merge_target() -> Path:
    """Where kubectl reads first: the first file in ``$KUBECONFIG``, else ``~/.kube/config``."""
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return Path(listed[0]).expanduser() if listed else Path.home() / ".kube" / "config"


def client_config(request: ClientConfigRequest) -> NativeConfig:
    """``DIR/config`` plus ``KUBECONFIG``; mergeable into the user's kubeconfig."""
    creds = request.creds if request.tls else None
    path = os.path.join(request.directory, CONFIG_FILE)
    env: tuple[tuple[str, str | None], ...] = (("KUBECONFIG", path),)
    name = MERGED_PREFIX + request.cluster_name
    shared = kubeconfig(request.api_address, creds, cluster=name, user=name, context=name)
    merge = Merge(
        default_target=default_merge_target(),
        apply=lambda existing: merge_kubeconfig(existing, shared),
        what=f"context {name}",
    )
    if request.tls and creds is None:  # a preview: no credentials yet, so no files
        return NativeConfig(env=env, merge=merge, try_it=TRY_IT)
    standalone = kubeconfig(request.api_address, creds, cluster=request.cluster_name)
    files = (ConfigFile(CONFIG_FILE, dump(standalone), 0o600),)
    return NativeConfig(files=files, env=env, merge=merge, try_it=TRY_IT)
