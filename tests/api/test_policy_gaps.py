"""Policy gaps of issue 14 (items 4 and 11), through the API on both databases.

* ``health_status`` / ``health_status_reason`` are the health monitor's: only admins (the
  role Magnum's auto-healer uses) may PATCH them; readers may PATCH nothing at all.
* ``fixed_network`` names a non-external network an admin registered in the catalog;
  never Docker's ``host``/``none``/``bridge``, never another project's cluster network.
* Keypair names: letters, digits, ``-``, ``_``, ``.``, not starting with ``.``, at most 255.
* A PATCH on an UPDATE_FAILED cluster says what to do (resize again, or delete).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flotilla.services import operations

Auth = Callable[..., dict[str, str]]
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f t@x"


def err(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    e = r.json()["errors"][0]
    assert e["status"] == status and e["code"] == "client", e
    detail: str = e["detail"]
    return detail


def finish_all(app: FastAPI, failed_reason: str | None = None) -> None:
    """Finish every queued operation at once, as a conductor would (no provider involved)."""
    with app.state.runtime.db.session() as s:
        while (op := operations.claim(s, "test", 30, skip_locked=False)) is not None:
            operations.finish(s, op, "test", failed_reason=failed_reason)


@pytest.fixture
def cluster(api: TestClient, app: FastAPI, auth: Auth, register_image: Callable[..., Any]) -> str:
    """p1's CREATE_COMPLETE cluster ``c`` (template ``t``); returns its uuid."""
    register_image("flotilla-node", "debian")
    h = auth("p1_member", "latest")
    r = api.post(
        "/v1/clustertemplates", json={"coe": "swarm", "image_id": "flotilla-node", "name": "t"}, headers=h
    )
    assert r.status_code == 201, r.text
    r = api.post("/v1/clusters", json={"cluster_template_id": "t", "name": "c"}, headers=h)
    assert r.status_code == 202, r.text
    finish_all(app)
    uuid: str = r.json()["uuid"]
    assert api.get(f"/v1/clusters/{uuid}", headers=h).json()["status"] == "CREATE_COMPLETE"
    return uuid


def _health_patch(status: str = "UNHEALTHY") -> list[dict[str, Any]]:
    return [
        {"op": "replace", "path": "/health_status", "value": status},
        {"op": "replace", "path": "/health_status_reason", "value": {"api": "down"}},
    ]


# ---- health_status is the service's -----------------------------------------------------------


@pytest.mark.parametrize("who", ["p1_reader", "p1_member"])
def test_users_cannot_write_health(api: TestClient, auth: Auth, cluster: str, who: str) -> None:
    h = auth(who, "latest")
    for body in (_health_patch(), _health_patch()[:1], _health_patch()[1:]):
        detail = err(api.patch(f"/v1/clusters/{cluster}", json=body, headers=h), 403)
        assert detail.startswith("Policy doesn't allow cluster:")
    shown = api.get(f"/v1/clusters/{cluster}", headers=h).json()
    assert (shown["health_status"], shown["health_status_reason"]) == (None, {})


def test_health_message_says_who_writes_it(api: TestClient, auth: Auth, cluster: str) -> None:
    detail = err(
        api.patch(f"/v1/clusters/{cluster}", json=_health_patch(), headers=auth("p1_member", "latest")), 403
    )
    assert detail == (
        "Policy doesn't allow cluster:update_health_status to be performed: health_status and "
        "health_status_reason are written by the service's health monitor, not by users."
    )


def test_reader_cannot_patch_anything(api: TestClient, auth: Auth, cluster: str) -> None:
    body = [{"op": "replace", "path": "/node_count", "value": 1}]  # unchanged: a no-op for a member
    detail = err(api.patch(f"/v1/clusters/{cluster}", json=body, headers=auth("p1_reader", "latest")), 403)
    assert detail == "Policy doesn't allow cluster:update to be performed."
    assert (
        api.patch(f"/v1/clusters/{cluster}", json=body, headers=auth("p1_member", "latest")).status_code
        == 202
    )


