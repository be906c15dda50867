"""The two plug-in axes: infrastructure providers (where nodes run) and COE drivers
(what runs on them). Both are found through entry points and checked at start-up.

Contracts every implementation keeps:

* ``ensure_*`` methods are idempotent: calling one again with the same spec returns
  the existing object; ``delete_*`` treats "already gone" as success.
* Every object a provider creates carries the cluster uuid in a label
  (``flotilla.cluster=<uuid>``) so :meth:`Provider.sweep` and leak checks find strays.
* Drivers never write statuses; they run steps and raise on failure. A raised
  exception's message becomes the operation's failure reason, so make it say what
  failed ("node c1-worker-1: daemon did not answer on 2376 within 30 s").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from flotilla.domain import (
    ExecResult,
    Flavor,
    LoadBalancerInfo,
    LoadBalancerSpec,
    NetworkInfo,
    NetworkSpec,
    NodeInfo,
    NodeSpec,
    TlsMaterial,
    VolumeUsage,
)
from flotilla.drivers.coe.native import ClientConfigRequest, NativeConfig

#: ``repair``: replace the one node in ``ClusterSpec.nodes_to_remove`` by the new name in
#: its group's ``names`` (auto-healing a master); an empty plan means the driver cannot.
OpKind = Literal["create", "update", "delete", "rotate_ca", "upgrade", "repair"]

#: Capability names providers report and COE drivers require.
CAP_CONTAINERS_AS_NODES = "containers_as_nodes"
CAP_SIZED_VOLUMES = "sized_volumes"
CAP_LOAD_BALANCER = "load_balancer"
CAP_EXEC = "exec"
#: Node addresses are reachable from the conductor's host (and so from users there).
CAP_HOST_REACHABLE = "host_reachable"
#: The nodes' kernel has IPVS (swarm's ingress routing mesh and service VIPs need it).
CAP_IPVS = "ipvs"


@runtime_checkable
class Provider(Protocol):
    """Infrastructure: networks, nodes, volumes. After kind's node provider."""

    name: str

    def capabilities(self) -> frozenset[str]: ...

    def check(self) -> None:
        """Raise ``errors.Unavailable`` with a clear reason when the backend is unusable."""
        ...

    def ensure_network(self, spec: NetworkSpec) -> NetworkInfo: ...

    def delete_network(self, cluster_uuid: str, name: str) -> None: ...

    def reserve_address(self, cluster_uuid: str, network: str, name: str, role: str) -> str:
        """The address node ``name`` has (or will have) on ``network``, chosen by the provider.

        Idempotent by name: an existing node's address, or the one promised earlier.
        ``ensure_node`` with ``NodeSpec.ip=None`` uses the promise (or picks one), so a COE
        can put the address in a certificate before the node exists (an OpenStack provider
        creates the Neutron port here). Raises ``NotFound`` for an unknown network,
        ``FlotillaError`` when it has no free address.
        """
        ...

    def ensure_node(self, spec: NodeSpec) -> NodeInfo:
        """Create (or return the existing) node and start it; the node's command is running on return.

        ``spec.ip`` None: the provider chooses (the reserved address, else the lowest free).
        """
        ...

    def delete_node(self, cluster_uuid: str, name: str) -> None:
        """Remove the node and its volumes. Missing nodes are ignored."""
        ...

    def list_nodes(self, cluster_uuid: str | None = None) -> list[NodeInfo]:
        """Every node of one cluster, or of all clusters, in ONE backend call."""
        ...

    def ensure_load_balancer(self, spec: LoadBalancerSpec) -> LoadBalancerInfo:
        """Create the balancer, or bring an existing one to ``spec`` (listeners and members);
        its address never changes once created. Create it with no members first when the
        members need its address (a certificate SAN), then again with them."""
        ...

    def find_load_balancer(self, cluster_uuid: str, name: str) -> LoadBalancerInfo | None:
        """The balancer as it is now, or None."""
        ...

    def delete_load_balancer(self, cluster_uuid: str, name: str) -> None:
        """Remove the balancer; a missing one counts as removed."""
        ...

    def list_load_balancers(self, cluster_uuid: str) -> list[LoadBalancerInfo]:
        """Every balancer of the cluster, in ONE backend call (controllers diff against it)."""
        ...

    def exec(
        self, node: NodeInfo, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 60.0
    ) -> ExecResult: ...

    def put_files(self, node: NodeInfo, files: Mapping[str, bytes]) -> None: ...

    def restart_node(self, node: NodeInfo) -> None: ...

    def sweep(self, cluster_uuid: str) -> list[str]:
        """Remove everything still labelled with the cluster; return what was removed."""
        ...

    def image_exists(self, image_ref: str) -> bool: ...

    def max_volume_gb(self) -> int | None:
        """The largest ``docker_volume_size`` (GiB) a new node volume can get now (e.g. the
        free space where volumes live); None when the provider cannot tell."""
        ...

    def volume_usage(self, cluster_uuid: str | None = None) -> list[VolumeUsage]:
        """How full the nodes' Docker volumes are, for one cluster or all, in one pass;
        nodes the provider cannot measure are left out."""
        ...


