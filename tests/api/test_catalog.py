"""``/local/v1``: images, flavors and networks (admin writes) and keypairs (per project)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

Auth = Callable[..., dict[str, str]]
KEY_BODY = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()
PUBLIC_KEY = f"ssh-ed25519 {KEY_BODY} alice@laptop"


def error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    err = r.json()["errors"][0]
    assert err["status"] == status
    msg: str = err["detail"]
    return msg


# ---- seed data -----------------------------------------------------------------------------


def test_seeded_flavors_and_network(api: TestClient, auth: Auth) -> None:
    r = api.get("/local/v1/flavors", headers=auth("p1_reader"))
    assert r.status_code == 200
    flavors = r.json()["flavors"]
    assert [(f["name"], f["vcpus"], f["ram_mb"]) for f in flavors] == [
        ("m1.tiny", 0.5, 512), ("m1.small", 1.0, 1024), ("m1.medium", 2.0, 2048), ("m1.large", 2.0, 4096),
    ]  # fmt: skip
    assert all(set(f) == {"uuid", "name", "vcpus", "ram_mb", "created_at"} for f in flavors)
    nets = api.get("/local/v1/networks", headers=auth("p2_member")).json()["networks"]
    assert [(n["name"], n["external"]) for n in nets] == [("public", True)]


# ---- images --------------------------------------------------------------------------------


def test_image_register_list_show_delete(
    api: TestClient, auth: Auth, register_image: Callable[..., dict[str, Any]]
) -> None:
    img = register_image("node", "debian")
    assert set(img) == {"uuid", "name", "os_distro", "source", "build_method", "created_at"}
    assert (img["name"], img["os_distro"], img["source"]) == ("node", "debian", None)
    assert img["created_at"] is not None
    listed = api.get("/local/v1/images", headers=auth("p1_reader")).json()["images"]
    assert listed == [img]
    for ident in ("node", img["uuid"]):
        assert api.get(f"/local/v1/images/{ident}", headers=auth("p2_member")).json() == img
    assert api.delete(f"/local/v1/images/{img['uuid']}", headers=auth("admin")).status_code == 204
    assert (
        error(api.get("/local/v1/images/node", headers=auth("admin")), 404)
        == "Image node could not be found."
    )


def test_image_writes_are_admin_only(
    api: TestClient, auth: Auth, register_image: Callable[..., dict[str, Any]]
) -> None:
    for who in ("p1_member", "p1_reader"):
        r = api.post("/local/v1/images", json={"name": "x", "os_distro": "debian"}, headers=auth(who))
        assert error(r, 403) == "Policy doesn't allow image:create to be performed."
    register_image("node", "debian")
    r = api.delete("/local/v1/images/node", headers=auth("p1_member"))
    assert error(r, 403) == "Policy doesn't allow image:delete to be performed."
    assert api.get("/local/v1/images/node", headers=auth("p1_member")).status_code == 200


def test_image_duplicate_and_replace(
    api: TestClient, auth: Auth, register_image: Callable[..., dict[str, Any]]
) -> None:
    first = register_image("node", "debian")
    r = api.post("/local/v1/images", json={"name": "node", "os_distro": "ubuntu"}, headers=auth("admin"))
    assert error(r, 409) == "Image node already exists."
    r = api.post(
        "/local/v1/images",
        json={"name": "node", "os_distro": "ubuntu", "source": "docker:ubuntu:22.04", "replace": True},
        headers=auth("admin"),
    )
    assert r.status_code == 201, r.text
    assert r.json()["uuid"] == first["uuid"]
    assert (r.json()["os_distro"], r.json()["source"]) == ("ubuntu", "docker:ubuntu:22.04")


def test_image_body_validation(api: TestClient, auth: Auth) -> None:
    r = api.post("/local/v1/images", json={"os_distro": "debian"}, headers=auth("admin"))
    assert error(r, 400) == "Invalid input for field/attribute name. Value: 'None'. Mandatory field missing."
    r = api.post("/local/v1/images", json={"name": "n", "arch": "arm64"}, headers=auth("admin"))
    assert error(r, 400) == "Unknown attribute for argument image: arch"


def test_image_in_use_cannot_be_deleted(
    api: TestClient, auth: Auth, register_image: Callable[..., dict[str, Any]]
) -> None:
    register_image("node", "debian")
    r = api.post("/v1/clustertemplates", json={"coe": "swarm", "image_id": "node"}, headers=auth("p1_member"))
    assert r.status_code == 201, r.text
    uuid = r.json()["uuid"]
    r = api.delete("/local/v1/images/node", headers=auth("admin"))
    assert error(r, 400) == f"Image node is used by cluster template {uuid}; delete the template first."
    assert api.delete(f"/v1/clustertemplates/{uuid}", headers=auth("p1_member")).status_code == 204
    assert api.delete("/local/v1/images/node", headers=auth("admin")).status_code == 204


# ---- flavors and networks -------------------------------------------------------------------


def test_flavor_lifecycle(api: TestClient, auth: Auth, register_image: Callable[..., dict[str, Any]]) -> None:
    r = api.post(
        "/local/v1/flavors", json={"name": "c2.big", "vcpus": 2, "ram_mb": 8192}, headers=auth("admin")
    )
    assert r.status_code == 201, r.text
    f = r.json()
    assert (f["name"], f["vcpus"], f["ram_mb"]) == ("c2.big", 2, 8192)
    assert f["created_at"] is not None
    assert "c2.big" in [
        x["name"] for x in api.get("/local/v1/flavors", headers=auth("p1_member")).json()["flavors"]
    ]
    r = api.post(
        "/local/v1/flavors", json={"name": "c2.big", "vcpus": 1, "ram_mb": 128}, headers=auth("admin")
    )
    assert error(r, 409) == "Flavor c2.big already exists."
    # templates can now use it, by name or uuid
    register_image("node", "debian")
    for ident in ("c2.big", f["uuid"]):
        body = {"coe": "swarm", "image_id": "node", "flavor_id": ident, "master_flavor_id": "c2.big"}
        assert api.post("/v1/clustertemplates", json=body, headers=auth("p1_member")).status_code == 201
    assert api.delete(f"/local/v1/flavors/{f['uuid']}", headers=auth("admin")).status_code == 204
    r = api.delete("/local/v1/flavors/c2.big", headers=auth("admin"))
    assert error(r, 404) == "Flavor c2.big could not be found."


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "f", "vcpus": 0, "ram_mb": 512}, "A flavor needs vcpus > 0 and ram_mb >= 64."),
        ({"name": "f", "vcpus": -1, "ram_mb": 512}, "Invalid input for field/attribute vcpus. Value: '-1'. Value should be greater or equal to 0"),
        ({"name": "f", "vcpus": 1, "ram_mb": 32}, "Invalid input for field/attribute ram_mb. Value: '32'. Value should be greater or equal to 64"),
        ({"name": "f", "vcpus": 1}, "Invalid input for field/attribute ram_mb. Value: 'None'. Mandatory field missing."),
        ({"name": "f", "vcpus": "two", "ram_mb": 512}, "Invalid input for field/attribute vcpus. Value: 'two'. Wrong type. Expected a number."),
    ],
)  # fmt: skip
def test_flavor_validation(api: TestClient, auth: Auth, body: dict[str, Any], message: str) -> None:
    assert error(api.post("/local/v1/flavors", json=body, headers=auth("admin")), 400) == message


def test_flavor_and_network_writes_are_admin_only(api: TestClient, auth: Auth) -> None:
    for who in ("p1_member", "p1_reader", "p2_member"):
        r = api.post("/local/v1/flavors", json={"name": "f", "vcpus": 1, "ram_mb": 128}, headers=auth(who))
        assert error(r, 403) == "Policy doesn't allow flavor:create to be performed."
        r = api.delete("/local/v1/flavors/m1.tiny", headers=auth(who))
        assert error(r, 403) == "Policy doesn't allow flavor:delete to be performed."
        r = api.post("/local/v1/networks", json={"name": "n", "external": True}, headers=auth(who))
        assert error(r, 403) == "Policy doesn't allow network:create to be performed."
        r = api.delete("/local/v1/networks/public", headers=auth(who))
        assert error(r, 403) == "Policy doesn't allow network:delete to be performed."
    assert len(api.get("/local/v1/flavors", headers=auth("admin")).json()["flavors"]) == 4


def test_network_lifecycle(
    api: TestClient, auth: Auth, register_image: Callable[..., dict[str, Any]]
) -> None:
    r = api.post("/local/v1/networks", json={"name": "ext2", "external": "yes"}, headers=auth("admin"))
    assert r.status_code == 201, r.text
    net = r.json()
    assert (net["name"], net["external"]) == ("ext2", True)
    assert net["created_at"] is not None
    r = api.post("/local/v1/networks", json={"name": "lan"}, headers=auth("admin"))
    assert r.status_code == 201 and r.json()["external"] is False
    r = api.post("/local/v1/networks", json={"name": "lan"}, headers=auth("admin"))
    assert error(r, 409) == "Network lan already exists."
    names = [
        (n["name"], n["external"])
        for n in api.get("/local/v1/networks", headers=auth("p1_member")).json()["networks"]
    ]
    assert names == [("ext2", True), ("lan", False), ("public", True)]
    # the catalog is what template validation checks
    register_image("node", "debian")
    r = api.post(
        "/v1/clustertemplates",
        json={"coe": "swarm", "image_id": "node", "external_network_id": net["uuid"]},
        headers=auth("p1_member"),
    )
    assert r.status_code == 201, r.text
    assert api.delete("/local/v1/networks/lan", headers=auth("admin")).status_code == 204
    assert (
        error(api.delete("/local/v1/networks/lan", headers=auth("admin")), 404)
        == "Network lan could not be found."
    )


# ---- keypairs ------------------------------------------------------------------------------


def test_keypair_lifecycle(api: TestClient, auth: Auth) -> None:
    h = auth("p1_member")
    r = api.post("/local/v1/keypairs", json={"name": "laptop", "public_key": PUBLIC_KEY}, headers=h)
    assert r.status_code == 201, r.text
    kp = r.json()
    assert set(kp) == {"name", "fingerprint", "public_key", "project_id", "user_id", "created_at"}
    assert (kp["name"], kp["project_id"], kp["user_id"]) == ("laptop", "p1", "alice")
    assert kp["public_key"] == PUBLIC_KEY
    assert len(kp["fingerprint"].split(":")) == 16
    assert api.get("/local/v1/keypairs", headers=auth("p1_reader")).json() == {"keypairs": [kp]}
    assert api.get("/local/v1/keypairs/laptop", headers=h).json() == kp
    r = api.post("/local/v1/keypairs", json={"name": "laptop", "public_key": PUBLIC_KEY}, headers=h)
    assert error(r, 409) == "Key pair 'laptop' already exists."
    assert api.delete("/local/v1/keypairs/laptop", headers=h).status_code == 204
    assert error(api.get("/local/v1/keypairs/laptop", headers=h), 404) == "Unable to find keypair laptop."


def test_keypairs_are_per_project(api: TestClient, auth: Auth) -> None:
    r = api.post(
        "/local/v1/keypairs", json={"name": "k", "public_key": PUBLIC_KEY}, headers=auth("p1_member")
    )
    assert r.status_code == 201
    assert api.get("/local/v1/keypairs", headers=auth("p2_member")).json() == {"keypairs": []}
    assert (
        error(api.get("/local/v1/keypairs/k", headers=auth("p2_member")), 404) == "Unable to find keypair k."
    )
    assert (
        error(api.delete("/local/v1/keypairs/k", headers=auth("p2_member")), 404)
        == "Unable to find keypair k."
    )
    # the same name in another project is another keypair
    r = api.post(
        "/local/v1/keypairs", json={"name": "k", "public_key": PUBLIC_KEY}, headers=auth("p2_member")
    )
    assert r.status_code == 201 and r.json()["project_id"] == "p2"
    assert api.get("/local/v1/keypairs/k", headers=auth("p1_member")).json()["user_id"] == "alice"


def test_reader_cannot_write_keypairs(api: TestClient, auth: Auth) -> None:
    r = api.post(
        "/local/v1/keypairs", json={"name": "k", "public_key": PUBLIC_KEY}, headers=auth("p1_reader")
    )
    assert error(r, 403) == "Policy doesn't allow keypair:create to be performed."
    api.post("/local/v1/keypairs", json={"name": "k", "public_key": PUBLIC_KEY}, headers=auth("p1_member"))
    r = api.delete("/local/v1/keypairs/k", headers=auth("p1_reader"))
    assert error(r, 403) == "Policy doesn't allow keypair:delete to be performed."


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("not a key", "Keypair data is invalid: expected an OpenSSH public key line such as 'ssh-ed25519 AAAA...'."),
        ("AAAAC3NzaC1lZDI1NTE5", "Keypair data is invalid: expected an OpenSSH public key line such as 'ssh-ed25519 AAAA...'."),
        ("ssh-ed25519 !!!notbase64!!!", "Keypair data is invalid: the key body is not base64."),
        ("", "Keypair data is invalid: expected an OpenSSH public key line such as 'ssh-ed25519 AAAA...'."),
    ],
)  # fmt: skip
def test_bad_public_key(api: TestClient, auth: Auth, key: str, message: str) -> None:
    r = api.post("/local/v1/keypairs", json={"name": "k", "public_key": key}, headers=auth("p1_member"))
    assert error(r, 400) == message
    assert api.get("/local/v1/keypairs", headers=auth("p1_member")).json() == {"keypairs": []}


def test_keypair_body_validation(api: TestClient, auth: Auth) -> None:
    r = api.post("/local/v1/keypairs", json={"name": "k"}, headers=auth("p1_member"))
    assert (
        error(r, 400)
        == "Invalid input for field/attribute public_key. Value: 'None'. Mandatory field missing."
    )
    r = api.post(
        "/local/v1/keypairs",
        json={"name": "k", "public_key": PUBLIC_KEY, "type": "ssh"},
        headers=auth("p1_member"),
    )
    assert error(r, 400) == "Unknown attribute for argument keypair: type"
