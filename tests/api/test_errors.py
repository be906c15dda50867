"""The error body, status codes and path rules (reference §1 and §3)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

Auth = Callable[..., dict[str, str]]
ERROR_KEYS = {"request_id", "code", "status", "title", "detail", "links"}


def assert_error(r: httpx.Response, status: int, detail: str, *, code: str = "client") -> dict[str, Any]:
    """Magnum's body: one error, title = detail up to its first '.', request_id always ''."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["errors"] and len(body["errors"]) == 1
    err: dict[str, Any] = body["errors"][0]
    assert set(err) == ERROR_KEYS
    assert err["request_id"] == ""
    assert err["code"] == code
    assert err["status"] == status
    assert err["links"] == []
    assert err["detail"] == detail
    assert err["title"] == detail.split(".")[0]
    assert r.headers["x-openstack-request-id"].startswith("req-")
    return err


@pytest.fixture
def image(register_image: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return register_image("flotilla-node", "debian")


def _create(api: TestClient, headers: dict[str, str], **fields: Any) -> httpx.Response:
    body: dict[str, Any] = {"coe": "swarm", "image_id": "flotilla-node", **fields}
    return api.post("/v1/clustertemplates", json=body, headers=headers)


# ---- 400 ---------------------------------------------------------------------------------


def test_400_unknown_query_parameter(api: TestClient, auth: Auth) -> None:
    r = api.get("/v1/clustertemplates?colour=blue", headers=auth("p1_member"))
    assert_error(r, 400, 'Unknown argument: "colour"')
    r = api.get("/v1/baymodels/detail?limit=1&x=1", headers=auth("p1_member"))
    assert_error(r, 400, 'Unknown argument: "x"')


def test_400_unknown_query_parameter_on_show(api: TestClient, auth: Auth, image: dict[str, Any]) -> None:
    uuid = _create(api, auth("p1_member")).json()["uuid"]
    r = api.get(f"/v1/clustertemplates/{uuid}?limit=1", headers=auth("p1_member"))
    assert_error(r, 400, 'Unknown argument: "limit"')


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_400_body_without_json_content_type(api: TestClient, auth: Auth, ctype: str | None) -> None:
    headers = auth("p1_member")
    if ctype:
        headers["Content-Type"] = ctype
    raw = '{"coe": "swarm", "image_id": "flotilla-node"}'
    r = api.post("/v1/clustertemplates", content=raw.encode(), headers=headers)
    err = assert_error(r, 400, f'Unknown argument: "{raw}"')
    assert err["title"].startswith('Unknown argument: "{"coe"')


def test_400_invalid_json(api: TestClient, auth: Auth) -> None:
    headers = {**auth("p1_member"), "Content-Type": "application/json"}
    r = api.post("/v1/clustertemplates", content=b'{"coe": ', headers=headers)
    assert r.status_code == 400
    assert r.json()["errors"][0]["detail"].startswith("The request body is not valid JSON")


def test_400_body_not_an_object(api: TestClient, auth: Auth) -> None:
    r = api.post("/v1/clustertemplates", json=["coe", "swarm"], headers=auth("p1_member"))
    assert_error(r, 400, "Invalid input for argument cluster_template: expected a JSON object.")


def test_400_unknown_body_attribute(api: TestClient, auth: Auth, image: dict[str, Any]) -> None:
    r = _create(api, auth("p1_member"), colour="blue")
    assert_error(r, 400, "Unknown attribute for argument cluster_template: colour")
    r = api.post(
        "/v1/baymodels",
        json={"coe": "swarm", "image_id": "flotilla-node", "keypair_id": "k", "colour": "x"},
        headers=auth("p1_member"),
    )
    assert_error(r, 400, "Unknown attribute for argument baymodel: colour")


def test_400_title_is_cut_at_the_first_dot(api: TestClient, auth: Auth, image: dict[str, Any]) -> None:
    r = _create(api, auth("p1_member"), flavor_id="m9.huge")
    err = assert_error(
        r, 400, "Unable to find flavor m9.huge. Available flavors: m1.tiny, m1.small, m1.medium, m1.large."
    )
    assert err["title"] == "Unable to find flavor m9"


def test_400_mandatory_field(api: TestClient, auth: Auth) -> None:
    r = api.post("/v1/clustertemplates", json={"image_id": "x"}, headers=auth("p1_member"))
    assert_error(r, 400, "Invalid input for field/attribute coe. Value: 'None'. Mandatory field missing.")


# ---- 401 / 403 ---------------------------------------------------------------------------


def test_401_without_token(api: TestClient) -> None:
    r = api.get("/v1/clustertemplates")
    assert_error(r, 401, "Authentication required: send an X-Auth-Token header.")
    assert r.headers["openstack-api-version"] == "container-infra 1.1"


def test_401_with_unknown_token(api: TestClient, tokens: dict[str, str]) -> None:
    r = api.get("/v1/clustertemplates", headers={"X-Auth-Token": "flt_not-a-real-token"})
    assert_error(
        r, 401, "The request you have made requires authentication: the token is invalid or expired."
    )


def test_401_on_the_local_catalog(api: TestClient) -> None:
    r = api.get("/local/v1/images")
    assert_error(r, 401, "Authentication required: send an X-Auth-Token header.")


def test_403_policy(api: TestClient, auth: Auth, image: dict[str, Any]) -> None:
    r = _create(api, auth("p1_reader"))
    assert_error(r, 403, "Policy doesn't allow clustertemplate:create to be performed.")


# ---- 404 / 405 / 409 ---------------------------------------------------------------------


def test_404_unknown_template(api: TestClient, auth: Auth) -> None:
    r = api.get("/v1/clustertemplates/nope", headers=auth("p1_member"))
    assert_error(r, 404, "ClusterTemplate nope could not be found.")
    uuid = "0b1bd5a4-6e04-4b87-9a74-5a1a0d1f4a2e"
    r = api.delete(f"/v1/clustertemplates/{uuid}", headers=auth("p1_member"))
    assert_error(r, 404, f"ClusterTemplate {uuid} could not be found.")
    r = api.patch(f"/v1/baymodels/{uuid}", json=[], headers=auth("p1_member"))
    assert_error(r, 404, f"ClusterTemplate {uuid} could not be found.")


@pytest.mark.parametrize(
    "path", ["/v1/nothing", "/nothing", "/v1/clustertemplates.json", "/v1/clustertemplates/a/b/c"]
)
def test_404_unknown_path_has_empty_title(api: TestClient, auth: Auth, path: str) -> None:
    r = api.get(path, headers=auth("p1_member"))
    assert_error(r, 404, "", code="")


def test_404_unknown_path_needs_no_token(api: TestClient) -> None:
    assert_error(api.get("/v1/nothing"), 404, "", code="")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/clustertemplates"),
        ("DELETE", "/v1/clustertemplates"),
        ("POST", "/v1/clustertemplates/some-name"),
        ("PUT", "/v1/baymodels/detail"),
        ("POST", "/"),
    ],
)
def test_405_wrong_method(api: TestClient, auth: Auth, method: str, path: str) -> None:
    r = api.request(method, path, headers=auth("p1_member"))
    assert_error(r, 405, "", code="")