def test_admin_may_still_set_health(api: TestClient, auth: Auth, cluster: str) -> None:
    r = api.patch(f"/v1/clusters/{cluster}", json=_health_patch(), headers=auth("admin", "latest"))
    assert r.status_code == 202, r.text
    shown = api.get(f"/v1/clusters/{cluster}", headers=auth("p1_member", "latest")).json()
    assert (shown["health_status"], shown["health_status_reason"]) == ("UNHEALTHY", {"api": "down"})


# ---- fixed_network ------------------------------------------------------------------------------


def _template(api: TestClient, h: dict[str, str], name: str, **extra: Any) -> httpx.Response:
    body = {"coe": "swarm", "image_id": "flotilla-node", "name": name, **extra}
    return api.post("/v1/clustertemplates", json=body, headers=h)


@pytest.mark.parametrize("name", ["host", "none", "bridge"])
def test_docker_special_networks_are_refused(api: TestClient, auth: Auth, cluster: str, name: str) -> None:
    for who in ("p2_member", "admin"):
        h = auth(who, "latest")
        detail = err(_template(api, h, f"t-{name}", fixed_network=name), 400)
        assert detail.startswith(f"fixed_network {name} is Docker's {name} network")
        detail = err(
            api.post(
                "/v1/clusters",
                json={"cluster_template_id": "t", "fixed_network": name},
                headers=auth("p1_member", "latest"),
            ),
            400,
        )
        assert detail.startswith(f"fixed_network {name} is Docker's {name} network")
    assert err(api.post("/local/v1/networks", json={"name": name}, headers=auth("admin")), 400).startswith(
        "Invalid network name"
    )


def test_another_projects_cluster_network_is_refused(api: TestClient, auth: Auth, cluster: str) -> None:
    """p2 cannot put its nodes on the network of p1's cluster (named after the cluster)."""
    h2 = auth("p2_member", "latest")
    assert _template(api, h2, "t2").status_code == 201
    p1_net = f"flotilla-{cluster[:12]}"  # drivers.coe.dockerhost.network_name
    for net in (p1_net, cluster):
        detail = err(
            api.post("/v1/clusters", json={"cluster_template_id": "t2", "fixed_network": net}, headers=h2),
            400,
        )
        assert detail.startswith(
            f"Unable to find network {net} for fixed_network: it must name a non-external network"
        )
        assert err(_template(api, h2, "t3", fixed_network=net), 400).startswith(
            f"Unable to find network {net}"
        )


def test_registered_network_can_be_named(api: TestClient, auth: Auth, cluster: str) -> None:
    admin = auth("admin")
    net = api.post("/local/v1/networks", json={"name": "shared-net"}, headers=admin).json()
    h2 = auth("p2_member", "latest")
    r = _template(api, h2, "t2", fixed_network="shared-net")
    assert r.status_code == 201, r.text
    r = api.post("/v1/clusters", json={"cluster_template_id": "t2"}, headers=h2)
    assert r.status_code == 202, r.text
    assert api.get(f"/v1/clusters/{r.json()['uuid']}", headers=h2).json()["fixed_network"] == "shared-net"
    # by uuid: the cluster stores the name (what the provider looks up)
    r = api.post("/v1/clusters", json={"cluster_template_id": "t2", "fixed_network": net["uuid"]}, headers=h2)
    assert r.status_code == 202, r.text
    assert api.get(f"/v1/clusters/{r.json()['uuid']}", headers=h2).json()["fixed_network"] == "shared-net"
    # an external network is not a fixed network
    detail = err(
        api.post("/v1/clusters", json={"cluster_template_id": "t2", "fixed_network": "public"}, headers=h2),
        400,
    )
    assert "Available: shared-net." in detail


