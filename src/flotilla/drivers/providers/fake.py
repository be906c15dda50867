"""An in-memory provider for tests and scale experiments (never for real clusters).

Nodes and networks are plain dicts; nothing runs. ``exec`` answers ``docker ...`` like a
node's Docker daemon in swarm mode would (``fake_docker``), anything else with a canned
success (or what ``exec_handler`` returns). Faults are injected explicitly:

* ``fail_on``: maps a key to an error message; a call raises ``InjectedFault(message)``
  when the key is the method name (``"ensure_node"``), the target's name (a node or
  network name), or ``"method:target"`` (``"exec:c1-master-0"``).
* ``delay``: seconds every call sleeps first (to model a slow backend).

Every call is appended to ``calls`` as ``(method, target)`` for assertions.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from flotilla.domain import (
    ExecResult,
    LoadBalancerInfo,
    LoadBalancerSpec,
    NetworkInfo,
    NetworkSpec,
    NodeInfo,
    NodeSpec,
    VolumeUsage,
)
from flotilla.drivers.base import CAP_CONTAINERS_AS_NODES, CAP_EXEC, CAP_LOAD_BALANCER, CAP_SIZED_VOLUMES
from flotilla.drivers.providers import addressing
from flotilla.drivers.providers.fake_docker import FakeDocker
from flotilla.errors import Conflict, FlotillaError, NotFound

#: Not ``host_reachable``: fake addresses lead nowhere, so drivers must use ``exec``.
CAPABILITIES = frozenset({CAP_CONTAINERS_AS_NODES, CAP_SIZED_VOLUMES, CAP_LOAD_BALANCER, CAP_EXEC})

ExecHandler = Callable[[NodeInfo, Sequence[str], bytes | None], ExecResult]


class InjectedFault(FlotillaError):
    """Raised by :class:`FakeProvider` for a call matched by ``fail_on``."""


class FakeProvider:
    """The :class:`~flotilla.drivers.base.Provider` contract, in memory and thread-safe.

    ``images``: image refs that exist (``None``: every image exists).
    ``capabilities``: what :meth:`capabilities` reports (default: all four).
    Keeps the same idempotency rules as real providers: ``ensure_*`` returns the
    existing object, ``delete_*`` of a missing object succeeds.
    """

    name = "fake"

    def __init__(
        self,
        *,
        fail_on: Mapping[str, str] | None = None,
        delay: float = 0.0,
        images: Iterable[str] | None = None,
        capabilities: Iterable[str] | None = None,
        exec_handler: ExecHandler | None = None,
        subnet_pool: str = "172.29.0.0/16",
        volume_capacity_gb: int | None = None,
    ) -> None:
        self.fail_on: dict[str, str] = dict(fail_on or {})
        self.delay = delay
        self.images: set[str] | None = set(images) if images is not None else None
        self._capabilities = frozenset(capabilities) if capabilities is not None else CAPABILITIES
        self.exec_handler = exec_handler
        #: What :meth:`max_volume_gb` reports (None: no limit known).
        self.volume_capacity_gb = volume_capacity_gb
        #: node name -> free bytes of its Docker volume (set by tests; others are empty).
        self.volume_free: dict[str, int] = {}
        #: node name -> {"spec", "state", "address", "files", "id", "restarts"}
        self.nodes: dict[str, dict[str, Any]] = {}
        #: network name -> {"cluster_uuid", "subnet", "gateway"}
        self.networks: dict[str, dict[str, Any]] = {}
        #: (method, target) of every call, in order.
        self.calls: list[tuple[str, str]] = []
        #: (node name, argv, stdin) of every exec.
        self.exec_log: list[tuple[str, tuple[str, ...], bytes | None]] = []
        self._subnets = ipaddress.IPv4Network(subnet_pool).subnets(new_prefix=24)
        self._lock = threading.RLock()
        self._ids = 0
        #: (network, node name) -> address promised by reserve_address to a node not created yet
        #: load balancer name -> {"spec", "address", "id", "applied"} (applied: specs applied, in order)
        self.load_balancers: dict[str, dict[str, Any]] = {}
        #: The Docker daemons the nodes "run" (``docker ...`` through exec, see fake_docker).
        self.docker = FakeDocker(self._lookup)
        self._reserved: dict[tuple[str, str], str] = {}

    # ----------------------------------------------------------------- helpers

    def _enter(self, method: str, target: str = "") -> None:
        with self._lock:
            self.calls.append((method, target))
            message = (
                self.fail_on.get(f"{method}:{target}")
                or self.fail_on.get(method)
                or (self.fail_on.get(target) if target else None)
            )
        if self.delay > 0:
            time.sleep(self.delay)
        if message is not None:
            raise InjectedFault(message)

    def _info(self, node: Mapping[str, Any]) -> NodeInfo:
        spec: NodeSpec = node["spec"]
        return NodeInfo(
            cluster_uuid=spec.cluster_uuid,
            name=spec.name,
            role=spec.role,
            address=node["address"],
            state=node["state"],
            provider_id=node["id"],
        )

    def _used(self, network: str) -> set[str]:
        used = {n["address"] for n in self.nodes.values() if n["spec"].network == network and n["address"]}
        used |= {lb["address"] for lb in self.load_balancers.values() if lb["spec"].network == network}
        return used | {a for (net, _), a in self._reserved.items() if net == network}

    def _pick(self, network: str, name: str, role: str) -> str | None:
        net = self.networks.get(network)
        if net is None:
            return None
        return addressing.pick(net["subnet"], net["gateway"], self._used(network), role)

    def _lookup(self, name: str) -> tuple[str, bool] | None:
        with self._lock:
            node = self.nodes.get(name)
            return None if node is None else (str(node["id"]), node["state"] == "running")

    # ----------------------------------------------------------------- Provider

    def capabilities(self) -> frozenset[str]:
        return self._capabilities

    def check(self) -> None:
        self._enter("check")

    def ensure_network(self, spec: NetworkSpec) -> NetworkInfo:
        """Record a network (or return the recorded one); fixed networks must exist."""
        name = spec.fixed_network or spec.name
        self._enter("ensure_network", name)
        with self._lock:
            net = self.networks.get(name)
            if spec.fixed_network:
                if net is None:
                    raise NotFound(f"fixed network {name!r} does not exist")
                return NetworkInfo(name, net["subnet"], net["gateway"], owned=False)
            if net is not None:
                if net["cluster_uuid"] != spec.cluster_uuid:
                    raise Conflict(f"network {name!r} belongs to another cluster")
                return NetworkInfo(name, net["subnet"], net["gateway"], owned=True)
            subnet = next(self._subnets)
            gateway = str(subnet.network_address + 1)
            self.networks[name] = {
                "cluster_uuid": spec.cluster_uuid,
                "subnet": str(subnet),
                "gateway": gateway,
            }
            return NetworkInfo(name, str(subnet), gateway, owned=True)

    def add_fixed_network(self, name: str, subnet: str = "192.168.200.0/24") -> None:
        """Test helper: an existing network not owned by any cluster."""
        net = ipaddress.IPv4Network(subnet)
        with self._lock:
            self.networks[name] = {
                "cluster_uuid": "",
                "subnet": str(net),
                "gateway": str(net.network_address + 1),
            }

    def delete_network(self, cluster_uuid: str, name: str) -> None:
        self._enter("delete_network", name)
        with self._lock:
            net = self.networks.get(name)
            if net is not None and net["cluster_uuid"] == cluster_uuid:
                del self.networks[name]

    def ensure_node(self, spec: NodeSpec) -> NodeInfo:
        """Create the node dict (running) or return/start the existing one.

        ``NotFound`` for an image outside ``images``; ``Conflict`` when the name is used
        by another cluster.
        """
        self._enter("ensure_node", spec.name)
        with self._lock:
            node = self.nodes.get(spec.name)
            if node is not None:
                if node["spec"].cluster_uuid != spec.cluster_uuid:
                    raise Conflict(f"node {spec.name}: the name is used by another cluster")
                node["state"] = "running"
                return self._info(node)
            if self.images is not None and spec.image_ref not in self.images:
                raise NotFound(f"node {spec.name}: image {spec.image_ref!r} does not exist")
            self._ids += 1
            node = {
                "spec": spec,
                "state": "running",
                "address": spec.ip
                or self._reserved.pop((spec.network, spec.name), None)
                or self._pick(spec.network, spec.name, spec.role),
                "files": dict(spec.files),
                "id": f"fake-{self._ids:06d}",
                "restarts": 0,
            }
            self.nodes[spec.name] = node
            return self._info(node)

    def reserve_address(self, cluster_uuid: str, network: str, name: str, role: str) -> str:
        """The node's address if it exists, else the one promised to it (lowest free)."""
        self._enter("reserve_address", name)
        with self._lock:
            node = self.nodes.get(name)
            if node is not None and node["address"]:
                return str(node["address"])
            if (network, name) not in self._reserved:
                address = self._pick(network, name, role)
                if address is None:
                    raise NotFound(f"network {network!r} does not exist")
                self._reserved[(network, name)] = address
            return self._reserved[(network, name)]

    def delete_node(self, cluster_uuid: str, name: str) -> None:
        self._enter("delete_node", name)
        with self._lock:
            for key in [k for k in self._reserved if k[1] == name]:
                del self._reserved[key]
            node = self.nodes.get(name)
            if node is None:
                return
            if node["spec"].cluster_uuid != cluster_uuid:
                raise Conflict(f"node {name}: belongs to another cluster; not deleting it")
            del self.nodes[name]

    def list_nodes(self, cluster_uuid: str | None = None) -> list[NodeInfo]:
        self._enter("list_nodes", cluster_uuid or "")
        with self._lock:
            infos = [
                self._info(n)
                for n in self.nodes.values()
                if cluster_uuid is None or n["spec"].cluster_uuid == cluster_uuid
            ]
        return sorted(infos, key=lambda n: (n.cluster_uuid, n.name))

    def ensure_load_balancer(self, spec: LoadBalancerSpec) -> LoadBalancerInfo:
        """Record the balancer (address: lowest free, ``.5`` while free); a changed spec is
        appended to its ``applied`` list, the address stays."""
        self._enter("ensure_load_balancer", spec.name)
        with self._lock:
            lb = self.load_balancers.get(spec.name)
            if lb is not None and lb["spec"].cluster_uuid != spec.cluster_uuid:
                raise Conflict(f"load balancer {spec.name}: the name is used by another cluster")
            if lb is None:
                address = self._pick(spec.network, spec.name, "lb")
                if address is None:
                    raise NotFound(f"network {spec.network!r} does not exist")
                self._ids += 1
                lb = {"spec": spec, "address": address, "id": f"fake-lb-{self._ids:06d}", "applied": [spec]}
                self.load_balancers[spec.name] = lb
            elif lb["spec"] != spec:
                lb["spec"] = spec
                lb["applied"].append(spec)
            return LoadBalancerInfo(spec.name, lb["address"], lb["id"])

    def find_load_balancer(self, cluster_uuid: str, name: str) -> LoadBalancerInfo | None:
        self._enter("find_load_balancer", name)
        with self._lock:
            lb = self.load_balancers.get(name)
            if lb is None or lb["spec"].cluster_uuid != cluster_uuid:
                return None
            return LoadBalancerInfo(name, lb["address"], lb["id"])

    def delete_load_balancer(self, cluster_uuid: str, name: str) -> None:
        self._enter("delete_load_balancer", name)
        with self._lock:
            lb = self.load_balancers.get(name)
            if lb is not None and lb["spec"].cluster_uuid == cluster_uuid:
                del self.load_balancers[name]

    def list_load_balancers(self, cluster_uuid: str) -> list[LoadBalancerInfo]:
        self._enter("list_load_balancers", cluster_uuid)
        with self._lock:
            return sorted(
                (
                    LoadBalancerInfo(name, lb["address"], lb["id"])
                    for name, lb in self.load_balancers.items()
                    if lb["spec"].cluster_uuid == cluster_uuid
                ),
                key=lambda lb: lb.name,
            )

    def exec(
        self, node: NodeInfo, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 60.0
    ) -> ExecResult:
        """Canned ``ExecResult(0, "", "")`` (or ``exec_handler``'s); a missing or
        stopped node gives return code 1 with Docker-like stderr."""
        self._enter("exec", node.name)
        with self._lock:
            self.exec_log.append((node.name, tuple(argv), stdin))
            current = self.nodes.get(node.name)
            if current is None:
                return ExecResult(1, "", f"Error: No such container: {node.name}\n")
            if current["state"] != "running":
                return ExecResult(
                    1, "", f"Error response from daemon: Container {node.name} is not running\n"
                )
            info = self._info(current)
        if self.exec_handler is not None:
            return self.exec_handler(info, argv, stdin)
        if argv[:1] == ["docker"]:
            return self.docker.run(info, argv[1:])
        return ExecResult(0, "", "")

    def put_files(self, node: NodeInfo, files: Mapping[str, bytes]) -> None:
        self._enter("put_files", node.name)
        with self._lock:
            current = self.nodes.get(node.name)
            if current is None:
                raise NotFound(f"node {node.name} does not exist")
            current["files"].update(files)

    def restart_node(self, node: NodeInfo) -> None:
        self._enter("restart_node", node.name)
        with self._lock:
            current = self.nodes.get(node.name)
            if current is None:
                raise NotFound(f"node {node.name} does not exist")
            current["state"] = "running"
            current["restarts"] += 1

    def stop_node(self, name: str) -> None:
        """Test helper: mark a node stopped (as if its main process died)."""
        with self._lock:
            self.nodes[name]["state"] = "stopped"

    def sweep(self, cluster_uuid: str) -> list[str]:
        """Forget every node and owned network of the cluster; return ``kind:name`` entries."""
        self._enter("sweep", cluster_uuid)
        removed: list[str] = []
        with self._lock:
            for name in [n for n, v in self.nodes.items() if v["spec"].cluster_uuid == cluster_uuid]:
                del self.nodes[name]
                removed.append(f"container:{name}")
            for name in [n for n, v in self.networks.items() if v["cluster_uuid"] == cluster_uuid]:
                del self.networks[name]
                removed.append(f"network:{name}")
            for name in [n for n, v in self.load_balancers.items() if v["spec"].cluster_uuid == cluster_uuid]:
                del self.load_balancers[name]
                removed.append(f"load_balancer:{name}")
            for key in [k for k in self._reserved if k[0] not in self.networks]:
                del self._reserved[key]
        return removed

    def image_exists(self, image_ref: str) -> bool:
        self._enter("image_exists", image_ref)
        return self.images is None or image_ref in self.images

    def max_volume_gb(self) -> int | None:
        self._enter("max_volume_gb")
        return self.volume_capacity_gb

    def volume_usage(self, cluster_uuid: str | None = None) -> list[VolumeUsage]:
        """Every node with ``volume_gb``: empty, unless ``volume_free`` says otherwise."""
        self._enter("volume_usage", cluster_uuid or "")
        with self._lock:
            specs: list[NodeSpec] = [v["spec"] for v in self.nodes.values()]
            return [
                VolumeUsage(s.cluster_uuid, s.name, s.volume_gb * 1024**3,
                            self.volume_free.get(s.name, s.volume_gb * 1024**3))
                for s in specs
                if s.volume_gb and (cluster_uuid is None or s.cluster_uuid == cluster_uuid)
            ]  # fmt: skip

    def leaks(self, cluster_uuid: str | None = None) -> list[str]:
        """What a real provider's leak check would report: nodes and owned networks left."""
        with self._lock:
            found = [
                f"container:{n}"
                for n, v in self.nodes.items()
                if cluster_uuid is None or v["spec"].cluster_uuid == cluster_uuid
            ]
            found += [
                f"load_balancer:{n}"
                for n, v in self.load_balancers.items()
                if cluster_uuid is None or v["spec"].cluster_uuid == cluster_uuid
            ]
            found += [
                f"network:{n}"
                for n, v in self.networks.items()
                if v["cluster_uuid"] and (cluster_uuid is None or v["cluster_uuid"] == cluster_uuid)
            ]
        return found
