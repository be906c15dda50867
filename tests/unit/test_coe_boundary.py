"""The COE boundary: what differs per COE comes from the COE driver, so a new COE is a new
package plus an entry point, with no edits in services/, conductor/, api/, cli/ or web/."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

import flotilla
from flotilla.domain import NodeInfo
from flotilla.drivers.base import ClusterSpec, CoeDriver, Observation, OpKind, Step, StepContext
from flotilla.drivers.coe.native import ClientConfigRequest, NativeConfig
from flotilla.drivers.registry import installed_coe_drivers
from flotilla.errors import Invalid
from flotilla.services import certificates, template_rules

SRC = Path(flotilla.__file__).parent
OUTSIDE_DRIVERS = ("services", "conductor", "api", "cli", "web")
#: String constants equal to a COE name that are not a switch on the COE: the row of
#: Magnum's table for mesos (no driver serves it; "docker" there is its network driver) and
#: the owned dockerd's directory name.
ALLOWED = {
    ("services/template_rules.py", "mesos"),
    ("services/template_rules.py", "docker"),
    ("cli/server.py", "docker"),
}


def _coe_names() -> set[str]:
    names = {coe for d in installed_coe_drivers() for coe in d.coes}
    return names | {d.name for d in installed_coe_drivers()} | set(template_rules.UNSERVED_COES)


def test_no_coe_name_is_spelled_outside_the_drivers() -> None:
    names = _coe_names()
    assert {"kubernetes", "swarm", "swarm-mode", "docker", "mesos"} <= names
    found = []
    for pkg in OUTSIDE_DRIVERS:
        for path in sorted((SRC / pkg).rglob("*.py")):
            rel = str(path.relative_to(SRC))
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                    if (rel, node.value) not in ALLOWED:
                        found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert found == [], "COE switches outside drivers/ (declare it on the COE driver instead)"


def test_template_choices_are_the_guides_table_from_the_drivers() -> None:
    choices = template_rules.coe_choices()
    assert choices == {
        "docker": template_rules.CoeChoices(("docker",), ()),
        "kubernetes": template_rules.CoeChoices(("flannel",), ("cinder",)),
        "mesos": template_rules.CoeChoices(("docker",), ("rexray",)),
        "swarm": template_rules.CoeChoices(("docker", "flannel"), ("rexray",)),
        "swarm-mode": template_rules.CoeChoices(("docker", "flannel"), ("rexray",)),
    }
    assert template_rules.default_network_driver("swarm") == "docker"
    with pytest.raises(Invalid, match="Supported network drivers: flannel"):
        template_rules.check_network_driver("kubernetes", "docker")
    with pytest.raises(Invalid, match="Supported volume drivers: none"):
        template_rules.check_volume_driver("docker", "rexray")
    with pytest.raises(Invalid, match="Supported COE types: docker, kubernetes, mesos, swarm, swarm-mode"):
        template_rules.check_coe("nomad")


class _Nomad:
    """A COE no file outside its own package knows about."""

    name = "nomad"
    coes = frozenset({"nomad"})
    requires: frozenset[str] = frozenset()
    network_drivers = ("cni", "bridge")
    volume_drivers = ("csi",)
    ca_cert_types: Mapping[str, str] = {"nomad-server": "server"}

    def storage_summary(self, docker_storage_driver: str | None, volume_gb: int | None) -> str | None:
        return f"nomad storage {volume_gb}"

    def validate_template(self, fields: Mapping[str, object]) -> None:
        return None

    def plan(self, kind: OpKind, spec: ClusterSpec) -> list[Step]:
        return []

    def observe(self, spec: ClusterSpec, nodes: Sequence[NodeInfo], ctx: StepContext) -> Observation:
        return Observation("UNKNOWN")

    def image_load_argv(self) -> Sequence[str] | None:
        return None

    def client_config(self, request: ClientConfigRequest) -> NativeConfig:
        raise NotImplementedError


def test_a_new_driver_brings_its_template_choices_and_ca_types(monkeypatch: pytest.MonkeyPatch) -> None:
    nomad = _Nomad()
    assert isinstance(nomad, CoeDriver)
    with_nomad = (*installed_coe_drivers(), nomad)
    monkeypatch.setattr(template_rules, "installed_coe_drivers", lambda: with_nomad)
    monkeypatch.setattr(certificates, "installed_coe_drivers", lambda: with_nomad)
    template_rules.check_coe("nomad")
    assert template_rules.default_network_driver("nomad") == "cni"
    template_rules.check_volume_driver("nomad", "csi")
    with pytest.raises(Invalid, match="Supported network drivers: cni, bridge"):
        template_rules.check_network_driver("nomad", "flannel")
    assert certificates.ca_kind("nomad-server") == "server"


def test_ca_cert_types_come_from_the_drivers() -> None:
    assert certificates.ca_kind(None) == certificates.CLUSTER
    assert certificates.ca_kind("") == certificates.CLUSTER
    assert certificates.ca_kind("kubernetes") == certificates.CLUSTER
    assert certificates.ca_kind("etcd") == "etcd"
    assert certificates.ca_kind("front_proxy") == certificates.ca_kind("front-proxy") == "front-proxy"
    with pytest.raises(Invalid, match="Invalid ca_cert_type bogus; expected one of etcd, front-proxy"):
        certificates.ca_kind("bogus")


def test_storage_summaries_say_what_each_coe_runs() -> None:
    by_coe = {coe: d for d in installed_coe_drivers() for coe in d.coes}
    assert (
        by_coe["swarm"].storage_summary("overlay2", 5) == "Docker storage: overlay2 on a 5 GB volume per node"
    )
    assert by_coe["docker"].storage_summary("overlay2", None) == "Docker storage: overlay2"
    assert by_coe["docker"].storage_summary(None, None) is None
    assert by_coe["kubernetes"].storage_summary("overlay2", None) == (
        "container storage: containerd's overlayfs snapshotter on each node's /var volume"
    )


def test_image_build_flags_come_from_the_node_image_extras_entry_points() -> None:
    from flotilla.cli.main import build_parser
    from flotilla.drivers.registry import node_image_extras

    assert sorted(node_image_extras()) == ["kubernetes"]
    args = build_parser().parse_args(["image-build", "img", "--os-distro", "debian", "--kubernetes", "no"])
    assert args.coe_extras_kubernetes == "no"
    hook = node_image_extras()["kubernetes"].load()
    found = hook(False)  # None when the binaries are not built on this host
    assert found is None or ("/opt/flotilla/kube" in found.dirs and "flotilla.kube.version" in found.labels)
