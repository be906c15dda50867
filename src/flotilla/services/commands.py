"""Commands: what a write request asks the services to do, without its wire details.

The API edge (``flotilla.api.commands``) and the dashboard turn a parsed request into
one of these frozen dataclasses, with the microversion rules already applied (a
microversion becomes a plain flag such as ``zero_nodes_allowed``); services take
commands, never request bodies or microversions. Each command has one validator
here, for the checks that need nothing but the command (and the operator's limits);
checks that need the database stay in the service that runs the command, which calls
the validator at the point Magnum's order puts these checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from flotilla.errors import Invalid

ClusterView = Literal["cluster", "bay"]
TemplateView = Literal["clustertemplate", "baymodel"]
NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]*$")
ZERO_NOT_SUPPORTED = "Resizing a nodegroup to zero is not supported in the provided microversion."


def _at_least(name: str, value: int, minimum: int) -> Invalid:
    return Invalid(
        f"Invalid input for field/attribute {name}. Value: '{value}'. Value should be greater or equal to {minimum}"
    )


@dataclass(frozen=True)
class CreateCluster:
    """Create a cluster (``POST /v1/clusters``) or a bay (``POST /v1/bays``).

    ``None`` means "not given": the template's value (or the service default) applies.
    """

    view: ClusterView
    template: str  # the cluster template (baymodel) name or uuid
    name: str | None = None
    master_count: int = 1
    node_count: int = 1
    create_timeout: int = 60  # minutes
    docker_volume_size: int | None = None
    keypair: str | None = None
    labels: Mapping[str, Any] | None = None
    merge_labels: bool = False
    master_flavor_id: str | None = None
    flavor_id: str | None = None
    fixed_network: str | None = None
    fixed_subnet: str | None = None
    floating_ip_enabled: bool | None = None
    master_lb_enabled: bool | None = None
    discovery_url: str | None = None
    #: API >= 1.10 for clusters: a cluster may start with no workers.
    zero_nodes_allowed: bool = True
    #: bays, and clusters before API 1.10: a missing template is a 400, not a 404.
    missing_template_invalid: bool = False


def validate_create_cluster(cmd: CreateCluster, name: str, max_nodes: int) -> None:
    """The command's own checks, in Magnum's order; ``name`` is the name the cluster
    gets (the command's, or one generated). Raises Invalid with the reason."""
    if len(name) > 242 or not NAME_RE.match(name):
        raise Invalid(
            f"Invalid input for field/attribute name. Value: '{name}'. "
            "Value should match the pattern ^[a-zA-Z][a-zA-Z0-9_.-]*$ (at most 242 characters)"
        )
    if cmd.master_count < 1:
        raise _at_least("master_count", cmd.master_count, 1)
    if cmd.view == "bay" and cmd.node_count < 1:
        raise _at_least("node_count", cmd.node_count, 1)
    if cmd.node_count < 0 or (cmd.node_count < 1 and not cmd.zero_nodes_allowed):
        raise (
            Invalid(ZERO_NOT_SUPPORTED) if cmd.node_count == 0 else _at_least("node_count", cmd.node_count, 1)
        )
    check_size(max_nodes, cmd.master_count, cmd.node_count)
    if cmd.create_timeout <= 0:
        raise Invalid(
            f"Invalid input for field/attribute create_timeout. Value: '{cmd.create_timeout}'. "
            "Value should be greater than 0 (minutes)"
        )


def check_size(max_nodes: int, masters: int, workers: int) -> None:
    """Raises Invalid when a cluster would have more than ``max_nodes`` nodes."""
    if masters + workers > max_nodes:
        raise Invalid(
            f"A cluster may have at most {max_nodes} nodes here (asked for {masters} masters "
            f"and {workers} workers); the operator sets this with max_nodes_per_cluster."
        )


@dataclass(frozen=True)
class Resize:
    """Change a worker nodegroup's size (``POST /v1/clusters/ID/actions/resize``, the
    dashboard's scale form, auto-healing's node replacement).

    ``nodes_to_remove`` go first, then the newest nodes; ``nodegroup`` None is the
    default worker group.
    """

    node_count: int
    nodegroup: str | None = None
    nodes_to_remove: tuple[str, ...] = ()
    #: API >= 1.10: a nodegroup may be resized to zero.
    zero_nodes_allowed: bool = True
    #: Why the service itself asks (auto-healing): with the new nodes' names ("... with
    #: <name>") the update's status_reason and event, and the operation's
    #: ``params["reason"]``. None for users' requests.
    reason: str | None = None


def validate_resize(cmd: Resize) -> None:
    """Raises Invalid for a negative count or a zero the microversion does not allow."""
    if cmd.node_count < 0:
        raise _at_least("node_count", cmd.node_count, 0)
    if cmd.node_count == 0 and not cmd.zero_nodes_allowed:
        raise Invalid(ZERO_NOT_SUPPORTED)


#: Health statuses an admin may set by hand (the health monitor writes the same ones).
HEALTH_STATUSES = ("HEALTHY", "UNHEALTHY", "UNKNOWN")


@dataclass(frozen=True)
class SetHealth:
    """Set a cluster's health fields (admins; the health monitor's next look replaces them)."""

    status: str | None
    reason: Mapping[str, Any] = field(default_factory=dict)


def validate_set_health(cmd: SetHealth) -> None:
    if cmd.status is not None and cmd.status not in HEALTH_STATUSES:
        raise Invalid(
            f"Invalid input for field/attribute health_status. Value: '{cmd.status}'. "
            f"Value should be one of: {', '.join(HEALTH_STATUSES)}"
        )


@dataclass(frozen=True)
class UpdateCluster:
    """``PATCH /v1/clusters/ID`` (or ``/v1/bays/ID``) after the patch is applied: the
    changed properties only (``None``: unchanged). The edge has already refused
    properties that cannot change. Validated part by part (``validate_resize``,
    ``validate_set_health``), each where Magnum checks it."""

    resize: Resize | None = None
    health: SetHealth | None = None


@dataclass(frozen=True)
class RotateCa:
    """Rotate a cluster's CA (``PATCH /v1/certificates/ID``); the body carries nothing."""


@dataclass(frozen=True)
class Upgrade:
    """Upgrade a cluster to another template (``POST /v1/clusters/ID/actions/upgrade``, API >= 1.8)."""

    cluster_template: str
    max_batch_size: int = 1
    nodegroup: str | None = None


def validate_upgrade(cmd: Upgrade) -> None:
    if not cmd.cluster_template:
        raise Invalid(
            "Invalid input for field/attribute cluster_template. Value: ''. Mandatory field missing."
        )
    if cmd.max_batch_size < 1:
        raise _at_least("max_batch_size", cmd.max_batch_size, 1)


@dataclass(frozen=True)
class TemplateFields:
    """A cluster template's writable fields (``None``: not set)."""

    coe: str
    image_id: str
    name: str | None = None
    keypair_id: str | None = None
    flavor_id: str | None = None
    master_flavor_id: str | None = None
    dns_nameserver: str | None = None
    external_network_id: str | None = None
    fixed_network: str | None = None
    fixed_subnet: str | None = None
    network_driver: str | None = None
    volume_driver: str | None = None
    apiserver_port: int | None = None
    docker_volume_size: int | None = None
    docker_storage_driver: str | None = None
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None
    registry_enabled: bool | None = None
    insecure_registry: str | None = None
    labels: Mapping[str, Any] | None = None
    tls_disabled: bool | None = None
    public: bool | None = None
    hidden: bool | None = None
    server_type: str | None = None
    master_lb_enabled: bool | None = None
    floating_ip_enabled: bool | None = None
    tags: str | None = None
    cluster_distro: str | None = None
    driver: str | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> TemplateFields:
        """From already type-checked values; keys that are not writable fields are ignored."""
        names = _TEMPLATE_FIELDS
        return cls(**{k: v for k, v in values.items() if k in names})

    def values(self) -> dict[str, Any]:
        """Every field by name (``None`` for unset ones); labels as a plain dict."""
        out = {name: getattr(self, name) for name in _TEMPLATE_FIELDS}
        if out["labels"] is not None:
            out["labels"] = dict(out["labels"])
        return out


#: TemplateFields' field names in declaration order (``dataclasses.fields`` costs per call).
_TEMPLATE_FIELDS: dict[str, None] = dict.fromkeys(f.name for f in fields(TemplateFields))


@dataclass(frozen=True)
class CreateTemplate:
    """``POST /v1/clustertemplates`` / ``/v1/baymodels``; ``uuid`` given by the client or None."""

    view: TemplateView
    fields: TemplateFields
    uuid: str | None = None


@dataclass(frozen=True)
class UpdateTemplate:
    """``PATCH /v1/clustertemplates/ID``: the whole writable view after the patch."""

    view: TemplateView
    fields: TemplateFields
