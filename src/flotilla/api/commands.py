"""The edge: parsed request values plus the microversion -> a service command.

Every microversion rule that changes what a write means is applied here, once, and
reaches the services as a plain field of the command (``flotilla.services.commands``).
The dashboard builds its commands with the same functions at the newest microversion.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from flotilla.services.commands import (
    ClusterView,
    CreateCluster,
    CreateTemplate,
    Resize,
    SetHealth,
    TemplateFields,
    TemplateView,
    UpdateCluster,
    UpdateTemplate,
    Upgrade,
)

#: API 1.10 allows clusters (and nodegroups) with no workers and 404s a missing template.
ZERO_NODES = 10


def _or(value: Any, default: int) -> int:
    return default if value is None else int(value)


def create_cluster(values: Mapping[str, Any], view: ClusterView, minor: int) -> CreateCluster:
    """``values``: the parsed body of ``POST /v1/clusters`` (``CLUSTER_FIELDS``) or
    ``POST /v1/bays`` (``BAY_FIELDS``)."""
    bay = view == "bay"
    timeout = values.get("bay_create_timeout" if bay else "create_timeout")
    return CreateCluster(
        view=view,
        template=str(values["baymodel_id" if bay else "cluster_template_id"]),
        name=values.get("name"),
        master_count=_or(values.get("master_count"), 1),
        node_count=_or(values.get("node_count"), 1),
        create_timeout=_or(timeout, 60),
        docker_volume_size=values.get("docker_volume_size"),
        keypair=None if bay else values.get("keypair"),  # a bay always takes its baymodel's
        labels=values.get("labels"),
        merge_labels=not bay and bool(values.get("merge_labels")),
        master_flavor_id=values.get("master_flavor_id"),
        flavor_id=values.get("flavor_id"),
        fixed_network=values.get("fixed_network"),
        fixed_subnet=values.get("fixed_subnet"),
        floating_ip_enabled=_flag(values.get("floating_ip_enabled")),
        master_lb_enabled=None if bay else _flag(values.get("master_lb_enabled")),  # a bay: the baymodel's
        discovery_url=values.get("discovery_url"),
        zero_nodes_allowed=not bay and minor >= ZERO_NODES,
        missing_template_invalid=bay or minor < ZERO_NODES,
    )


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


def resize(values: Mapping[str, Any], minor: int) -> Resize:
    """``values``: the parsed body of ``POST /v1/clusters/ID/actions/resize``."""
    return Resize(
        node_count=int(values["node_count"]),
        nodegroup=values.get("nodegroup"),
        nodes_to_remove=tuple(values.get("nodes_to_remove") or ()),
        zero_nodes_allowed=minor >= ZERO_NODES,
    )


def update_cluster(
    patched: Mapping[str, Any],
    changed: Collection[str],
    view: ClusterView,
    minor: int,
    *,
    node_count: int | None,
) -> UpdateCluster:
    """A cluster PATCH as a command: ``patched`` is the cluster's view after the patch,
    ``changed`` the properties it changed; ``node_count`` the new count, type-checked
    (None: unchanged). A bay's PATCH keeps the 1.9 rules (no zero) whatever the microversion."""
    health = None
    if "health_status" in changed or "health_status_reason" in changed:
        reason = patched.get("health_status_reason")
        health = SetHealth(patched.get("health_status"), reason if isinstance(reason, dict) else {})
    return UpdateCluster(
        resize=None
        if node_count is None
        else Resize(node_count, zero_nodes_allowed=view == "cluster" and minor >= ZERO_NODES),
        health=health,
    )


def upgrade(values: Mapping[str, Any]) -> Upgrade:
    """``values``: the parsed body of ``POST /v1/clusters/ID/actions/upgrade`` (API >= 1.8,
    which the route checks: older microversions are refused there, not turned into a command)."""
    size = values.get("max_batch_size")
    return Upgrade(
        cluster_template=str(values["cluster_template"]),
        max_batch_size=1 if size is None else int(size),
        nodegroup=values.get("nodegroup"),
    )


def create_template(values: Mapping[str, Any], view: TemplateView) -> CreateTemplate:
    """``values``: the parsed body of ``POST /v1/clustertemplates`` or ``/v1/baymodels``."""
    return CreateTemplate(view=view, fields=TemplateFields.of(values), uuid=values.get("uuid"))


def update_template(new: Mapping[str, Any], view: TemplateView) -> UpdateTemplate:
    """``new``: the template's whole writable view after the patch, type-checked."""
    return UpdateTemplate(view=view, fields=TemplateFields.of(new))
