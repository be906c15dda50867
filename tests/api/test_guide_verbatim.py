"""The guide's baymodel and bay commands as typed (issue 14, item 10), on the API:

* the guide's (and magnum 2.17's) default ``docker_storage_driver`` devicemapper is
  served on the local provider (overlay2 on each node's sized volume) and the template
  shows what is used; what the local provider cannot serve is refused when the template
  is created, not when a cluster is;
* the guide's image ``fedora-atomic-latest`` stands for the local node image;
* bays (``/v1/bays``, which bay-create sends without labels) get the baymodel's labels;
* magnumclient's token-mode HTTP client gets error bodies it can parse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

Auth = Callable[..., dict[str, str]]

#: magnum baymodel-create --name swarmbaymodel --image-id fedora-atomic-latest --keypair-id testkey
#: --external-network-id public --dns-nameserver 8.8.8.8 --flavor-id m1.small --docker-volume-size 5
#: --coe swarm (as 2.17 sends it: its default storage driver included)
GUIDE_BAYMODEL = {
    "name": "swarmbaymodel", "image_id": "fedora-atomic-latest", "keypair_id": "testkey", "external_network_id": "public",
    "dns_nameserver": "8.8.8.8", "flavor_id": "m1.small", "docker_volume_size": 5, "coe": "swarm",
    "docker_storage_driver": "devicemapper", "network_driver": None, "labels": {},
}  # fmt: skip


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f alice@p1"


@pytest.fixture(autouse=True)
def testkey(api: TestClient, auth: Auth) -> None:
    r = api.post("/local/v1/keypairs", json={"name": "testkey", "public_key": KEY}, headers=auth("p1_member"))
    assert r.status_code == 201, r.text


@pytest.fixture
def node_image(register_image: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return register_image("flotilla-node", "debian")


def test_the_guides_baymodel_is_served_and_shows_what_is_used(
    api: TestClient, auth: Auth, node_image: dict[str, Any]
) -> None:
    r = api.post("/v1/baymodels", json=GUIDE_BAYMODEL, headers=auth("p1_member"))
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["docker_storage_driver"] == "overlay2"
    assert t["docker_volume_size"] == 5
    assert t["image_id"] == "fedora-atomic-latest"
    assert t["cluster_distro"] == "debian"  # the node image it stands for
    r = api.post("/v1/bays", json={"name": "swarmbay", "baymodel_id": "swarmbaymodel", "node_count": 2},
                 headers=auth("p1_member"))  # fmt: skip
    assert r.status_code == 201, r.text  # bays: 201 (Magnum)


def test_the_guides_image_needs_the_node_image(api: TestClient, auth: Auth) -> None:
    r = api.post("/v1/baymodels", json=GUIDE_BAYMODEL, headers=auth("p1_member"))
    assert r.status_code == 400
    detail = r.json()["errors"][0]["detail"]
    assert "fedora-atomic-latest" in detail and "flotilla image-build flotilla-node" in detail


def test_a_registered_image_of_the_guides_name_wins(
    api: TestClient, auth: Auth, register_image: Callable[..., dict[str, Any]], node_image: dict[str, Any]
) -> None:
    register_image("fedora-atomic-latest", "fedora-atomic")
    r = api.post("/v1/baymodels", json=GUIDE_BAYMODEL, headers=auth("p1_member"))
    assert r.status_code == 201, r.text
    assert r.json()["cluster_distro"] == "fedora-atomic"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [("volume_driver", "rexray", "not available on the local provider"),
     ("network_driver", "flannel", "not supported for swarm clusters on the local provider")],
)  # fmt: skip
def test_what_the_local_provider_cannot_serve_is_refused_at_template_create(
    api: TestClient, auth: Auth, node_image: dict[str, Any], field: str, value: str, words: str
) -> None:
    r = api.post("/v1/baymodels", json={**GUIDE_BAYMODEL, field: value}, headers=auth("p1_member"))
    assert r.status_code == 400, r.text
    assert words in r.json()["errors"][0]["detail"]
    assert api.get("/v1/baymodels", headers=auth("p1_member")).json()["baymodels"] == []


def test_bays_inherit_the_baymodels_labels(api: TestClient, auth: Auth, node_image: dict[str, Any]) -> None:
    labels = {"auto_healing_enabled": "true", "min_node_count": "1"}
    h = auth("p1_member")
    r = api.post("/v1/baymodels", json={**GUIDE_BAYMODEL, "labels": labels}, headers=h)
    assert r.status_code == 201, r.text
    bay = api.post(
        "/v1/bays", json={"name": "b1", "baymodel_id": "swarmbaymodel", "node_count": 1}, headers=h
    )
    assert bay.status_code == 201, bay.text
    assert api.get("/v1/bays/b1", headers=h).json()["labels"] == labels
    assert api.get("/v1/clusters/b1", headers=auth("p1_member", "1.10")).json()["labels"] == labels
    given = {"auto_healing_enabled": "false"}
    r = api.post("/v1/bays", json={"name": "b2", "baymodel_id": "swarmbaymodel", "node_count": 1, "labels": given},
                 headers=h)  # fmt: skip
    assert r.status_code == 201, r.text  # bays: 201 (Magnum)
    assert api.get("/v1/bays/b2", headers=h).json()["labels"] == given


LEGACY = {"User-Agent": "python-magnumclient", "Accept-Encoding": "identity"}


def test_errors_for_magnumclients_token_mode_are_not_application_json(api: TestClient, auth: Auth) -> None:
    """2.17's HTTPClient calls ``resp.json()`` on an http.client response for any
    application/json error (AttributeError); any other type gives its proper exception."""
    r = api.get("/v1/bays/nope", headers={**auth("p1_member"), **LEGACY})
    assert r.status_code == 404
    assert not r.headers["content-type"].startswith("application/json")
    assert r.json()["errors"][0]["detail"]  # the body is still Magnum's error body
    ok = api.get("/v1/bays", headers={**auth("p1_member"), **LEGACY})
    assert ok.headers["content-type"].startswith("application/json")
    # Every other client (the session client goes through requests: gzip) keeps application/json.
    r = api.get("/v1/bays/nope", headers={**auth("p1_member"), "User-Agent": "python-magnumclient"})
    assert r.headers["content-type"].startswith("application/json")
