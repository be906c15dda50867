"""The ``docker`` COE: the guide's sample driver. One node running a Docker daemon,
reachable with the plain ``docker`` CLI at ``tcp://IP:2376`` over TLS (2375 without)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from flotilla.domain import NodeInfo
from flotilla.drivers.base import CAP_CONTAINERS_AS_NODES, ClusterSpec, Observation, OpKind, Step, StepContext
from flotilla.drivers.coe import dockerapi, dockerhost, native
from flotilla.drivers.coe.native import ClientConfigRequest, NativeConfig
from flotilla.errors import Invalid


class DockerCoe:
    name = "docker"
    coes = frozenset({"docker"})
    requires = frozenset({CAP_CONTAINERS_AS_NODES})
    network_drivers = ("docker",)
    volume_drivers: tuple[str, ...] = ()
    ca_cert_types: Mapping[str, str] = {}

    def storage_summary(self, docker_storage_driver: str | None, volume_gb: int | None) -> str | None:
        return dockerhost.storage_summary(docker_storage_driver, volume_gb)

    def validate_template(self, fields: Mapping[str, object]) -> None:
        if fields.get("scaling"):
            raise Invalid(
                "The docker COE runs a single Docker host; it cannot be scaled. Use a swarm cluster."
            )
        masters = fields.get("master_count", 1)
        nodes = fields.get("node_count", 1)
        if masters != 1 or nodes not in (0, 1):
            raise Invalid(
                f"The docker COE runs a single Docker host: master_count and node_count must be 1 "
                f"(got master_count={masters}, node_count={nodes})."
            )
        check_local_storage(fields)

    def plan(self, kind: OpKind, spec: ClusterSpec) -> list[Step]:
        if kind == "create":
            return [
                Step("creating network", _network),
                Step("starting node", _start),
                Step("waiting for Docker", _wait),
            ]
        if kind == "delete":
            return [Step("removing nodes and network", dockerhost.delete_everything)]
        if kind == "rotate_ca":
            return [Step("installing new certificates", _reinstall_certs), Step("waiting for Docker", _wait)]
        return []

    def observe(self, spec: ClusterSpec, nodes: Sequence[NodeInfo], ctx: StepContext) -> Observation:
        mine = [n for n in nodes if n.cluster_uuid == spec.uuid]
        if not mine:
            return Observation("UNHEALTHY", {"node": "missing"})
        node = mine[0]
        if node.state != "running" or node.address is None:
            return Observation("UNHEALTHY", {node.name: f"node {node.state}"}, (node.name,))
        tls = None if spec.tls_disabled else ctx.client_tls()
        try:
            dockerapi.version(dockerhost.api_address(spec, node.address), tls, timeout=3)
        except Exception as exc:
            return Observation("UNHEALTHY", {node.name: f"daemon not answering: {exc}"}, (node.name,))
        return Observation("HEALTHY", {node.name: "ok"})

    def image_load_argv(self) -> Sequence[str] | None:
        return ("docker", "load")

    def client_config(self, request: ClientConfigRequest) -> NativeConfig:
        return native.docker_config(request)


def check_local_storage(fields: Mapping[str, object]) -> None:
    """What the local provider can honour of the guide's storage/network options.

    docker_storage_driver devicemapper (the guide's default) is served as overlay2 on the
    node's dedicated sized volume (``dockerhost.STORAGE_DRIVERS``), not refused."""
    if fields.get("volume_driver") == "rexray":
        raise Invalid(
            "volume_driver rexray needs Cinder and is not available on the local provider; leave it unset."
        )


def _network(ctx: StepContext) -> None:
    dockerhost.ensure_network(ctx)


def _node_name(spec: ClusterSpec) -> str:
    return spec.master.names[0]


def _start(ctx: StepContext) -> None:
    net = dockerhost.ensure_network(ctx)
    dockerhost.start_node(ctx, net, ctx.spec.master, _node_name(ctx.spec))


def _address(ctx: StepContext) -> str:
    node = dockerhost.find_node(ctx, _node_name(ctx.spec))
    if not node.address:
        raise RuntimeError(f"node {node.name} has no address ({node.state})")
    return node.address


def _wait(ctx: StepContext) -> None:
    spec = ctx.spec
    ip = _address(ctx)
    version = dockerhost.wait_daemon(ctx, _node_name(spec), ip)
    ctx.save_outputs(
        api_address=dockerhost.api_address(spec, ip), master_addresses=[ip], node_addresses=[ip],
        coe_version=version, container_version=version,
    )  # fmt: skip


def _reinstall_certs(ctx: StepContext) -> None:
    spec = ctx.spec
    net = dockerhost.ensure_network(ctx)
    name = _node_name(spec)
    node = dockerhost.find_node(ctx, name)
    ctx.provider.put_files(node, dockerhost.tls_files(ctx, name, [_address(ctx)], net))
    ctx.provider.restart_node(node)