def test_template_patch_checks_fixed_network(api: TestClient, auth: Auth, cluster: str) -> None:
    h = auth("p2_member", "latest")
    assert _template(api, h, "t2").status_code == 201
    body = [{"op": "replace", "path": "/fixed_network", "value": "host"}]
    assert "Docker's host network" in err(api.patch("/v1/clustertemplates/t2", json=body, headers=h), 400)
    assert api.get("/v1/clustertemplates/t2", headers=h).json()["fixed_network"] is None


# ---- keypair names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "..", "a b", "k\x1b[31m", "é"])
def test_unsafe_keypair_names_are_refused(api: TestClient, auth: Auth, name: str) -> None:
    h = auth("p1_member")
    detail = err(
        api.post("/local/v1/keypairs", json={"name": name, "public_key": PUBLIC_KEY}, headers=h), 400
    )
    assert detail.startswith("Invalid keypair name") and "not starting with '.'" in detail
    assert api.get("/local/v1/keypairs", headers=h).json()["keypairs"] == []


def test_long_keypair_names_are_refused(api: TestClient, auth: Auth) -> None:
    r = api.post(
        "/local/v1/keypairs", json={"name": "x" * 256, "public_key": PUBLIC_KEY}, headers=auth("p1_member")
    )
    assert err(r, 400).endswith("Value should have a maximum character requirement of 255")


@pytest.mark.parametrize("name", ["testkey", "my-key_2.pub", "-dash", "_u", "K" * 255])
def test_safe_keypair_names_work(api: TestClient, auth: Auth, name: str) -> None:
    h = auth("p1_member")
    assert (
        api.post("/local/v1/keypairs", json={"name": name, "public_key": PUBLIC_KEY}, headers=h).status_code
        == 201
    )
    assert api.get(f"/local/v1/keypairs/{name}", headers=h).status_code == 200
    assert api.delete(f"/local/v1/keypairs/{name}", headers=h).status_code == 204


# ---- what to do after a failed update -----------------------------------------------------------


def test_patch_on_update_failed_says_what_to_do(
    api: TestClient, app: FastAPI, auth: Auth, cluster: str
) -> None:
    h = auth("p1_member", "latest")
    r = api.post(f"/v1/clusters/{cluster}/actions/resize", json={"node_count": 3}, headers=h)
    assert r.status_code == 202, r.text
    finish_all(app, failed_reason="node c-node-2 did not join")
    shown = api.get(f"/v1/clusters/{cluster}", headers=h).json()
    assert (shown["status"], shown["node_count"]) == ("UPDATE_FAILED", 1)
    body = [{"op": "replace", "path": "/node_count", "value": 3}]
    r = api.patch(f"/v1/clusters/{cluster}", json=body, headers=h)
    detail = err(r, 409)
    assert "Wait for the current operation to end" not in detail
    assert detail == (
        'Updating a cluster when status is "UPDATE_FAILED" is not supported. The last update failed '
        "(node c-node-2 did not join) and the node count was restored. Retry it with a resize, which a cluster "
        f'in UPDATE_FAILED accepts: POST /v1/clusters/{cluster}/actions/resize {{"node_count": N}} '
        "(`openstack coe cluster resize`, `flotilla cluster-resize`), or delete the cluster."
    )
    # and the advice works: the resize is accepted from UPDATE_FAILED
    r = api.post(f"/v1/clusters/{cluster}/actions/resize", json={"node_count": 3}, headers=h)
    assert r.status_code == 202, r.text
    assert api.get(f"/v1/clusters/{cluster}", headers=h).json()["status"] == "UPDATE_IN_PROGRESS"


def test_patch_while_in_progress_still_says_wait(api: TestClient, auth: Auth, cluster: str) -> None:
    h = auth("p1_member", "latest")
    assert (
        api.post(f"/v1/clusters/{cluster}/actions/resize", json={"node_count": 2}, headers=h).status_code
        == 202
    )
    body = [{"op": "replace", "path": "/node_count", "value": 3}]
    assert err(api.patch(f"/v1/clusters/{cluster}", json=body, headers=h), 409).endswith(
        "Wait for the current operation to end."
    )
