"""The ``kubernetes`` COE on container nodes: masters run etcd, kube-apiserver,
kube-controller-manager and kube-scheduler (and a kubelet, tainted NoSchedule so they
host no users' pods); every node runs containerd, kubelet, kube-proxy (iptables mode)
and flanneld (kube subnet manager, vxlan by default). Binaries come from the node
image (``/opt/flotilla/kube``, put there by ``flotilla image-build`` from the build
cache); TLS everywhere from the cluster's CA held by Flotilla."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence

from flotilla.domain import NodeInfo, TlsMaterial
from flotilla.drivers.base import (
    CAP_CONTAINERS_AS_NODES,
    CAP_EXEC,
    CAP_HOST_REACHABLE,
    ClusterSpec,
    Observation,
    OpKind,
    Provider,
    Step,
    StepContext,
)
from flotilla.drivers.coe.kubernetes import apilb, client, health, labels, repair, rotation, service_lb, steps
from flotilla.drivers.coe.kubernetes.kubeapi import KubeApi
from flotilla.drivers.coe.kubernetes.template import NETWORK_DRIVERS, check_upgrade, validate_template
from flotilla.drivers.coe.native import ClientConfigRequest, NativeConfig

#: Import an image archive read from stdin into containerd's namespace for Kubernetes (the
#: kubelet's), every platform in it, so pods find it without pulling.
IMAGE_LOAD_ARGV: tuple[str, ...] = ("ctr", "-n", "k8s.io", "images", "import", "--all-platforms", "-")


class KubernetesCoe:
    name = "kubernetes"
    coes = frozenset({"kubernetes"})
    requires = frozenset({CAP_CONTAINERS_AS_NODES, CAP_EXEC})
    network_drivers = NETWORK_DRIVERS
    volume_drivers = ("cinder",)
    #: Magnum's ca_cert_type values; the cluster CA serves ``kubernetes``.
    ca_cert_types: Mapping[str, str] = {
        "kubernetes": "cluster", "etcd": "etcd", "front_proxy": "front-proxy", "front-proxy": "front-proxy",
    }  # fmt: skip

    def storage_summary(self, docker_storage_driver: str | None, volume_gb: int | None) -> str | None:
        # No Docker on Kubernetes nodes: containerd keeps images and containers on the node's /var.
        where = f" on a {volume_gb} GB volume per node" if volume_gb else " on each node's /var volume"
        return f"container storage: containerd's overlayfs snapshotter{where}"

    def validate_template(self, fields: Mapping[str, object]) -> None:
        # docker_storage_driver (Magnum's default: devicemapper) does not apply: the nodes'
        # containerd stores images with its overlayfs snapshotter on the node's volume.
        build = labels.read_build()
        validate_template(fields, built_version=build.version, not_built_reason=build.reason)

    def check_upgrade(self, current: Mapping[str, object], target: Mapping[str, object]) -> None:
        build = labels.read_build()
        check_upgrade(current, target, built_version=build.version, not_built_reason=build.reason)

    def plan(self, kind: OpKind, spec: ClusterSpec) -> list[Step]:
        if kind == "create":
            return [
                Step("creating network", steps.network),
                Step("starting nodes", steps.start_all),
                Step("waiting for the API server", steps.wait_api),
                Step("installing cluster add-ons", steps.install_addons),
                Step("waiting for kubelets", steps.wait_nodes),
            ]
        if kind == "update":  # reconcile: each step diffs the desired workers against what runs
            return [
                Step("draining and removing workers", steps.remove_workers),
                Step("starting new workers", steps.add_workers),
                Step("waiting for kubelets", steps.wait_nodes_after_update),
            ]
        if kind == "delete":
            return [Step("removing nodes and network", steps.delete_everything)]
        if kind == "upgrade":  # only to the version running (check_upgrade): nothing to change
            return []
        if kind == "repair":  # a master of an HA control plane (workers: "update")
            return repair.plan(spec)
        if kind == "rotate_ca":  # phases: rotation.py (the conductor makes the new CA first)
            return [
                Step("rotation 1/3: trusting old and new CA", rotation.trust_both),
                Step("rotation 2/3: certificates from the new CA", rotation.reissue),
                Step("rotation 3/3: trusting the new CA only", rotation.trust_new_only),
                Step("waiting for kubelets", steps.wait_nodes),
            ]
        return []

    def observe(self, spec: ClusterSpec, nodes: Sequence[NodeInfo], ctx: StepContext) -> Observation:
        return health.observe(spec, nodes, ctx)

    def image_load_argv(self) -> Sequence[str] | None:
        return IMAGE_LOAD_ARGV

    def client_config(self, request: ClientConfigRequest) -> NativeConfig:
        return client.client_config(request)

    def sync_service_load_balancers(
        self,
        spec: ClusterSpec,
        provider: Provider,
        client_tls: TlsMaterial | None,
        memo: MutableMapping[str, object],
    ) -> list[str]:
        """Services of type LoadBalancer get provider balancers (``service_lb.py``). Nothing
        where the conductor cannot reach the nodes' addresses (the fake provider's nodes run no
        API server)."""
        if CAP_HOST_REACHABLE not in provider.capabilities():
            return []
        nodes = provider.list_nodes(spec.uuid)
        # A running master's own API server: the balancer in front of several is not needed
        # for a controller that runs next to the cluster network.
        urls = list(apilb.master_urls(spec, {n.name: n for n in nodes}).values())
        if not urls:
            raise RuntimeError("no master is running")
        with KubeApi(urls[0], client_tls, timeout=3.0) as api:
            return service_lb.reconcile(spec, provider, api, memo, nodes)

    def delete_service_load_balancers(self, spec: ClusterSpec, provider: Provider) -> list[str]:
        return service_lb.delete_all(spec, provider)
