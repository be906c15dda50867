"""Frozen dataclasses that cross the driver boundary.

Drivers (providers and COE drivers) receive these and return these; no ORM object
ever reaches a driver, and drivers never import ``flotilla.db`` or ``flotilla.services``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

NodeRole = Literal["master", "worker", "lb", "registry"]
NodeState = Literal["running", "stopped", "missing"]


@dataclass(frozen=True)
class NetworkSpec:
    """A cluster's private network.

    ``fixed_network``: use this existing network instead of creating one (not deleted
    with the cluster). ``dns_nameserver``: resolver the nodes should use (the local
    provider keeps nodes on an internal network and ignores it for name resolution of
    registries, see its module docstring).
    """

    cluster_uuid: str
    name: str
    fixed_network: str | None = None
    dns_nameserver: str | None = None
    #: Forward traffic between the network's nodes whatever its addresses (routed pod
    #: networks, e.g. Kubernetes host-gw); otherwise only node address to node address.
    routed: bool = False


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    subnet: str
    gateway: str
    owned: bool = True


@dataclass(frozen=True)
class NodeSpec:
    """What a node should be: the provider-neutral bootstrap spec (DESIGN §2). Providers
    create it idempotently by ``name``; the local provider renders it as a container
    (``providers/local/containers.create_body``), a cloud provider would render it as a
    server of ``flavor`` with cloud-init.

    * files: ``files``, absolute path inside the node -> content, in place before the
      node's service starts (certificates, configs, the bootstrap script).
    * service: ``command``, the node's main process with ``env`` (the COE's daemon, or a
      script that starts the COE's services; a cloud provider runs it as a unit).
    * mounts: the node's data volume, ``volume_gb`` GiB (None: unsized), mounted at
      ``volume_path`` (``/var/lib/docker`` for Docker hosts, ``/var`` for Kubernetes nodes).
    * resources: ``cpus`` and ``memory_mb`` (the flavor's; the local provider makes them
      limits), from the flavor named ``flavor`` (None: no catalog flavor, e.g. a load balancer).
    * access: ``ssh_public_key`` for ``login_user``.

    ``ip``: leave None and let the provider choose (see ``Provider.reserve_address``); a COE
    driver never derives an address from a node's name.
    """

    cluster_uuid: str
    name: str
    role: NodeRole
    image_ref: str
    network: str
    cpus: float
    memory_mb: int
    command: Sequence[str]
    volume_gb: int | None = None
    ip: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)
    ssh_public_key: str | None = None
    login_user: str = "fedora"
    labels: Mapping[str, str] = field(default_factory=dict)
    volume_path: str = "/var/lib/docker"
    flavor: str | None = None


@dataclass(frozen=True)
class NodeInfo:
    """What a node is, as the provider sees it right now."""

    cluster_uuid: str
    name: str
    role: str
    address: str | None
    state: NodeState
    provider_id: str = ""


@dataclass(frozen=True)
class VolumeUsage:
    """How full a node's Docker volume (its ``/var/lib/docker``) is, in bytes."""

    cluster_uuid: str
    node: str
    size_bytes: int
    free_bytes: int

    #: Below this much free space (or 2 % of the size, whichever is more) a volume is full:
    #: image pulls and container starts fail.
    FULL_BELOW = 64 * 1024**2

    @property
    def full(self) -> bool:
        return self.free_bytes < max(self.FULL_BELOW, self.size_bytes // 50)

    def describe(self) -> str:
        mib = 1024**2
        return f"docker volume full: {self.free_bytes // mib} MiB free of {self.size_bytes // mib} MiB"


@dataclass(frozen=True)
class Listener:
    """TCP passthrough: connections to the load balancer's ``port`` go round-robin to
    ``member_port`` (default: ``port``) of each address in ``members`` (health-checked)."""

    port: int
    members: tuple[str, ...] = ()
    member_port: int | None = None

    @property
    def backend_port(self) -> int:
        return self.member_port or self.port


@dataclass(frozen=True)
class LoadBalancerSpec:
    """A cluster's TCP load balancer (swarm managers on 2376, Kubernetes API servers on 6443).

    ``image_ref``: for providers that run the balancer on a node of their own (local:
    haproxy in a node container); cloud providers (Octavia) ignore it.
    """

    cluster_uuid: str
    name: str
    network: str
    listeners: tuple[Listener, ...] = ()
    image_ref: str | None = None


@dataclass(frozen=True)
class LoadBalancerInfo:
    name: str
    address: str | None
    provider_id: str = ""


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class Flavor:
    name: str
    vcpus: float
    ram_mb: int
    disk_gb: int = 0


@dataclass(frozen=True)
class TlsMaterial:
    """PEM texts handed to a COE driver for one node's daemon."""

    ca_pem: str
    cert_pem: str
    key_pem: str
