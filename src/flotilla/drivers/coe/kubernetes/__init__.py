"""The ``kubernetes`` COE (the user guide's main one).

This module holds the driver's entry point class. Template validation lives in
``template.py``, labels/constants and the built version in ``labels.py``, the
client configuration (a kubeconfig) in ``client.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from flotilla.domain import NodeInfo
from flotilla.drivers.base import (
    CAP_CONTAINERS_AS_NODES,
    CAP_EXEC,
    ClusterSpec,
    Observation,
    OpKind,
    Step,
    StepContext,
)
from flotilla.drivers.coe.kubernetes import client, labels
from flotilla.drivers.coe.kubernetes.template import validate_template
from flotilla.drivers.coe.native import ClientConfigRequest, NativeConfig
from flotilla.errors import Invalid

#: Import an image archive read from stdin into containerd's namespace for Kubernetes (the
#: kubelet's), every platform in it, so pods find it without pulling.
IMAGE_LOAD_ARGV: tuple[str, ...] = ("ctr", "-n", "k8s.io", "images", "import", "--all-platforms", "-")


class KubernetesCoe:
    name = "kubernetes"
    coes = frozenset({"kubernetes"})
    requires = frozenset({CAP_CONTAINERS_AS_NODES, CAP_EXEC})

    def validate_template(self, fields: Mapping[str, object]) -> None:
        build = labels.read_build()
        validate_template(fields, built_version=build.version, not_built_reason=build.reason)

    def plan(self, kind: OpKind, spec: ClusterSpec) -> list[Step]:
        if kind == "delete":
            return []
        raise Invalid("Kubernetes cluster operations are not built yet in this version of Flotilla.")

    def observe(self, spec: ClusterSpec, nodes: Sequence[NodeInfo], ctx: StepContext) -> Observation:
        return Observation("UNKNOWN", {"api": "Kubernetes health checks are not built yet"})

    def image_load_argv(self) -> Sequence[str] | None:
        return IMAGE_LOAD_ARGV

    def client_config(self, request: ClientConfigRequest) -> NativeConfig:
        return client.client_config(request)
