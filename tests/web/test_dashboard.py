"""The dashboard through the ASGI app (in-process, SQLite): sessions, CSRF, every page,
policy, and the forms' messages being the API's."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from dashboard_helpers import (
    TEMPLATE_FORM,
    Conductor,
    Dashboard,
    ctx_for,
    location,
    make_cluster,
    make_template,
)
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flotilla.services import quotas

Dash = Callable[[str], Dashboard]

# --------------------------------------------------------------------------- sessions


def test_login_with_a_good_token_sets_a_strict_httponly_cookie(
    api: TestClient, tokens: dict[str, str]
) -> None:
    dash = Dashboard(api)
    response = dash.login(tokens["p1_member"])
    assert location(response) == "/dashboard/clusters"
    cookies = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    session = next(c for c in cookies if c.startswith("flotilla_session="))
    assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/dashboard" in session
    assert tokens["p1_member"] not in session  # encrypted, not the token itself
    page = api.get("/dashboard/clusters")
    assert page.status_code == 200 and "alice @ p1" in page.text and "member" in page.text


def test_login_with_a_bad_token_is_refused(api: TestClient) -> None:
    response = Dashboard(api).login("flt_not-a-real-token")
    assert response.status_code == 401
    assert "the token is invalid or expired" in response.text
    assert "flotilla_session" not in response.headers.get("set-cookie", "")
    assert location(api.get("/dashboard/clusters", follow_redirects=False)).startswith("/dashboard/login")


def test_pages_need_a_session_and_remember_where_to_go(api: TestClient) -> None:
    response = api.get("/dashboard/templates?marker=x", follow_redirects=False)
    assert location(response) == "/dashboard/login?next=/dashboard/templates%3Fmarker%3Dx"
    login = api.get("/dashboard/login?next=//evil.example/")
    assert 'name="next" value="/dashboard/clusters"' in login.text  # no open redirect


def test_logout_ends_the_session(dashboard: Dash) -> None:
    dash = dashboard("admin")
    assert location(dash.post("/dashboard/logout")) == "/dashboard/login"
    assert location(dash.get("/dashboard/clusters", follow_redirects=False)).startswith("/dashboard/login")


def test_logout_ends_the_session_server_side(dashboard: Dash, app: FastAPI) -> None:
    """A copy of the session cookie taken before the sign-out no longer works after it."""
    dash = dashboard("admin")
    stolen = dash.client.cookies.get("flotilla_session")
    assert stolen
    assert location(dash.post("/dashboard/logout")) == "/dashboard/login"
    with TestClient(app) as other:
        other.cookies.set("flotilla_session", stolen, path="/dashboard")
        response = other.get("/dashboard/clusters", follow_redirects=False)
    assert location(response).startswith("/dashboard/login")


def test_a_revoked_session_cookie_is_refused(api: TestClient, tokens: dict[str, str]) -> None:
    api.cookies.set("flotilla_session", "v1:forged", path="/dashboard")
    response = api.get("/dashboard/clusters", follow_redirects=False)
    assert "expired=1" in location(response)


# --------------------------------------------------------------------------- CSRF


def test_posts_without_the_csrf_token_are_refused(dashboard: Dash, image: dict[str, Any]) -> None:
    dash = dashboard("admin")
    for csrf in ("", "forged", dashboard("p1_member").csrf()):
        response = dash.post("/dashboard/templates/new", TEMPLATE_FORM, csrf=csrf)
        assert response.status_code == 403
        assert "security token" in response.text
    assert "tpl-one" not in dash.get("/dashboard/templates").text
    # The sign-in form is protected too (login CSRF).
    fresh = Dashboard(TestClient(dash.client.app))
    assert fresh.client.post("/dashboard/login", data={"token": "x"}).status_code == 403


def test_json_posts_are_not_accepted(dashboard: Dash) -> None:
    dash = dashboard("admin")
    response = dash.client.post("/dashboard/templates/new", json={"csrf": dash.csrf(), **TEMPLATE_FORM})
    assert response.status_code == 400


# --------------------------------------------------------------------------- pages


def test_every_page_renders_for_an_admin(
    dashboard: Dash, image: dict[str, Any], conductor: Conductor
) -> None:
    dash = dashboard("admin")
    template = make_template(dash)
    cluster = make_cluster(dash, template)
    pages = [
        "/dashboard", "/dashboard/clusters", "/dashboard/clusters/new", f"/dashboard/clusters/{cluster}",
        f"/dashboard/clusters/{cluster}/scale", f"/dashboard/clusters/{cluster}/delete",
        f"/dashboard/clusters/{cluster}/config", "/dashboard/templates", "/dashboard/templates/new",
        f"/dashboard/templates/{template}", f"/dashboard/templates/{template}/delete",
        "/dashboard/admin/quotas", "/dashboard/admin/services", f"/dashboard/clusters/{cluster}/status.json",
        "/dashboard/static/dashboard.css", "/dashboard/static/live.js",
    ]  # fmt: skip
    for path in pages:
        response = dash.get(path)
        assert response.status_code == 200, (path, response.text[:1500])
    html = dash.get(f"/dashboard/clusters/{cluster}")
    assert "frame-ancestors 'none'" in html.headers["content-security-policy"]
    assert html.headers["cache-control"] == "no-store"
    assert dash.get("/dashboard/static/secret.key").status_code == 404
    assert dash.get("/dashboard/clusters/nope").status_code == 404
    assert "Cluster nope could not be found." in dash.get("/dashboard/clusters/nope").text


def test_reader_sees_no_buttons_and_gets_403_on_every_post(dashboard: Dash, image: dict[str, Any]) -> None:
    member = dashboard("p1_member")
    template = make_template(member)
    cluster = make_cluster(member, template)
    reader = dashboard("p1_reader")
    for path, ids in (
        ("/dashboard/templates", ("new-template", "Create cluster")),
        (f"/dashboard/templates/{template}", ("delete-template", "Create cluster")),
        ("/dashboard/clusters", ("new-cluster",)),
        (f"/dashboard/clusters/{cluster}", ("delete-cluster", 'id="scale"', "rotate-ca")),
        (f"/dashboard/clusters/{cluster}/config", ("download-config",)),
    ):
        text = reader.get(path).text
        assert "web1" in text or "tpl-one" in text
        for marker in ids:
            assert marker not in text, (path, marker)
    for path, form in (
        ("/dashboard/templates/new", TEMPLATE_FORM),
        (f"/dashboard/templates/{template}/delete", {}),
        ("/dashboard/clusters/new", {"cluster_template_id": template, "name": "r1"}),
        (f"/dashboard/clusters/{cluster}/scale", {"node_count": "1"}),
        (f"/dashboard/clusters/{cluster}/delete", {}),
        (f"/dashboard/clusters/{cluster}/rotate-ca", {}),
        (f"/dashboard/clusters/{cluster}/config.zip", {}),
    ):
        response = reader.post(path, form)
        assert response.status_code == 403, (path, response.status_code, response.text[:800])
        assert "Policy doesn&#39;t allow" in response.text
    for path in ("/dashboard/templates/new", "/dashboard/clusters/new", "/dashboard/admin/quotas"):
        assert reader.get(path).status_code == 403
    assert "Quotas" not in reader.get("/dashboard/clusters").text


def test_members_see_only_their_project_and_no_admin_pages(
    dashboard: Dash, image: dict[str, Any], app: FastAPI
) -> None:
    alice = dashboard("p1_member")
    cluster = make_cluster(alice, make_template(alice))
    bob = dashboard("p2_member")
    assert "web1" not in bob.get("/dashboard/clusters").text
    assert bob.get(f"/dashboard/clusters/{cluster}").status_code == 404
    assert bob.get(f"/dashboard/clusters/{cluster}/status.json").status_code == 404
    assert bob.get("/dashboard/admin/services").status_code == 403
    admin = dashboard("admin")
    assert "web1" in admin.get("/dashboard/clusters").text
    with app.state.runtime.db.session() as s:
        quotas.create(s, ctx_for("admin"), project_id="p2", resource="Cluster", hard_limit=3)
    quota_page = admin.get("/dashboard/admin/quotas").text
    num = r'\s*<td class="num">'
    assert re.search(
        rf"<td>p1</td><td>Cluster</td>{num}20</td>{num}1</td>{num}2</td>\s*<td>operator default", quota_page
    )
    assert re.search(
        rf"<td>p2</td><td>Cluster</td>{num}3</td>{num}0</td>{num}0</td>\s*<td>set for the project", quota_page
    )
    assert "1 clusters, 2 nodes" in quota_page


# --------------------------------------------------------------------------- templates


def test_template_created_through_the_form_is_listed(dashboard: Dash, image: dict[str, Any]) -> None:
    dash = dashboard("p1_member")
    form_page = dash.get("/dashboard/templates/new").text
    for option in ("flotilla-node", "m1.small", "public", 'name="public"'):
        if option == 'name="public"':
            assert option not in form_page  # only admins may publish
        else:
            assert f'value="{option}"' in form_page
    uuid = make_template(dash, tls_disabled="on")
    detail = dash.get(f"/dashboard/templates/{uuid}").text
    assert "tpl-one" in detail and "foo" in detail and "overlay2" in detail
    listing = dash.get("/dashboard/templates").text
    assert f'data-uuid="{uuid}"' in listing and "tpl-one" in listing


def test_template_form_shows_the_apis_message(
    dashboard: Dash, image: dict[str, Any], api: TestClient, auth: Callable[..., dict[str, str]]
) -> None:
    dash = dashboard("p1_member")
    cases = (
        ({"flavor_id": "m1.huge"}, {"flavor_id": "m1.huge"}, "flavor_id"),
        ({"docker_volume_size": "lots"}, {"docker_volume_size": "lots"}, "docker_volume_size"),
        ({"coe": "nomad"}, {"coe": "nomad"}, "coe"),
        ({"network_driver": "calico"}, {"network_driver": "calico"}, "network_driver"),
    )
    for over, json_over, field in cases:
        response = dash.post("/dashboard/templates/new", {**TEMPLATE_FORM, **over})
        assert response.status_code == 400
        body = {**{k: v for k, v in TEMPLATE_FORM.items() if v}, "docker_volume_size": 5,
                "labels": {"foo": "bar"}, **json_over}  # fmt: skip
        api_error = api.post("/v1/clustertemplates", json=body, headers=auth("p1_member"))
        assert api_error.status_code == 400
        message = api_error.json()["errors"][0]["detail"]
        assert message.replace("'", "&#39;") in response.text, (message, response.text[:3000])
        assert re.search(rf'<div class="field invalid">\s*<label for="f-{field}">', response.text), field
        assert f'value="{over[next(iter(over))]}"' in response.text  # what was typed stays
    unknown_flavor = dash.post("/dashboard/templates/new", {**TEMPLATE_FORM, "flavor_id": "m1.huge"}).text
    assert "Unable to find flavor m1.huge. Available flavors: m1.tiny, m1.small" in unknown_flavor
    bad_labels = dash.post("/dashboard/templates/new", {**TEMPLATE_FORM, "labels": "justakey"})
    assert bad_labels.status_code == 400 and "KEY=VALUE" in bad_labels.text
    assert "tpl-one" not in dash.get("/dashboard/templates").text


def test_template_delete_asks_first_and_refuses_while_in_use(dashboard: Dash, image: dict[str, Any]) -> None:
    dash = dashboard("p1_member")
    template = make_template(dash)
    confirm = dash.get(f"/dashboard/templates/{template}/delete").text
    assert "Delete cluster template tpl-one?" in confirm and "cannot be undone" in confirm
    cluster = make_cluster(dash, template)
    refused = dash.post(f"/dashboard/templates/{template}/delete")
    assert refused.status_code == 400 and "is referenced by one or multiple clusters" in refused.text
    assert cluster
    other = make_template(dash, name="tpl-two")
    assert location(dash.post(f"/dashboard/templates/{other}/delete")) == "/dashboard/templates?done=deleted"
    listing = dash.get("/dashboard/templates?done=deleted").text
    assert "tpl-two" not in listing and "The cluster template was deleted." in listing
