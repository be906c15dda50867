"""``openstack coe cluster template ...`` (python-openstackclient + python-magnumclient 5.0.0).

Authenticates with ``--os-cloud flotilla`` and the server's own clouds.yaml
(``auth_type: admin_token``), or with ``--os-auth-type admin_token`` flags for other users'
tokens (see conftest.py). OSC uses a keystoneauth session, so unlike the legacy shell's
token mode it reads JSON error bodies and prints ``<title> (HTTP <code>) (Request-ID: ...)``.

Client 5.0.0 has no ``update <op> <path=value>`` form any more: ``update`` takes options
(``--label k=v`` sends ``add /labels/k``, ``--no-label k`` sends ``remove /labels/k``,
``--name``, ``--docker-volume-size`` ... send ``replace``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # conftest.py is pytest's, not a package module: types only
    from conftest import Openstack, Result, Server

pytestmark = pytest.mark.compat

IMAGE = "fedora-atomic-latest"
# python-magnumclient 5.0.0 sends every creation key, including the `driver` field that
# Magnum added to templates in 2025 (Flotilla accepts and returns it).
REQUEST_ID = re.compile(r"\(Request-ID: req-[0-9a-f-]{36}\)")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def json_after_banner(result: Result) -> Any:
    """``create`` prints "Request to create cluster template X accepted" before the data."""
    text = result.stdout
    return json.loads(text[min(i for i in (text.find("{"), text.find("[")) if i >= 0) :])


def create_via_api(server: Server, name: str, **fields: Any) -> dict[str, Any]:
    """Set-up helper for the tests of the other commands: a swarm template made over HTTP."""
    body = {
        "name": name,
        "coe": "swarm",
        "image_id": IMAGE,
        "keypair_id": "testkey",
        "external_network_id": "public",
        "flavor_id": "m1.small",
        "docker_volume_size": 5,
        **fields,
    }
    with server.http() as http:
        r = http.post("/v1/clustertemplates", json=body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


@pytest.fixture
def template(server: Server, openstack: Openstack) -> Iterator[dict[str, Any]]:
    ct = create_via_api(server, unique("osc-swarm"), labels={"a": "b"})
    yield ct
    openstack("coe", "cluster", "template", "delete", ct["uuid"])


def test_help(openstack: Openstack) -> None:
    out = openstack("coe", "cluster", "template", "list", "--help").ok()
    assert "usage: openstack coe cluster template list" in out.stdout


def test_create_swarm_template(openstack: Openstack) -> None:
    """Client 5.0.0 sends every creation key, including ``"driver": null``."""
    name = unique("osc-create")
    created = openstack(
        "coe",
        "cluster",
        "template",
        "create",
        "--coe",
        "swarm",
        "--image",
        IMAGE,
        "--keypair",
        "testkey",
        "--external-network",
        "public",
        "--flavor",
        "m1.small",
        "--docker-volume-size",
        "5",
        "--label",
        "swarm_strategy=spread",
        name,
        "-f",
        "json",
    )
    try:
        created.ok()
        assert created.stdout.startswith(f"Request to create cluster template {name} accepted")
        ct = json_after_banner(created)
        assert ct["name"] == name
        assert ct["coe"] == "swarm"
        assert ct["image_id"] == IMAGE
        assert ct["labels"] == {"swarm_strategy": "spread"}
        assert ct["docker_volume_size"] == 5
        assert ct["docker_storage_driver"] in ("-", None, "overlay2", "devicemapper")
        assert ct["cluster_distro"] == "fedora-atomic"
        shown = openstack("coe", "cluster", "template", "show", name, "-f", "json").ok().json()
        assert shown["uuid"] == ct["uuid"]
    finally:
        openstack("coe", "cluster", "template", "delete", name)


def test_list_show_delete(openstack: Openstack, server: Server) -> None:
    ct = create_via_api(server, unique("osc-lsd"), labels={"a": "b"}, tags="t1,t2")
    name, uid = ct["name"], ct["uuid"]

    table = openstack("coe", "cluster", "template", "list").ok()
    assert uid in table.stdout and name in table.stdout

    listed = openstack("coe", "cluster", "template", "list", "-f", "json").ok().json()
    assert {"uuid": uid, "name": name, "tags": "t1,t2"} in listed
    with_fields = (
        openstack("coe", "cluster", "template", "list", "--fields", "coe,image_id", "-f", "json").ok().json()
    )
    row = next(r for r in with_fields if r["uuid"] == uid)
    assert (row["coe"], row["image_id"]) == ("swarm", IMAGE)

    one = openstack("coe", "cluster", "template", "list", "--limit", "1", "-f", "json").ok().json()
    assert len(one) == 1
    desc = (
        openstack(
            "coe", "cluster", "template", "list", "--sort-key", "name", "--sort-dir", "desc", "-f", "json"
        )
        .ok()
        .json()
    )
    assert [r["name"] for r in desc] == sorted((r["name"] for r in listed), reverse=True)

    for ident in (name, uid):
        shown = openstack("coe", "cluster", "template", "show", ident, "-f", "json").ok().json()
        assert shown["uuid"] == uid
        assert shown["name"] == name
        assert shown["coe"] == "swarm"
        assert shown["labels"] == {"a": "b"}
        assert shown["keypair_id"] == "testkey"
        assert shown["flavor_id"] == "m1.small"
        assert shown["master_flavor_id"] == "-"  # the client shows unset fields as '-'
        assert shown["project_id"] == "admin" or shown["project_id"]
        assert shown["public"] is False
        assert shown["tags"] == "t1,t2"
        assert "links" not in shown
    value = openstack("coe", "cluster", "template", "show", name, "-f", "value", "-c", "uuid").ok()
    assert value.stdout.strip() == uid

    deleted = openstack("coe", "cluster", "template", "delete", name).ok()
    assert deleted.stdout.strip() == f"Request to delete cluster template {name} has been accepted."
    gone = openstack("coe", "cluster", "template", "show", uid).failed()
    assert f"ClusterTemplate {uid} could not be found (HTTP 404)" in gone.stderr
    assert REQUEST_ID.search(gone.stderr)
    assert uid not in openstack("coe", "cluster", "template", "list").ok().stdout


def test_update(openstack: Openstack, template: dict[str, Any]) -> None:
    uid = template["uuid"]
    ct = (
        openstack(
            "coe", "cluster", "template", "update", uid, "--label", "c=d", "--label", "e=f", "-f", "json"
        )
        .ok()
        .json()
    )
    assert ct["labels"] == {"a": "b", "c": "d", "e": "f"}
    ct = openstack("coe", "cluster", "template", "update", uid, "--no-label", "a", "-f", "json").ok().json()
    assert ct["labels"] == {"c": "d", "e": "f"}

    new_name = unique("osc-renamed")
    ct = (
        openstack(
            "coe",
            "cluster",
            "template",
            "update",
            uid,
            "--name",
            new_name,
            "--docker-volume-size",
            "7",
            "--flavor",
            "m1.medium",
            "--tls-disabled",
            "--master-lb-enabled",
            "-f",
            "json",
        )
        .ok()
        .json()
    )
    assert ct["name"] == new_name
    assert ct["docker_volume_size"] == 7
    assert ct["flavor_id"] == "m1.medium"
    assert ct["tls_disabled"] is True
    assert ct["master_lb_enabled"] is True
    assert ct["updated_at"] not in (None, "-")

    shown = openstack("coe", "cluster", "template", "show", new_name, "-f", "json").ok().json()
    assert shown["labels"] == {"c": "d", "e": "f"}
    assert shown["docker_volume_size"] == 7


def test_bad_update(openstack: Openstack, template: dict[str, Any]) -> None:
    uid = template["uuid"]
    bad = openstack("coe", "cluster", "template", "update", uid, "--flavor", "m9.huge").failed()
    assert "Unable to find flavor m9 (HTTP 400)" in bad.stderr
    assert REQUEST_ID.search(bad.stderr)

    bad = openstack("coe", "cluster", "template", "update", uid, "--external-network", "nonet").failed()
    assert "Unable to find external network nonet (HTTP 400)" in bad.stderr

    shown = openstack("coe", "cluster", "template", "show", uid, "-f", "json").ok().json()
    assert shown["flavor_id"] == "m1.small"
    assert shown["external_network_id"] == "public"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--coe", "foo"], "coe", id="unknown-coe"),
        pytest.param(
            ["--coe", "swarm", "--flavor", "m9.huge"], "Unable to find flavor m9 (HTTP 400)", id="flavor"
        ),
        pytest.param(
            ["--coe", "swarm", "--docker-storage-driver", "devicemapper"],
            "docker volume size None GB is not valid, expecting minimum value 3GB for devicemapper storage driver "
            "(HTTP 400)",
            id="devicemapper-without-volume",
        ),
    ],
)
def test_bad_create(openstack: Openstack, args: list[str], message: str) -> None:
    name = unique("osc-bad")
    base = ["--image", IMAGE, "--external-network", "public"]
    bad = openstack("coe", "cluster", "template", "create", *base, *args, name).failed()
    assert message.lower() in bad.stderr.lower()
    assert "(HTTP 400)" in bad.stderr
    assert name not in openstack("coe", "cluster", "template", "list").ok().stdout


def test_missing_template(openstack: Openstack) -> None:
    gone = openstack("coe", "cluster", "template", "show", "no-such-template").failed()
    assert "ClusterTemplate no-such-template could not be found (HTTP 404)" in gone.stderr
    # delete reports per item and exits 0 (client behaviour)
    out = openstack("coe", "cluster", "template", "delete", "no-such-template")
    assert out.returncode == 0, out
    assert "Delete for cluster template no-such-template failed" in out.stdout


def test_other_users(openstack: Openstack, server: Server) -> None:
    """Tokens of other users through ``--os-auth-type admin_token`` flags, no clouds.yaml."""
    member = server.token_create("osc-p", "olga", "member")
    reader = server.token_create("osc-p", "rob", "reader")
    stranger = server.token_create("osc-q", "sam", "member")
    with server.http(member) as http:
        r = http.post(
            "/v1/clustertemplates",
            json={
                "name": unique("osc-member"),
                "coe": "swarm",
                "image_id": IMAGE,
                "external_network_id": "public",
            },
        )
    assert r.status_code == 201, r.text
    ct = r.json()
    try:
        mine = (
            openstack("coe", "cluster", "template", "show", ct["uuid"], "-f", "json", token=reader)
            .ok()
            .json()
        )
        assert mine["project_id"] == "osc-p"
        assert ct["uuid"] not in openstack("coe", "cluster", "template", "list", token=stranger).ok().stdout
        denied = openstack(
            "coe", "cluster", "template", "update", ct["uuid"], "--name", "x", token=reader
        ).failed()
        assert "(HTTP 403)" in denied.stderr
        bad = openstack("coe", "cluster", "template", "list", token="not-a-token").failed()
        assert "(HTTP 401)" in bad.stderr
    finally:
        openstack("coe", "cluster", "template", "delete", ct["uuid"], token=member).ok()