def test_409_duplicate_names_on_lookup(api: TestClient, auth: Auth, image: dict[str, Any]) -> None:
    h = auth("p1_member")
    first = _create(api, h, name="twin")
    second = _create(api, h, name="twin")
    assert first.status_code == second.status_code == 201  # names are not unique
    msg = "Multiple ClusterTemplates exist with same name. Please use the ClusterTemplate uuid instead."
    for method in ("GET", "DELETE"):
        assert_error(api.request(method, "/v1/clustertemplates/twin", headers=h), 409, msg)
    r = api.patch(
        "/v1/clustertemplates/twin", json=[{"op": "replace", "path": "/tags", "value": "x"}], headers=h
    )
    assert_error(r, 409, msg)
    # by uuid both still work
    assert api.get(f"/v1/clustertemplates/{first.json()['uuid']}", headers=h).status_code == 200


def test_409_duplicate_uuid_on_create(api: TestClient, auth: Auth, image: dict[str, Any]) -> None:
    uuid = "5d12f6fd-a196-4bf0-ae4c-1f639a523a52"
    assert _create(api, auth("p1_member"), uuid=uuid).status_code == 201
    r = _create(api, auth("p2_member"), uuid=uuid)
    assert_error(r, 409, f"A ClusterTemplate with UUID {uuid} already exists.")


# ---- path rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/clustertemplates", "/v1/clustertemplates/", "/clustertemplates", "/clustertemplates/"]
)
def test_path_forms_are_equivalent(api: TestClient, auth: Auth, image: dict[str, Any], path: str) -> None:
    h = auth("p1_member")
    made = _create(api, h, name="same").json()
    r = api.get(path, headers=h)
    assert r.status_code == 200, r.text
    assert [t["uuid"] for t in r.json()["clustertemplates"]] == [made["uuid"]]
    one = api.get(path.rstrip("/") + f"/{made['uuid']}/", headers=h)
    assert one.status_code == 200
    assert one.json()["name"] == "same"


def test_create_without_v1_prefix_and_with_slash(api: TestClient, auth: Auth, image: dict[str, Any]) -> None:
    r = api.post(
        "/baymodels/",
        json={"coe": "swarm", "image_id": "flotilla-node", "keypair_id": "k"},
        headers=auth("p1_member"),
    )
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"http://testserver/v1/baymodels/{r.json()['uuid']}"


def test_every_response_has_a_request_id(api: TestClient, auth: Auth) -> None:
    seen = set()
    for path in ("/", "/v1", "/v1/clustertemplates", "/v1/nothing", "/local/v1/flavors"):
        r = api.get(path, headers=auth("p1_member"))
        rid = r.headers["x-openstack-request-id"]
        assert re.fullmatch(r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", rid)
        seen.add(rid)
    assert len(seen) == 5
