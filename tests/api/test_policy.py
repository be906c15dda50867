"""Who may see and change templates (reference §9 and the project's rule set).

* Project isolation: another project's private template is 404.
* Readers list and show; create/update/delete is 403.
* Members create, update and delete their own project's templates, never another
  project's, even a public one they can see (403).
* Only admins set ``public``/``hidden`` (403 otherwise).
* Public templates are visible to every project; public+hidden ones are not listed
  but a direct GET works.
* Admins list every project's cluster templates, but not through ``/v1/baymodels``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

Auth = Callable[..., dict[str, str]]
PUBLISH = "Not authorized to set public or hidden flag for cluster template."


@pytest.fixture(autouse=True)
def image(register_image: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return register_image("flotilla-node", "debian")


def create(
    api: TestClient, headers: dict[str, str], *, coll: str = "clustertemplates", **fields: Any
) -> httpx.Response:
    body: dict[str, Any] = {"coe": "swarm", "image_id": "flotilla-node", "keypair_id": "k", **fields}
    return api.post(f"/v1/{coll}", json=body, headers=headers)


def made(api: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    r = create(api, headers, **fields)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def rename(
    api: TestClient, headers: dict[str, str], ident: str, coll: str = "clustertemplates"
) -> httpx.Response:
    return api.patch(
        f"/v1/{coll}/{ident}", json=[{"op": "replace", "path": "/name", "value": "renamed"}], headers=headers
    )


def error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.json()["errors"][0]["status"] == status
    msg: str = r.json()["errors"][0]["detail"]
    return msg


def names(api: TestClient, headers: dict[str, str], coll: str = "clustertemplates") -> list[str]:
    r = api.get(f"/v1/{coll}", headers=headers)
    assert r.status_code == 200, r.text
    return sorted(t["name"] for t in r.json()[coll])


@pytest.fixture
def world(api: TestClient, auth: Auth) -> dict[str, dict[str, Any]]:
    """Templates of p1, p2 and admin, with every public/hidden combination."""
    return {
        "p1": made(api, auth("p1_member"), name="p1-private"),
        "p2": made(api, auth("p2_member"), name="p2-private"),
        "admin": made(api, auth("admin"), name="admin-private"),
        "pub": made(api, auth("admin"), name="public", public=True),
        "pubhid": made(api, auth("admin"), name="public-hidden", public=True, hidden=True),
        "privhid": made(api, auth("admin"), name="private-hidden", hidden=True),
    }


# ---- visibility ----------------------------------------------------------------------------


def test_list_per_caller(api: TestClient, auth: Auth, world: dict[str, dict[str, Any]]) -> None:
    assert names(api, auth("p1_member")) == ["p1-private", "public"]
    assert names(api, auth("p1_reader")) == ["p1-private", "public"]
    assert names(api, auth("p2_member")) == ["p2-private", "public"]
    # admins list all projects (cluster templates) ...
    assert names(api, auth("admin")) == sorted(
        ["p1-private", "p2-private", "admin-private", "public", "public-hidden", "private-hidden"]
    )
    # ... but not through baymodels: own project plus public (hidden included)
    assert names(api, auth("admin"), "baymodels") == sorted(
        ["admin-private", "public", "public-hidden", "private-hidden"]
    )
    assert names(api, auth("p1_member"), "baymodels") == ["p1-private", "public"]


def test_other_projects_private_template_is_404(
    api: TestClient, auth: Auth, world: dict[str, dict[str, Any]]
) -> None:
    p1 = world["p1"]
    for coll in ("clustertemplates", "baymodels"):  # Magnum says ClusterTemplate on both paths
        for ident in (p1["uuid"], p1["name"]):
            r = api.get(f"/v1/{coll}/{ident}", headers=auth("p2_member"))
            assert error(r, 404) == f"ClusterTemplate {ident} could not be found."
    # writes too: 404, not 403, so existence does not leak
    assert (
        error(rename(api, auth("p2_member"), p1["uuid"]), 404)
        == f"ClusterTemplate {p1['uuid']} could not be found."
    )
    r = api.delete(f"/v1/clustertemplates/{p1['uuid']}", headers=auth("p2_member"))
    assert error(r, 404) == f"ClusterTemplate {p1['uuid']} could not be found."
    assert api.get(f"/v1/clustertemplates/{p1['uuid']}", headers=auth("p1_member")).status_code == 200


def test_public_hidden_not_listed_but_get_works(
    api: TestClient, auth: Auth, world: dict[str, dict[str, Any]]
) -> None:
    ph = world["pubhid"]
    for who in ("p1_member", "p1_reader", "p2_member"):
        assert "public-hidden" not in names(api, auth(who))
        for coll in ("clustertemplates", "baymodels"):
            for ident in (ph["uuid"], "public-hidden"):
                r = api.get(f"/v1/{coll}/{ident}", headers=auth(who))
                assert r.status_code == 200, (who, coll, ident, r.text)
                assert r.json()["uuid"] == ph["uuid"]


def test_private_hidden_is_invisible_to_others(
    api: TestClient, auth: Auth, world: dict[str, dict[str, Any]]
) -> None:
    r = api.get(f"/v1/clustertemplates/{world['privhid']['uuid']}", headers=auth("p1_member"))
    assert error(r, 404).endswith("could not be found.")


def test_public_template_visible_to_all(
    api: TestClient, auth: Auth, world: dict[str, dict[str, Any]]
) -> None:
    for who in ("p1_member", "p1_reader", "p2_member"):
        r = api.get("/v1/clustertemplates/public", headers=auth(who))
        assert r.status_code == 200
        assert r.json()["project_id"] == "admin"


def test_admin_shows_any_template(api: TestClient, auth: Auth, world: dict[str, dict[str, Any]]) -> None:
    r = api.get(f"/v1/clustertemplates/{world['p1']['uuid']}", headers=auth("admin"))
    assert r.status_code == 200 and r.json()["project_id"] == "p1"


# ---- readers ---------------------------------------------------------------------------------


def test_reader_can_list_and_show(api: TestClient, auth: Auth, world: dict[str, dict[str, Any]]) -> None:
    assert api.get("/v1/clustertemplates/p1-private", headers=auth("p1_reader")).status_code == 200
    assert api.get("/v1/baymodels/detail", headers=auth("p1_reader")).status_code == 200


@pytest.mark.parametrize(
    ("coll", "rule"), [("clustertemplates", "clustertemplate"), ("baymodels", "baymodel")]
)
def test_reader_cannot_write(
    api: TestClient, auth: Auth, world: dict[str, dict[str, Any]], coll: str, rule: str
) -> None:
    h = auth("p1_reader")
    assert error(create(api, h, coll=coll), 403) == f"Policy doesn't allow {rule}:create to be performed."
    own = world["p1"]["uuid"]
    assert error(rename(api, h, own, coll), 403) == f"Policy doesn't allow {rule}:update to be performed."
    r = api.delete(f"/v1/{coll}/{own}", headers=h)
    assert error(r, 403) == f"Policy doesn't allow {rule}:delete to be performed."
    assert api.get(f"/v1/clustertemplates/{own}", headers=auth("p1_member")).json()["name"] == "p1-private"


# ---- members -------------------------------------------------------------------------------


def test_member_writes_own_templates(api: TestClient, auth: Auth, world: dict[str, dict[str, Any]]) -> None:
    h = auth("p1_member")
    own = world["p1"]["uuid"]
    r = rename(api, h, own)
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    assert api.delete(f"/v1/clustertemplates/{own}", headers=h).status_code == 204


def test_another_member_of_the_project_may_write(
    api: TestClient, app: Any, auth: Auth, world: dict[str, dict[str, Any]]
) -> None:
    from flotilla.services import tokens

    with app.state.runtime.db.session() as s:
        carol = tokens.create(s, user_id="carol", project_id="p1", roles=["member"])
    r = rename(api, {"X-Auth-Token": carol}, world["p1"]["uuid"])
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == "alice"  # the creator stays


@pytest.mark.parametrize(
    ("coll", "rule"), [("clustertemplates", "clustertemplate"), ("baymodels", "baymodel")]
)
def test_member_cannot_change_another_projects_public_template(
    api: TestClient, auth: Auth, world: dict[str, dict[str, Any]], coll: str, rule: str
) -> None:
    pub = world["pub"]["uuid"]
    h = auth("p1_member")
    r = api.patch(f"/v1/{coll}/{pub}", json=[{"op": "replace", "path": "/tags", "value": "mine"}], headers=h)
    assert error(r, 403) == f"Policy doesn't allow {rule}:update to be performed."
    r = api.delete(f"/v1/{coll}/{pub}", headers=h)
    assert error(r, 403) == f"Policy doesn't allow {rule}:delete to be performed."
    after = api.get(f"/v1/clustertemplates/{pub}", headers=auth("admin")).json()
    assert (after["name"], after["tags"]) == ("public", None)


# ---- publish ---------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["public", "hidden"])
def test_only_admins_publish_on_create(api: TestClient, auth: Auth, flag: str) -> None:
    assert error(create(api, auth("p1_member"), **{flag: True}), 403) == PUBLISH
    assert made(api, auth("admin"), **{flag: True})[flag] is True
    # false is the default: asking for it is fine
    assert made(api, auth("p1_member"), **{flag: False})[flag] is False


def test_baymodel_create_checks_only_public(api: TestClient, auth: Auth) -> None:
    assert error(create(api, auth("p1_member"), coll="baymodels", public=True), 403) == PUBLISH
    r = create(api, auth("p1_member"), coll="baymodels", hidden=True)
    assert r.status_code == 201, r.text
    assert r.json()["hidden"] is True


@pytest.mark.parametrize("flag", ["public", "hidden"])
def test_only_admins_publish_on_update(
    api: TestClient, auth: Auth, world: dict[str, dict[str, Any]], flag: str
) -> None:
    own = world["p1"]["uuid"]
    ops = [{"op": "replace", "path": f"/{flag}", "value": True}]
    r = api.patch(f"/v1/clustertemplates/{own}", json=ops, headers=auth("p1_member"))
    assert error(r, 403) == PUBLISH
    r = api.patch(f"/v1/clustertemplates/{own}", json=ops, headers=auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json()[flag] is True
    # an owner may not take it back either
    r = api.patch(
        f"/v1/clustertemplates/{own}",
        json=[{"op": "replace", "path": f"/{flag}", "value": False}],
        headers=auth("p1_member"),
    )
    assert error(r, 403) == PUBLISH


def test_published_template_reaches_other_projects(
    api: TestClient, auth: Auth, world: dict[str, dict[str, Any]]
) -> None:
    own = world["p1"]["uuid"]
    assert "p1-private" not in names(api, auth("p2_member"))
    r = api.patch(
        f"/v1/clustertemplates/{own}",
        json=[{"op": "replace", "path": "/public", "value": True}],
        headers=auth("admin"),
    )
    assert r.status_code == 200, r.text
    assert "p1-private" in names(api, auth("p2_member"))
    assert api.get(f"/v1/baymodels/{own}", headers=auth("p2_member")).status_code == 200


# ---- admins ------------------------------------------------------------------------------------


def test_admin_updates_and_deletes_other_projects_templates(
    api: TestClient, auth: Auth, world: dict[str, dict[str, Any]]
) -> None:
    p2 = world["p2"]["uuid"]
    r = rename(api, auth("admin"), p2)
    assert r.status_code == 200, r.text
    assert r.json()["project_id"] == "p2"  # ownership does not move
    assert api.delete(f"/v1/clustertemplates/{p2}", headers=auth("admin")).status_code == 204
    assert names(api, auth("p2_member")) == ["public"]


def test_admin_baymodel_view_has_no_all_projects_scope(
    api: TestClient, auth: Auth, world: dict[str, dict[str, Any]]
) -> None:
    p2 = world["p2"]["uuid"]
    assert (
        error(api.get(f"/v1/baymodels/{p2}", headers=auth("admin")), 404)
        == f"ClusterTemplate {p2} could not be found."
    )