@dataclass(frozen=True)
class NodeGroupSpec:
    name: str
    role: Literal["master", "worker"]
    node_count: int
    flavor: Flavor
    image_ref: str
    #: Provider node names the group should have after the operation, in order.
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterSpec:
    """Everything a COE driver needs to plan one operation on one cluster."""

    uuid: str
    name: str
    coe: str
    image_ref: str
    master: NodeGroupSpec
    worker: NodeGroupSpec
    tls_disabled: bool = False
    docker_volume_size: int | None = None
    docker_storage_driver: str | None = None
    network_driver: str | None = None
    volume_driver: str | None = None
    dns_nameserver: str | None = None
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None
    fixed_network: str | None = None
    master_lb_enabled: bool = False
    registry_enabled: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    ssh_public_key: str | None = None
    nodes_to_remove: tuple[str, ...] = ()
    #: Worker names before this operation (scale steps diff against them).
    previous_worker_names: tuple[str, ...] = ()
    project_id: str = ""


class StepContext(Protocol):
    """What a running step may use. Implemented by the conductor."""

    spec: ClusterSpec
    provider: Provider

    def progress(self, detail: str) -> None:
        """Show ``detail`` (e.g. "starting nodes (2 of 3)") in the cluster's status_reason."""
        ...

    def server_tls(
        self, cn: str, dns_names: Sequence[str], ips: Sequence[str], *, ca: str = "cluster"
    ) -> TlsMaterial:
        """A server certificate for a daemon, signed by the cluster's CA (or its CA of kind
        ``ca``, e.g. ``etcd``, made on first use)."""
        ...

    def client_tls(self) -> TlsMaterial:
        """The conductor's own client certificate for the cluster's daemons
        (``CN=flotilla-conductor, O=system:masters``: cluster-admin on Kubernetes)."""
        ...

    def client_cert(self, cn: str, organization: str | None = None, *, ca: str = "cluster") -> TlsMaterial:
        """A new client certificate ``CN=cn[, O=organization]`` signed by the cluster's CA
        (Kubernetes components: ``system:node:NAME``/``system:nodes``, ...)."""
        ...

    def derived_key(self, purpose: str) -> str:
        """A PEM private key derived for ``purpose``: the same on every call for the
        cluster's whole life, CA rotations included (a resumed step gets the same key, and
        tokens signed with it stay valid). E.g. the Kubernetes service-account signing key."""
        ...

    def trust_bundle(self, ca: str = "cluster") -> str:
        """PEM of the CAs (of kind ``ca``) the cluster trusts now: the current one, plus the
        one being replaced while a CA rotation runs (until :meth:`retire_previous_ca`)."""
        ...

    def retire_previous_ca(self) -> None:
        """End a rotation's overlap: the replaced CAs leave :meth:`trust_bundle` and
        ``client_tls().ca_pem``. Idempotent (the conductor also does it after the last
        step of every ``rotate_ca``)."""
        ...

    def load_images(self, node: NodeInfo, argv: Sequence[str]) -> int:
        """Import the images recorded for the cluster (``cluster-image-load``) into ``node``,
        each archive on the stdin of ``argv`` run on the node; returns how many were imported.
        For nodes a step adds to a running cluster, so they have the images at their boot."""
        ...

    def save_outputs(
        self,
        *,
        api_address: str | None = None,
        master_addresses: Sequence[str] | None = None,
        node_addresses: Sequence[str] | None = None,
        coe_version: str | None = None,
        container_version: str | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class Step:
    """One idempotent unit of work; the conductor checkpoints after each."""

    name: str
    run: Callable[[StepContext], None]


@dataclass(frozen=True)
class Observation:
    """A COE driver's view of a cluster's health."""

    health: Literal["HEALTHY", "UNHEALTHY", "UNKNOWN"]
    reasons: Mapping[str, str] = field(default_factory=dict)
    unhealthy_nodes: tuple[str, ...] = ()


@runtime_checkable
class CoeDriver(Protocol):
    """A container orchestration engine. After Magnum's template definitions."""

    name: str
    coes: frozenset[str]
    requires: frozenset[str]
    #: The template ``network_driver`` values the COE accepts (the guide's table for it);
    #: the first is the default a template gets when it names none.
    network_drivers: tuple[str, ...]
    #: The template ``volume_driver`` values the COE accepts (empty: "No Driver" only).
    volume_drivers: tuple[str, ...]
    #: ``/v1/certificates?ca_cert_type=`` values (Magnum's) -> the cluster CA kind serving
    #: each (``"cluster"`` is the cluster CA; e.g. ``{"etcd": "etcd"}``). Empty: only the
    #: cluster CA, which also answers for a kind a cluster does not have.
    ca_cert_types: Mapping[str, str]

    def storage_summary(self, docker_storage_driver: str | None, volume_gb: int | None) -> str | None:
        """How the nodes keep images and containers, for a finished create's status_reason
        (``"Docker storage: overlay2 on a 5 GB volume per node"``); None to say nothing.
        ``docker_storage_driver`` is the one the provider serves (None: unknown)."""
        ...

    def validate_template(self, fields: Mapping[str, object]) -> None:
        """Raise ``errors.Invalid`` for COE-specific fields/labels this driver cannot honour.

        Called twice: at template create/update with the template's writable fields
        (the *template stage*), and at cluster create/resize with ``master_count`` and
        ``node_count`` (and ``scaling``) added (the *cluster stage*); checks that need the
        node counts can only run at the cluster stage (``"node_count" in fields``).
        """
        ...

    def plan(self, kind: OpKind, spec: ClusterSpec) -> list[Step]:
        """The ordered steps for ``kind``. Must be deterministic for the same spec (resumption)."""
        ...

    def observe(self, spec: ClusterSpec, nodes: Sequence[NodeInfo], ctx: StepContext) -> Observation: ...

    def image_load_argv(self) -> Sequence[str] | None:
        """The command, run on a node, that imports an image archive (``docker save``
        format) read from stdin into what runs the users' containers; None when this COE
        cannot load images (``cluster-image-load``; the conductor also runs it on nodes
        added later)."""
        ...

    def client_config(self, request: ClientConfigRequest) -> NativeConfig:
        """The native client's configuration (files + environment) for ``cluster-config``,
        ``bay-config`` and the dashboard's bundle. Pure: callers write the files."""
        ...


@runtime_checkable
class ServiceLoadBalancing(Protocol):
    """A COE driver whose clusters ask for provider load balancers from inside (Kubernetes
    Services of ``type: LoadBalancer``). The conductor calls it periodically for every
    settled (or updating) cluster of the driver's COE; drivers without it get no calls."""

    def sync_service_load_balancers(
        self,
        spec: ClusterSpec,
        provider: Provider,
        client_tls: TlsMaterial | None,
        memo: MutableMapping[str, object],
    ) -> list[str]:
        """Bring the provider's service load balancers of the cluster to what the cluster
        asks for (create, update, delete; write the addresses back) and return what was
        done, for the log. ``memo`` is the caller's per-cluster memory for the driver, kept
        between calls (e.g. the specs applied, so unchanged balancers cost nothing); empty
        after a restart (every balancer is ensured once again: idempotent).
        Raises when the cluster cannot be reached; the next call tries again."""
        ...

    def delete_service_load_balancers(self, spec: ClusterSpec, provider: Provider) -> list[str]:
        """Remove every service load balancer of the cluster (never its API balancer);
        return their names. Idempotent."""
        ...


@dataclass(frozen=True)
class ImageExtras:
    """What a COE adds to node images built on this host (``flotilla image-build``):
    host directories copied into the image (node path -> host path) and image labels."""

    description: str
    dirs: Mapping[str, Path] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


#: A COE's contribution to locally built node images, registered as an entry point in
#: ``flotilla.node_image_extras`` (its name is the ``image-build --NAME auto|yes|no`` flag;
#: an entry point, not a driver method, so the CLI lists the flags without importing the
#: drivers). Called with ``required`` (``yes``): None when there is nothing to add (and not
#: required); raises ``errors.Invalid`` saying how to build it when required and missing.
NodeImageExtras = Callable[[bool], ImageExtras | None]


@runtime_checkable
class Upgradable(Protocol):
    """A COE driver that takes ``actions/upgrade`` (API 1.8): moving a cluster to another
    template. Drivers without this method refuse upgrades with a 400."""

    def check_upgrade(self, current: Mapping[str, object], target: Mapping[str, object]) -> None:
        """Raise ``errors.Invalid`` when a cluster cannot move from ``current`` to ``target``
        (writable template views; ``current["labels"]`` are the cluster's own labels).
        On success the ``upgrade`` operation's plan does what the move needs."""
        ...
