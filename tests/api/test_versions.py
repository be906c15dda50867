"""Version documents and microversion negotiation (reference §2)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

HEADERS = ("openstack-api-minimum-version", "openstack-api-maximum-version", "openstack-api-version")
UNSUPPORTED_BODY = {
    "errors": [
        {
            "code": "magnum.microversion-unsupported",
            "title": "Requested microversion is unsupported",
            "min_version": "1.1",
            "max_version": "1.10",
            "links": [
                {"rel": "help", "href": "http://docs.openstack.org/api-guide/compute/microversions.html"}
            ],
        }
    ]
}
RESOURCES = (
    "baymodels", "bays", "clustertemplates", "clusters", "quotas", "certificates", "mservices", "stats",
    "federations",
)  # fmt: skip
Auth = Callable[..., dict[str, str]]


def test_root_document(api: TestClient) -> None:
    r = api.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "name": "OpenStack Magnum API",
        "description": "Magnum is an OpenStack project which aims to provide container cluster management.",
        "versions": [
            {
                "id": "v1",
                "status": "CURRENT",
                "min_version": "1.1",
                "max_version": "1.10",
                "links": [{"href": "http://testserver/v1/", "rel": "self"}],
            }
        ],
    }
    for h in HEADERS:
        assert h not in r.headers, f"{h} must not be on GET /"
    assert re.fullmatch(r"req-[0-9a-f-]{36}", r.headers["x-openstack-request-id"])


def test_root_ignores_the_microversion_header(api: TestClient) -> None:
    r = api.get("/", headers={"OpenStack-API-Version": "container-infra 9.9"})
    assert r.status_code == 200
    assert r.json()["versions"][0]["max_version"] == "1.10"


@pytest.mark.parametrize("path", ["/v1", "/v1/"])
def test_v1_document(api: TestClient, path: str) -> None:
    r = api.get(path)  # no token: the version documents are public
    assert r.status_code == 200
    doc = r.json()
    assert doc["id"] == "v1"
    assert doc["media_types"] == [
        {"base": "application/json", "type": "application/vnd.openstack.magnum.v1+json"}
    ]
    assert doc["links"] == [
        {"href": "http://testserver/v1/", "rel": "self"},
        {
            "href": "http://docs.openstack.org/developer/magnum/dev/api-spec-v1.html",
            "rel": "describedby",
            "type": "text/html",
        },
    ]
    for res in RESOURCES:
        assert doc[res] == [
            {"href": f"http://testserver/v1/{res}/", "rel": "self"},
            {"href": f"http://testserver/{res}/", "rel": "bookmark"},
        ], res
    assert doc["nodegroups"] == [
        {"href": "http://testserver/v1/clusters/{cluster_id}/nodegroups", "rel": "self"},
        {"href": "http://testserver/clusters/{cluster_id}/nodegroups", "rel": "bookmark"},
    ]
    assert set(doc) == {"id", "media_types", "links", "nodegroups", *RESOURCES}


def test_links_use_the_host_the_client_addressed(api: TestClient) -> None:
    r = api.get("/", headers={"Host": "magnum.example.org:9511"})
    assert r.json()["versions"][0]["links"] == [{"href": "http://magnum.example.org:9511/v1/", "rel": "self"}]
    r = api.get("/v1", headers={"Host": "magnum.example.org:9511"})
    assert r.json()["clusters"][1] == {"href": "http://magnum.example.org:9511/clusters/", "rel": "bookmark"}


@pytest.mark.parametrize(
    ("sent", "negotiated"),
    [
        (None, "1.1"),
        ("container-infra latest", "1.10"),
        ("container-infra LATEST", "1.10"),
        ("container-infra 1.1", "1.1"),
        ("container-infra 1.5", "1.5"),
        ("container-infra 1.9", "1.9"),
        ("container-infra 1.10", "1.10"),
    ],
)
def test_negotiation(api: TestClient, auth: Auth, sent: str | None, negotiated: str) -> None:
    headers = auth("p1_member")
    if sent is not None:
        headers["OpenStack-API-Version"] = sent
    r = api.get("/v1/clustertemplates", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["openstack-api-version"] == f"container-infra {negotiated}"
    assert r.headers["openstack-api-minimum-version"] == "container-infra 1.1"
    assert r.headers["openstack-api-maximum-version"] == "container-infra 1.10"
    assert r.headers["vary"] == "OpenStack-API-Version"


@pytest.mark.parametrize("value", ["2.0", "1.11", "1.0", "0.9", "3.1"])
def test_unsupported_version_is_406_with_magnums_body(api: TestClient, auth: Auth, value: str) -> None:
    r = api.get("/v1/clustertemplates", headers=auth("p1_member", value))
    assert r.status_code == 406
    assert r.headers["content-type"] == "application/json"
    assert r.json() == UNSUPPORTED_BODY
    assert r.headers["openstack-api-minimum-version"] == "container-infra 1.1"
    assert r.headers["openstack-api-maximum-version"] == "container-infra 1.10"
    assert "openstack-api-version" in r.headers
    assert r.headers["x-openstack-request-id"].startswith("req-")


@pytest.mark.parametrize(
    "value",
    [
        "container-infra 1",  # what `magnum --magnum-api-version 1` sends
        "container-infra",
        "compute 1.2",
        "Container-Infra 1.2",
        "container-infra 1.x",
        "container-infra one.two",
        "container-infra 1.2 extra",
        "1.2",
    ],
)
def test_malformed_header_is_406_with_empty_title(api: TestClient, auth: Auth, value: str) -> None:
    headers = auth("p1_member")
    headers["OpenStack-API-Version"] = value
    r = api.get("/v1/clustertemplates", headers=headers)
    assert r.status_code == 406
    assert r.json() == {
        "errors": [{"request_id": "", "code": "", "status": 406, "title": "", "detail": "", "links": []}]
    }
    for h in HEADERS:
        assert h not in r.headers, f"{h} must not be on a malformed-header 406"


def test_version_is_checked_before_authentication(api: TestClient) -> None:
    r = api.get("/v1/clustertemplates", headers={"OpenStack-API-Version": "container-infra 2.0"})
    assert r.status_code == 406
    assert r.json() == UNSUPPORTED_BODY


def test_version_headers_on_controller_errors(api: TestClient, auth: Auth) -> None:
    r = api.get("/v1/clustertemplates/nope", headers=auth("p1_member", "1.7"))
    assert r.status_code == 404
    assert r.json()["errors"][0]["title"] == "ClusterTemplate nope could not be found"
    assert r.headers["openstack-api-version"] == "container-infra 1.7"
    assert r.headers["openstack-api-maximum-version"] == "container-infra 1.10"
    assert r.headers["vary"] == "OpenStack-API-Version"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/no-such-collection", 404), ("PUT", "/v1/clustertemplates", 405)],
)
def test_no_version_headers_on_framework_errors(
    api: TestClient, auth: Auth, method: str, path: str, status: int
) -> None:
    r = api.request(method, path, headers=auth("p1_member", "1.7"))
    assert r.status_code == status
    assert r.json()["errors"][0]["code"] == "" and r.json()["errors"][0]["title"] == ""
    for h in (*HEADERS, "vary", "x-flotilla-framework-error"):
        assert h not in r.headers, f"{h} must not be on a routing-level {status}"
    assert r.headers["x-openstack-request-id"].startswith("req-")


def test_version_headers_without_v1_prefix(api: TestClient, auth: Auth) -> None:
    r = api.get("/clustertemplates", headers=auth("p1_member", "latest"))
    assert r.status_code == 200
    assert r.headers["openstack-api-version"] == "container-infra 1.10"
