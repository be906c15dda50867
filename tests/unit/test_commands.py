"""Commands: the edge applies the microversion rules, each command has one validator."""

from __future__ import annotations

import dataclasses

import pytest

from flotilla.api import commands as edge
from flotilla.errors import Invalid
from flotilla.services import commands, templates
from flotilla.services.commands import CreateCluster, Resize, SetHealth, Upgrade


@pytest.mark.parametrize(
    ("view", "minor", "zero", "missing_invalid"),
    [
        ("cluster", 9, False, True),
        ("cluster", 10, True, False),
        ("bay", 10, False, True),
        ("bay", 1, False, True),
    ],
)
def test_create_cluster_microversion_rules_become_flags(
    view: commands.ClusterView, minor: int, zero: bool, missing_invalid: bool
) -> None:
    key = "cluster_template_id" if view == "cluster" else "baymodel_id"
    cmd = edge.create_cluster({key: "t"}, view, minor)
    assert (cmd.zero_nodes_allowed, cmd.missing_template_invalid) == (zero, missing_invalid)
    assert (cmd.template, cmd.master_count, cmd.node_count, cmd.create_timeout) == ("t", 1, 1, 60)


def test_a_bay_takes_its_timeout_and_ignores_cluster_only_fields() -> None:
    cmd = edge.create_cluster(
        {"baymodel_id": "m", "bay_create_timeout": 5, "master_lb_enabled": True, "node_count": 3}, "bay", 10
    )
    assert (cmd.create_timeout, cmd.master_lb_enabled, cmd.keypair, cmd.merge_labels) == (
        5,
        None,
        None,
        False,
    )
    assert cmd.node_count == 3


def test_a_cluster_keeps_its_own_fields() -> None:
    cmd = edge.create_cluster(
        {"cluster_template_id": "t", "keypair": "k", "merge_labels": True, "master_lb_enabled": False,
         "floating_ip_enabled": False, "labels": {"a": "b"}},
        "cluster", 10,
    )  # fmt: skip
    assert (cmd.keypair, cmd.merge_labels, cmd.master_lb_enabled, cmd.floating_ip_enabled) == (
        "k", True, False, False,
    )  # fmt: skip
    assert cmd.labels == {"a": "b"}


@pytest.mark.parametrize(
    ("cmd", "name", "message"),
    [
        (CreateCluster("cluster", "t"), "1bad", "should match the pattern"),
        (CreateCluster("cluster", "t", master_count=0), "ok", "master_count. Value: '0'"),
        (CreateCluster("bay", "t", node_count=0, zero_nodes_allowed=True), "ok", "node_count. Value: '0'"),
        (
            CreateCluster("cluster", "t", node_count=0, zero_nodes_allowed=False),
            "ok",
            "to zero is not supported",
        ),
        (CreateCluster("cluster", "t", node_count=-1), "ok", "node_count. Value: '-1'"),
        (CreateCluster("cluster", "t", node_count=3), "ok", "at most 3 nodes here"),
        (CreateCluster("cluster", "t", create_timeout=0), "ok", "create_timeout. Value: '0'"),
    ],
)
def test_create_cluster_validator_refuses(cmd: CreateCluster, name: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        commands.validate_create_cluster(cmd, name, max_nodes=3)


def test_create_cluster_validator_accepts_zero_workers_when_allowed() -> None:
    commands.validate_create_cluster(CreateCluster("cluster", "t", node_count=0), "ok", max_nodes=3)


def test_resize_edge_and_validator() -> None:
    cmd = edge.resize({"node_count": 0, "nodes_to_remove": ["a"], "nodegroup": "ng"}, minor=9)
    assert cmd == Resize(0, nodegroup="ng", nodes_to_remove=("a",), zero_nodes_allowed=False)
    with pytest.raises(Invalid, match="to zero is not supported"):
        commands.validate_resize(cmd)
    commands.validate_resize(dataclasses.replace(cmd, zero_nodes_allowed=True))
    with pytest.raises(Invalid, match="greater or equal to 0"):
        commands.validate_resize(Resize(-1))


@pytest.mark.parametrize(
    ("view", "minor", "zero"), [("cluster", 10, True), ("cluster", 9, False), ("bay", 20, False)]
)
def test_a_patch_becomes_an_update_command(view: commands.ClusterView, minor: int, zero: bool) -> None:
    patched = {"node_count": 2, "health_status": "HEALTHY", "health_status_reason": {"n": "ok"}}
    cmd = edge.update_cluster(patched, ["node_count"], view, minor, node_count=2)
    assert cmd.resize == Resize(2, zero_nodes_allowed=zero)
    assert cmd.health is None
    cmd = edge.update_cluster(patched, ["health_status"], view, minor, node_count=None)
    assert cmd.resize is None
    assert cmd.health == SetHealth("HEALTHY", {"n": "ok"})


def test_set_health_validator() -> None:
    commands.validate_set_health(SetHealth(None))
    with pytest.raises(Invalid, match="should be one of: HEALTHY, UNHEALTHY, UNKNOWN"):
        commands.validate_set_health(SetHealth("FINE"))


def test_upgrade_validator() -> None:
    commands.validate_upgrade(Upgrade("t"))
    with pytest.raises(Invalid, match="max_batch_size"):
        commands.validate_upgrade(Upgrade("t", max_batch_size=0))
    with pytest.raises(Invalid, match="cluster_template"):
        commands.validate_upgrade(Upgrade(""))


def test_template_fields_are_the_writable_fields() -> None:
    assert {f.name for f in dataclasses.fields(commands.TemplateFields)} == set(templates.WRITABLE)
    cmd = edge.create_template(
        {"coe": "swarm", "image_id": "i", "uuid": "u", "labels": {"a": "1"}}, "baymodel"
    )
    assert (cmd.view, cmd.uuid, cmd.fields.coe, cmd.fields.labels) == ("baymodel", "u", "swarm", {"a": "1"})
    assert cmd.fields.values()["public"] is None
    upd = edge.update_template({"coe": "swarm", "image_id": "i", "links": []}, "clustertemplate")
    assert upd.fields == commands.TemplateFields("swarm", "i")


def test_upgrade_edge() -> None:
    assert edge.upgrade({"cluster_template": "t2"}) == Upgrade("t2", 1, None)
    assert edge.upgrade({"cluster_template": "t2", "max_batch_size": 3, "nodegroup": "ng"}) == Upgrade(
        "t2", 3, "ng"
    )
