"""Cluster templates and baymodels: fields, defaults, validation, lookup, PATCH, in-use rules (§5, §6)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flotilla.db import models as m

Auth = Callable[..., dict[str, str]]
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

#: Every field of reference §6.1, as a cluster template shows it.
TEMPLATE_KEYS = {
    "uuid", "name", "coe", "image_id", "keypair_id", "flavor_id", "master_flavor_id", "dns_nameserver",
    "external_network_id", "fixed_network", "fixed_subnet", "network_driver", "volume_driver",
    "apiserver_port", "docker_volume_size", "docker_storage_driver", "cluster_distro", "http_proxy",
    "https_proxy", "no_proxy", "registry_enabled", "insecure_registry", "labels", "tls_disabled", "public",
    "hidden", "server_type", "master_lb_enabled", "floating_ip_enabled", "tags", "project_id", "user_id",
    "links", "created_at", "updated_at", "driver",
}  # fmt: skip
BAYMODEL_KEYS = TEMPLATE_KEYS - {"project_id", "user_id"}

FULL: dict[str, Any] = {
    "name": "full",
    "coe": "kubernetes",
    "image_id": "flotilla-node",
    "keypair_id": "testkey",
    "flavor_id": "m1.small",
    "master_flavor_id": "m1.medium",
    "dns_nameserver": "8.8.8.8,1.1.1.1",
    "external_network_id": "public",
    "fixed_network": "private-net",
    "fixed_subnet": "private-subnet",
    "network_driver": "flannel",
    # no COE on the local provider serves a volume driver (cinder, rexray): refusals are tested below
    "volume_driver": None,
    "apiserver_port": 6443,
    "docker_volume_size": 10,
    "docker_storage_driver": "overlay2",
    "http_proxy": "http://proxy:3128",
    "https_proxy": "https://proxy:3129",
    "no_proxy": "localhost,127.0.0.1",
    "registry_enabled": True,
    "insecure_registry": "registry.local:5000",
    "labels": {"flannel_backend": "vxlan", "answer": 42, "enabled": True, "ratio": 0.5},
    "tls_disabled": True,
    "server_type": "vm",
    "master_lb_enabled": True,
    "floating_ip_enabled": False,
    "tags": "blue,green",
}


@pytest.fixture(autouse=True)
def image(register_image: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return register_image("flotilla-node", "debian")


def create(
    api: TestClient, headers: dict[str, str], *, path: str = "/v1/clustertemplates", **fields: Any
) -> httpx.Response:
    body: dict[str, Any] = {"coe": "swarm", "image_id": "flotilla-node"}
    if path.endswith("baymodels"):
        body["keypair_id"] = "testkey"
    body.update(fields)
    for key in [k for k, v in body.items() if v is ...]:  # `key=...` leaves the key out
        del body[key]
    return api.post(path, json=body, headers=headers)


def made(api: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    r = create(api, headers, **fields)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def detail(r: httpx.Response, status: int = 400) -> str:
    assert r.status_code == status, r.text
    msg: str = r.json()["errors"][0]["detail"]
    return msg


def patch(
    api: TestClient, headers: dict[str, str], ident: str, ops: Any, *, coll: str = "clustertemplates"
) -> httpx.Response:
    return api.patch(f"/v1/{coll}/{ident}", json=ops, headers=headers)


# ---- create: fields and defaults -----------------------------------------------------------


def test_create_with_every_field(api: TestClient, auth: Auth) -> None:
    # fixed_network must name a network an admin registered (tests/api/test_hardening.py)
    r = api.post("/local/v1/networks", json={"name": "private-net"}, headers=auth("admin"))
    assert r.status_code == 201, r.text
    r = create(api, auth("p1_member"), **FULL)
    assert r.status_code == 201, r.text
    t = r.json()
    assert set(t) == TEMPLATE_KEYS
    for key, value in FULL.items():
        if key != "labels":
            assert t[key] == value, key
    assert t["labels"] == {"flannel_backend": "vxlan", "answer": "42", "enabled": "True", "ratio": "0.5"}
    assert re.fullmatch(UUID_RE, t["uuid"])
    assert t["cluster_distro"] == "debian"  # from the image's os_distro
    assert (t["project_id"], t["user_id"]) == ("p1", "alice")
    assert (t["public"], t["hidden"]) == (False, False)
    assert t["links"] == [
        {"href": f"http://testserver/v1/clustertemplates/{t['uuid']}", "rel": "self"},
        {"href": f"http://testserver/clustertemplates/{t['uuid']}", "rel": "bookmark"},
    ]
    assert r.headers["location"] == f"http://testserver/v1/clustertemplates/{t['uuid']}"
    assert datetime.fromisoformat(t["created_at"]).utcoffset() is not None
    assert t["updated_at"] is None
    # show, list and detail give the same object
    h = auth("p1_member")
    assert api.get(f"/v1/clustertemplates/{t['uuid']}", headers=h).json() == t
    assert api.get("/v1/clustertemplates", headers=h).json() == {"clustertemplates": [t]}
    assert api.get("/v1/clustertemplates/detail", headers=h).json() == {"clustertemplates": [t]}


def test_minimal_create_shows_every_field_with_nulls_and_defaults(api: TestClient, auth: Auth) -> None:
    t = made(api, auth("p1_member"), coe="kubernetes")
    assert set(t) == TEMPLATE_KEYS
    for key in (
        "keypair_id", "flavor_id", "master_flavor_id", "dns_nameserver", "external_network_id", "fixed_network",
        "fixed_subnet", "volume_driver", "apiserver_port", "docker_volume_size", "docker_storage_driver",
        "http_proxy", "https_proxy", "no_proxy", "insecure_registry", "tags", "updated_at", "driver",
    ):  # fmt: skip
        assert t[key] is None, key
    assert t["network_driver"] == "flannel"
    assert t["server_type"] == "vm"
    assert t["registry_enabled"] is False
    assert t["tls_disabled"] is False
    assert t["public"] is False
    assert t["hidden"] is False
    assert t["master_lb_enabled"] is False
    assert t["floating_ip_enabled"] is True
    assert t["labels"] == {}


@pytest.mark.parametrize(
    ("coe", "driver"), [("kubernetes", "flannel"), ("swarm", "docker"), ("swarm-mode", "docker")]
)
def test_default_network_driver_per_coe(api: TestClient, auth: Auth, coe: str, driver: str) -> None:
    assert made(api, auth("p1_member"), coe=coe)["network_driver"] == driver


def test_client_uuid_is_honoured(api: TestClient, auth: Auth) -> None:
    uuid = "7a0c5a0e-6f5e-4a53-9b38-1f3d1b0c6a11"
    t = made(api, auth("p1_member"), uuid=uuid)
    assert t["uuid"] == uuid
    assert api.get(f"/v1/clustertemplates/{uuid}", headers=auth("p1_member")).json()["uuid"] == uuid


def test_bad_client_uuid(api: TestClient, auth: Auth) -> None:
    r = create(api, auth("p1_member"), uuid="not-a-uuid")
    assert detail(r) == "Invalid input for field/attribute uuid. Value: 'not-a-uuid'. Expected a UUID."


def test_client_cluster_distro_is_overwritten(api: TestClient, auth: Auth) -> None:
    assert made(api, auth("p1_member"), cluster_distro="fedora-atomic")["cluster_distro"] == "debian"


def test_generated_names(api: TestClient, auth: Auth) -> None:
    t = made(api, auth("p1_member"))
    assert re.fullmatch(r"[a-z]+-([1-9]|1[0-9]|2[0-4])-template", t["name"]), t["name"]
    b = create(api, auth("p1_member"), path="/v1/baymodels")
    assert b.status_code == 201, b.text
    assert re.fullmatch(r"[a-z]+-([1-9]|1[0-9]|2[0-4])-model", b.json()["name"]), b.json()["name"]


def test_labels_are_stored_as_strings(api: TestClient, auth: Auth) -> None:
    t = made(api, auth("p1_member"), labels={"n": 1, "t": True, "f": False, "s": "x", "fl": 2.5})
    assert t["labels"] == {"n": "1", "t": "True", "f": "False", "s": "x", "fl": "2.5"}
    again = api.get(f"/v1/baymodels/{t['uuid']}", headers=auth("p1_member")).json()
    assert again["labels"] == t["labels"]


@pytest.mark.parametrize("value", [{"nested": "x"}, ["x"], None])
def test_label_values_must_be_scalars(api: TestClient, auth: Auth, value: Any) -> None:
    r = create(api, auth("p1_member"), labels={"k": value})
    assert r.status_code == 400
    assert "Label k must be a string, number or boolean" in detail(r)


def test_labels_must_be_an_object(api: TestClient, auth: Auth) -> None:
    r = create(api, auth("p1_member"), labels="a=b")
    assert detail(r) == (
        "Invalid input for field/attribute labels. Value: 'a=b'. Wrong type. Expected an object of key=value pairs."
    )


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("apiserver_port", 80, "Value should be greater or equal to 1024"),
        ("apiserver_port", 70000, "Value should be lower or equal to 65535"),
        ("apiserver_port", "6443", "Wrong type. Expected an integer."),
        ("docker_volume_size", 0, "Value should be greater or equal to 1"),
        ("tls_disabled", "maybe", "Wrong type. Expected a boolean (true/false)."),
        ("name", "", "Value should have a minimum character requirement of 1"),
        ("image_id", "x" * 256, "Value should have a maximum character requirement of 255"),
        ("flavor_id", ["m1.small"], "Wrong type. Expected a string."),
    ],
)
def test_field_types(api: TestClient, auth: Auth, field: str, value: Any, reason: str) -> None:
    r = create(api, auth("p1_member"), **{field: value})
    assert detail(r) == f"Invalid input for field/attribute {field}. Value: '{value}'. {reason}"


@pytest.mark.parametrize(("value", "expected"), [("yes", True), ("off", False), (1, True), ("True", True)])
def test_booleans_accept_magnums_spellings(api: TestClient, auth: Auth, value: Any, expected: bool) -> None:
    assert made(api, auth("p1_member"), tls_disabled=value)["tls_disabled"] is expected


@pytest.mark.parametrize("field", ["coe", "image_id"])
def test_mandatory_fields(api: TestClient, auth: Auth, field: str) -> None:
    r = create(api, auth("p1_member"), **{field: ...})
    assert detail(r) == f"Invalid input for field/attribute {field}. Value: 'None'. Mandatory field missing."
    r = create(api, auth("p1_member"), **{field: None})
    assert detail(r) == f"Invalid input for field/attribute {field}. Value: 'None'. Mandatory field missing."


def test_unsupported_coe(api: TestClient, auth: Auth) -> None:
    r = create(api, auth("p1_member"), coe="nomad")
    assert detail(r).startswith("Requested COE type nomad is not supported.")
    assert "kubernetes" in detail(r) and "swarm" in detail(r)


def test_server_type(api: TestClient, auth: Auth) -> None:
    assert made(api, auth("p1_member"), server_type="bm")["server_type"] == "bm"
    r = create(api, auth("p1_member"), server_type="container")
    assert (
        detail(r)
        == "Invalid input for field/attribute server_type. Value: 'container'. Expected one of: vm, bm"
    )


@pytest.mark.parametrize("field", ["project_id", "user_id", "links", "created_at", "updated_at"])
def test_read_only_fields(api: TestClient, auth: Auth, field: str) -> None:
    for value in ("x", None):
        r = create(api, auth("p1_member"), **{field: value})
        assert detail(r) == (
            f"Invalid input for field/attribute {field}. Value: '{value}'. Cannot set read only field."
        )


def test_unknown_field(api: TestClient, auth: Auth) -> None:
    r = create(api, auth("p1_member"), node_count=3)
    assert detail(r) == "Unknown attribute for argument cluster_template: node_count"


# ---- baymodel differences ------------------------------------------------------------------


def test_baymodel_keypair_is_mandatory(api: TestClient, auth: Auth) -> None:
    r = create(api, auth("p1_member"), path="/v1/baymodels", keypair_id=...)
    assert (
        detail(r) == "Invalid input for field/attribute keypair_id. Value: 'None'. Mandatory field missing."
    )
    # ... but optional for a cluster template
    assert made(api, auth("p1_member"))["keypair_id"] is None


def test_baymodel_representation(api: TestClient, auth: Auth) -> None:
    r = create(api, auth("p1_member"), path="/v1/baymodels", name="bm")
    assert r.status_code == 201, r.text
    b = r.json()
    assert set(b) == BAYMODEL_KEYS
    assert b["links"] == [
        {"href": f"http://testserver/v1/baymodels/{b['uuid']}", "rel": "self"},
        {"href": f"http://testserver/baymodels/{b['uuid']}", "rel": "bookmark"},
    ]
    assert r.headers["location"] == f"http://testserver/v1/baymodels/{b['uuid']}"
    # same record through both views
    h = auth("p1_member")
    ct = api.get(f"/v1/clustertemplates/{b['uuid']}", headers=h).json()
    assert ct["project_id"] == "p1" and ct["name"] == "bm"
    assert api.get("/v1/baymodels", headers=h).json() == {"baymodels": [b]}
    assert api.get("/v1/baymodels/detail", headers=h).json() == {"baymodels": [b]}


def test_baymodel_labels_must_be_strings(api: TestClient, auth: Auth) -> None:
    r = create(api, auth("p1_member"), path="/v1/baymodels", labels={"answer": 42})
    assert detail(r) == (
        "Invalid input for field/attribute labels. Value: '{'answer': 42}'. Label answer must have a string value."
    )
    r = create(api, auth("p1_member"), path="/v1/baymodels", labels={"answer": "42"})
    assert r.status_code == 201, r.text
    assert r.json()["labels"] == {"answer": "42"}


def test_dns_nameserver_rules(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    assert made(api, h, dns_nameserver="8.8.8.8,8.8.4.4")["dns_nameserver"] == "8.8.8.8,8.8.4.4"
    r = create(api, h, dns_nameserver="8.8.8.8,dns.example")
    assert (
        detail(r)
        == "Expected a single dns address or comma separated dns list, but received 8.8.8.8,dns.example."
    )
    r = create(api, h, path="/v1/baymodels", dns_nameserver="8.8.8.8")
    assert r.status_code == 201 and r.json()["dns_nameserver"] == "8.8.8.8"
    r = create(api, h, path="/v1/baymodels", dns_nameserver="8.8.8.8,8.8.4.4")
    assert detail(r) == (
        "Invalid input for field/attribute dns_nameserver. Value: '8.8.8.8,8.8.4.4'. Value should be IPv4 format"
    )


# ---- semantic validation ------------------------------------------------------------------


def test_devicemapper_needs_3gb(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    r = create(api, h, docker_storage_driver="devicemapper")
    assert detail(r) == (
        "docker volume size None GB is not valid, expecting minimum value 3GB for devicemapper storage driver."
    )
    r = create(api, h, docker_storage_driver="devicemapper", docker_volume_size=2)
    assert detail(r) == (
        "docker volume size 2 GB is not valid, expecting minimum value 3GB for devicemapper storage driver."
    )
    t = made(api, h, docker_storage_driver="devicemapper", docker_volume_size=3)
    # Served on the local provider as overlay2 on the node's sized volume: shown as used.
    assert (t["docker_storage_driver"], t["docker_volume_size"]) == ("overlay2", 3)
    assert made(api, h, docker_storage_driver="overlay2")["docker_volume_size"] is None


@pytest.mark.parametrize(
    ("coe", "driver", "supported"),
    [
        ("kubernetes", "docker", "flannel"),
        ("kubernetes", "calico", "flannel"),
        ("swarm", "calico", "docker, flannel"),
        ("swarm-mode", "weave", "docker, flannel"),
    ],
)
def test_network_driver_per_coe(api: TestClient, auth: Auth, coe: str, driver: str, supported: str) -> None:
    r = create(api, auth("p1_member"), coe=coe, network_driver=driver)
    assert detail(r) == (
        f"Network driver type {driver} is not supported for COE {coe}. Supported network drivers: {supported}."
    )
    for ok in supported.split(", "):
        if coe.startswith("swarm") and ok == "flannel":  # Magnum's rule allows it; the local provider cannot
            r = create(api, auth("p1_member"), coe=coe, network_driver=ok)
            assert "not supported for swarm clusters on the local provider" in detail(r)
            continue
        assert made(api, auth("p1_member"), coe=coe, network_driver=ok)["network_driver"] == ok


@pytest.mark.parametrize(
    ("coe", "driver", "supported"), [("swarm", "cinder", "rexray")]
)  # kubernetes: tests/api/test_kubernetes_templates.py (cinder needs the OpenStack provider)
def test_volume_driver_per_coe(api: TestClient, auth: Auth, coe: str, driver: str, supported: str) -> None:
    r = create(api, auth("p1_member"), coe=coe, volume_driver=driver)
    assert detail(r) == (
        f"Volume driver type {driver} is not supported for COE {coe}. Supported volume drivers: {supported}."
    )
    if supported == "rexray":  # Magnum's rule allows it; the local provider refuses it at template create
        assert "not available on the local provider" in detail(create(api, auth("p1_member"), coe=coe,
                                                                      volume_driver=supported))  # fmt: skip
        return
    assert made(api, auth("p1_member"), coe=coe, volume_driver=supported)["volume_driver"] == supported


@pytest.mark.parametrize("cidr", ["10.0.0.0", "10.0.0.0/33", "banana", "fd00::/64"])
def test_label_flannel_network_cidr(api: TestClient, auth: Auth, cidr: str) -> None:
    r = create(api, auth("p1_member"), coe="kubernetes", labels={"flannel_network_cidr": cidr})
    assert detail(r) == (
        f"Invalid label flannel_network_cidr={cidr}: expected an IPv4 network in CIDR format, e.g. 10.100.0.0/16."
    )


def test_label_flannel_ok(api: TestClient, auth: Auth) -> None:
    labels = {"flannel_network_cidr": "10.100.0.0/16", "flannel_backend": "host-gw"}
    assert made(api, auth("p1_member"), coe="kubernetes", labels=labels)["labels"] == labels


def test_label_flannel_backend(api: TestClient, auth: Auth) -> None:
    r = create(api, auth("p1_member"), coe="kubernetes", labels={"flannel_backend": "gre"})
    assert detail(r) == "Invalid label flannel_backend=gre: expected one of udp, vxlan, host-gw."


def test_label_swarm_strategy(api: TestClient, auth: Auth) -> None:
    r = create(api, auth("p1_member"), labels={"swarm_strategy": "roundrobin"})
    assert detail(r) == "Invalid label swarm_strategy=roundrobin: expected one of spread, binpack, random."
    assert (
        made(api, auth("p1_member"), labels={"swarm_strategy": "binpack"})["labels"]["swarm_strategy"]
        == "binpack"
    )


def test_image_must_exist(api: TestClient, auth: Auth, register_image: Callable[..., dict[str, Any]]) -> None:
    register_image("ubuntu-node", "ubuntu")
    r = create(api, auth("p1_member"), image_id="fedora-coreos")
    assert (
        detail(r) == "Image fedora-coreos could not be found. Available images: flotilla-node, ubuntu-node."
    )
    t = made(api, auth("p1_member"), image_id="ubuntu-node")
    assert t["cluster_distro"] == "ubuntu"


def test_image_by_uuid(api: TestClient, auth: Auth, image: dict[str, Any]) -> None:
    t = made(api, auth("p1_member"), image_id=image["uuid"])
    assert (t["image_id"], t["cluster_distro"]) == (image["uuid"], "debian")


def test_image_needs_os_distro(
    api: TestClient, auth: Auth, register_image: Callable[..., dict[str, Any]]
) -> None:
    register_image("bare", None)
    r = create(api, auth("p1_member"), image_id="bare")
    assert detail(r) == "Image bare doesn't contain os_distro field."


@pytest.mark.parametrize("field", ["flavor_id", "master_flavor_id"])
def test_flavors_must_exist(api: TestClient, auth: Auth, field: str) -> None:
    r = create(api, auth("p1_member"), **{field: "m2.xlarge"})
    assert (
        detail(r)
        == "Unable to find flavor m2.xlarge. Available flavors: m1.tiny, m1.small, m1.medium, m1.large."
    )


def test_external_network_must_exist_and_be_external(api: TestClient, auth: Auth) -> None:
    r = api.post("/local/v1/networks", json={"name": "internal"}, headers=auth("admin"))
    assert r.status_code == 201, r.text
    for name in ("internal", "nowhere"):
        r = create(api, auth("p1_member"), external_network_id=name)
        assert detail(r) == f"Unable to find external network {name}. Available external networks: public."
    assert made(api, auth("p1_member"), external_network_id="public")["external_network_id"] == "public"


# ---- lookup --------------------------------------------------------------------------------


def test_lookup_by_name_and_uuid(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    t = made(api, h, name="finder")
    assert api.get("/v1/clustertemplates/finder", headers=h).json()["uuid"] == t["uuid"]
    assert api.get(f"/v1/clustertemplates/{t['uuid']}", headers=h).json()["name"] == "finder"
    assert api.get("/v1/baymodels/finder", headers=h).json()["uuid"] == t["uuid"]


def test_uuid_shaped_names_are_looked_up_as_uuids(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    other = "3f2b0a52-5d7a-4c1e-8f5e-0f6c4a1d2b3c"
    made(api, h, name=other)
    r = api.get(f"/v1/clustertemplates/{other}", headers=h)
    assert detail(r, 404) == f"ClusterTemplate {other} could not be found."


def test_duplicate_names_conflict_on_lookup(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    a, b = made(api, h, name="dup"), made(api, h, name="dup")
    assert a["uuid"] != b["uuid"]
    r = api.get("/v1/clustertemplates/dup", headers=h)
    assert detail(r, 409) == (
        "Multiple ClusterTemplates exist with same name. Please use the ClusterTemplate uuid instead."
    )
    r = api.get("/v1/baymodels/dup", headers=h)
    assert (
        detail(r, 409)
        == "Multiple ClusterTemplates exist with same name. Please use the ClusterTemplate uuid instead."
    )
    assert api.delete(f"/v1/clustertemplates/{a['uuid']}", headers=h).status_code == 204
    assert api.get("/v1/clustertemplates/dup", headers=h).json()["uuid"] == b["uuid"]


def test_delete(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    t = made(api, h, name="gone")
    r = api.delete("/v1/clustertemplates/gone", headers=h)
    assert r.status_code == 204 and r.content == b""
    assert detail(api.get(f"/v1/clustertemplates/{t['uuid']}", headers=h), 404) == (
        f"ClusterTemplate {t['uuid']} could not be found."
    )
    b = made(api, h, name="gone-too")
    assert api.delete(f"/v1/baymodels/{b['uuid']}", headers=h).status_code == 204
    assert api.get("/v1/clustertemplates", headers=h).json() == {"clustertemplates": []}


# ---- PATCH ---------------------------------------------------------------------------------


def test_patch_replace_add_remove(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    t = made(api, h, name="p", http_proxy="http://old:3128")
    r = patch(
        api, h, t["uuid"],
        [
            {"op": "replace", "path": "/name", "value": "renamed"},
            {"op": "add", "path": "/docker_volume_size", "value": 7},
            {"op": "remove", "path": "/http_proxy"},
            {"op": "replace", "path": "/master_lb_enabled", "value": True},
        ],
    )  # fmt: skip
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == TEMPLATE_KEYS
    assert (out["name"], out["docker_volume_size"], out["http_proxy"]) == ("renamed", 7, None)
    assert out["master_lb_enabled"] is True
    assert out["updated_at"] is not None
    assert datetime.fromisoformat(out["updated_at"]) >= datetime.fromisoformat(out["created_at"])
    assert api.get(f"/v1/clustertemplates/{t['uuid']}", headers=h).json() == out


def test_patch_by_name_through_baymodels(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    made(api, h, name="bmp", keypair_id="k")
    r = patch(api, h, "bmp", [{"op": "replace", "path": "/tags", "value": "a"}], coll="baymodels")
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == "a"
    assert "project_id" not in r.json()


def test_patch_labels_python_literal_string(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    t = made(api, h, labels={"old": "1"})
    r = patch(api, h, t["uuid"], [{"op": "replace", "path": "/labels", "value": "{'a': 'b', 'n': 1}"}])
    assert r.status_code == 200, r.text
    assert r.json()["labels"] == {"a": "b", "n": "1"}


def test_patch_labels_json_object_and_sub_paths(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    t = made(api, h)
    r = patch(api, h, t["uuid"], [{"op": "replace", "path": "/labels", "value": {"x": "y", "on": True}}])
    assert r.status_code == 200, r.text
    assert r.json()["labels"] == {"x": "y", "on": "True"}
    r = patch(api, h, t["uuid"], [{"op": "add", "path": "/labels/z", "value": "1"}])
    assert r.json()["labels"] == {"x": "y", "on": "True", "z": "1"}
    r = patch(api, h, t["uuid"], [{"op": "remove", "path": "/labels/x"}])
    assert r.json()["labels"] == {"on": "True", "z": "1"}
    r = patch(api, h, t["uuid"], [{"op": "remove", "path": "/labels"}])
    assert r.status_code == 200
    assert api.get(f"/v1/clustertemplates/{t['uuid']}", headers=h).json()["labels"] == {}


def test_patch_labels_bad_literal(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    t = made(api, h)
    r = patch(api, h, t["uuid"], [{"op": "replace", "path": "/labels", "value": "{'a': "}])
    assert detail(r).startswith("Couldn't apply patch: the value '{'a': ' is not a valid literal")


def test_patch_labels_are_validated(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    t = made(api, h, coe="kubernetes")
    r = patch(api, h, t["uuid"], [{"op": "add", "path": "/labels/flannel_backend", "value": "gre"}])
    assert detail(r) == "Invalid label flannel_backend=gre: expected one of udp, vxlan, host-gw."


@pytest.mark.parametrize("attr", ["uuid", "id", "project_id", "user_id", "created_at", "updated_at", "links"])
def test_patch_internal_attributes(api: TestClient, auth: Auth, attr: str) -> None:
    h = auth("p1_member")
    t = made(api, h)
    for op in ("replace", "add", "remove"):
        r = patch(api, h, t["uuid"], [{"op": op, "path": f"/{attr}", "value": "x"}])
        assert detail(r) == f"'/{attr}' is an internal attribute and can not be updated"


@pytest.mark.parametrize(
    "attr",
    ["coe", "image_id", "network_driver", "external_network_id", "tls_disabled", "public", "hidden",
     "server_type", "registry_enabled", "cluster_distro"],
)  # fmt: skip
def test_patch_non_removable(api: TestClient, auth: Auth, attr: str) -> None:
    h = auth("p1_member")
    t = made(api, h, external_network_id="public")
    r = patch(api, h, t["uuid"], [{"op": "remove", "path": f"/{attr}"}])
    assert detail(r) == f"'/{attr}' is a mandatory attribute and can not be removed"


def test_patch_type_recheck(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    t = made(api, h)
    r = patch(api, h, t["uuid"], [{"op": "replace", "path": "/docker_volume_size", "value": "11"}])
    assert (
        detail(r)
        == "Invalid input for field/attribute docker_volume_size. Value: '11'. Wrong type. Expected an integer."
    )
    r = patch(api, h, t["uuid"], [{"op": "replace", "path": "/tls_disabled", "value": "true"}])
    assert r.status_code == 200, r.text
    assert r.json()["tls_disabled"] is True
    r = patch(api, h, t["uuid"], [{"op": "replace", "path": "/tls_disabled", "value": "no"}])
    assert r.json()["tls_disabled"] is False
    r = patch(api, h, t["uuid"], [{"op": "replace", "path": "/apiserver_port", "value": 22}])
    assert (
        detail(r)
        == "Invalid input for field/attribute apiserver_port. Value: '22'. Value should be greater or equal to 1024"
    )


def test_patch_add_on_a_set_attribute(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    t = made(api, h, docker_volume_size=5)
    r = patch(api, h, t["uuid"], [{"op": "add", "path": "/docker_volume_size", "value": 6}])
    assert (
        detail(r) == "The attribute /docker_volume_size has existed, please use 'replace' operation instead."
    )
    r = patch(api, h, t["uuid"], [{"op": "add", "path": "/node_count", "value": 6}])
    assert detail(r) == "Adding a new attribute /node_count to the root of the resource is not allowed."


def test_patch_dialect_errors(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    uuid = made(api, h)["uuid"]
    r = patch(api, h, uuid, {"op": "replace", "path": "/name", "value": "x"})
    assert detail(r).endswith("Value not a valid list")
    r = patch(api, h, uuid, [{"op": "move", "path": "/name", "value": "x"}])
    assert (
        detail(r)
        == "Invalid input for field/attribute op. Value: 'move'. Value should be one of: add, replace, remove"
    )
    r = patch(api, h, uuid, [{"op": "replace", "path": "name", "value": "x"}])
    assert detail(r) == "Invalid input for field/attribute path. Value: 'name'. Invalid patch path"
    for value in ([1], {"a": 1}, 1.5):
        r = patch(api, h, uuid, [{"op": "replace", "path": "/name", "value": value}])
        assert detail(r).endswith("Wrong type. Expected '(str, int)'"), value
    r = patch(api, h, uuid, [{"op": "replace", "path": "/nothing", "value": "x"}])
    assert detail(r).startswith("Couldn't apply patch '")
    assert "Reason: can't replace a non-existent object 'nothing'" in detail(r)
    r = patch(api, h, uuid, [{"op": "remove", "path": "/labels/missing"}])
    assert "Reason: can't remove a non-existent object 'missing'" in detail(r)


def test_patch_revalidates_drivers_and_resources(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    uuid = made(api, h, coe="kubernetes")["uuid"]
    r = patch(api, h, uuid, [{"op": "replace", "path": "/network_driver", "value": "docker"}])
    assert (
        detail(r)
        == "Network driver type docker is not supported for COE kubernetes. Supported network drivers: flannel."
    )
    r = patch(api, h, uuid, [{"op": "replace", "path": "/volume_driver", "value": "rexray"}])
    assert (
        detail(r)
        == "Volume driver type rexray is not supported for COE kubernetes. Supported volume drivers: cinder."
    )
    r = patch(api, h, uuid, [{"op": "replace", "path": "/image_id", "value": "ghost"}])
    assert detail(r) == "Image ghost could not be found. Available images: flotilla-node."
    r = patch(api, h, uuid, [{"op": "add", "path": "/flavor_id", "value": "m0.none"}])
    assert detail(r).startswith("Unable to find flavor m0.none.")
    r = patch(api, h, uuid, [{"op": "add", "path": "/external_network_id", "value": "nowhere"}])
    assert detail(r) == "Unable to find external network nowhere. Available external networks: public."
    # nothing of the above was stored
    t = api.get(f"/v1/clustertemplates/{uuid}", headers=h).json()
    assert (t["network_driver"], t["volume_driver"], t["image_id"], t["flavor_id"]) == (
        "flannel", None, "flotilla-node", None,
    )  # fmt: skip


def test_empty_patch_changes_nothing(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    t = made(api, h)
    r = patch(api, h, t["uuid"], [])
    assert r.status_code == 200
    assert r.json() == t


# ---- in use by a cluster -------------------------------------------------------------------


def _add_cluster(app: FastAPI, template_uuid: str) -> None:
    """A cluster row referencing the template (the cluster API is not needed for this rule)."""
    with app.state.runtime.db.session() as s:
        s.add(
            m.Cluster(
                uuid="c0ffee00-0000-4000-8000-000000000001", name="user", project_id="p1", user_id="alice",
                cluster_template_id=template_uuid, status="CREATE_COMPLETE",
            )
        )  # fmt: skip


def test_template_in_use(api: TestClient, app: FastAPI, auth: Auth) -> None:
    h = auth("p1_member")
    t = made(api, h, name="busy", coe="kubernetes")
    _add_cluster(app, t["uuid"])
    referenced = f"ClusterTemplate {t['uuid']} is referenced by one or multiple clusters."

    assert detail(api.delete(f"/v1/clustertemplates/{t['uuid']}", headers=h)) == referenced
    assert detail(api.delete(f"/v1/baymodels/{t['uuid']}", headers=h)) == referenced
    r = patch(api, h, t["uuid"], [{"op": "replace", "path": "/docker_volume_size", "value": 20}])
    assert detail(r) == referenced
    r = patch(api, h, t["uuid"], [{"op": "add", "path": "/labels/k", "value": "v"}])
    assert detail(r) == referenced
    # name and tags may change, each alone
    r = patch(api, h, t["uuid"], [{"op": "replace", "path": "/name", "value": "still-busy"}])
    assert r.status_code == 200 and r.json()["name"] == "still-busy"
    r = patch(api, h, t["uuid"], [{"op": "add", "path": "/tags", "value": "prod"}])
    assert r.status_code == 200 and r.json()["tags"] == "prod"
    r = patch(
        api, h, t["uuid"],
        [{"op": "replace", "path": "/name", "value": "x"}, {"op": "replace", "path": "/tags", "value": "y"}],
    )  # fmt: skip
    assert detail(r) == referenced
    # public and hidden too (they need an admin)
    for attr in ("public", "hidden"):
        r = patch(api, auth("admin"), t["uuid"], [{"op": "replace", "path": f"/{attr}", "value": True}])
        assert r.status_code == 200, r.text
        assert r.json()[attr] is True
    t2 = api.get(f"/v1/clustertemplates/{t['uuid']}", headers=h).json()
    assert (t2["name"], t2["tags"], t2["docker_volume_size"], t2["labels"]) == (
        "still-busy",
        "prod",
        None,
        {},
    )


def test_unused_template_can_change_anything(api: TestClient, app: FastAPI, auth: Auth) -> None:
    h = auth("p1_member")
    used = made(api, h, name="used")
    free = made(api, h, name="free")
    _add_cluster(app, used["uuid"])
    r = patch(api, h, free["uuid"], [{"op": "add", "path": "/docker_volume_size", "value": 3}])
    assert r.status_code == 200, r.text
    assert api.delete(f"/v1/clustertemplates/{free['uuid']}", headers=h).status_code == 204
