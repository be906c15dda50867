"""The dashboard in a real browser (headless Chromium) against a real ``flotilla serve``.

* ``test_fake_provider_flow``: the fake provider and the swarm-mode COE: sign in
  (a bad token, then the admin's), the template form (an API error shown on the
  field, then success), the cluster form, the cluster page reaching CREATE_COMPLETE
  by itself, scale to 2 nodes (UPDATE_COMPLETE by itself), CA rotation, delete with
  confirmation and the page ending on the deletion; every admin page on the way.
* ``test_local_provider_flow`` (also ``e2e``): the docker COE on the local provider
  (a real Docker Engine): live steps and elapsed time while the node boots, then
  CREATE_COMPLETE, the scale refusal (a single Docker host), the client config page,
  delete.

Every page is saved to ``artifacts/screenshots/`` at 1366x768.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import Browser, Served, chrome, flotilla_serve, require_browser

pytestmark = pytest.mark.browser

TEMPLATE = {
    "name": "web-swarm", "coe": "swarm-mode", "image_id": "flotilla-node", "flavor_id": "m1.small",
    "master_flavor_id": "m1.small", "docker_volume_size": "5", "docker_storage_driver": "overlay2",
    "external_network_id": "public", "dns_nameserver": "8.8.8.8", "labels": "team=web",
}  # fmt: skip


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    require_browser()
    with chrome(tmp_path / "chrome-profile") as d:
        yield d


def _register_image(server: Served, source: str | None) -> None:
    body = {"name": "flotilla-node", "os_distro": "debian", **({"source": source} if source else {})}
    response = server.api("POST", "/local/v1/images", json=body)
    assert response.status_code == 201, response.text


def _sign_in(b: Browser, server: Served) -> None:
    b.go("/dashboard/clusters")
    b.wait_text("Sign in to Flotilla")
    b.shot("01-login")
    b.fill({"token": "flt_wrong"})
    b.click("#login")
    b.wait_text("the token is invalid or expired")
    b.shot("02-login-error")
    b.fill({"token": server.token})
    b.click("#login")
    b.wait_text("admin @ admin")
    assert b.driver.current_url.endswith("/dashboard/clusters")
    b.shot("03-clusters-empty")


def _create_template(b: Browser, values: dict[str, str]) -> None:
    b.go("/dashboard/templates")
    b.click("#new-template")
    b.wait_text("Create a cluster template")
    b.fill({**values, "dns_nameserver": "8.8.8"})
    b.click("#create-template")
    b.wait_text("The template was not created.")
    message = "Expected a single dns address or comma separated dns list, but received 8.8.8."
    assert message in b.text("#form-error")
    assert message in b.text(".field.invalid")
    b.shot("04-template-form-error")
    b.shot("04-template-form-error-full", full=True)
    b.fill({"dns_nameserver": "8.8.8.8"})
    b.click("#create-template")
    b.wait(lambda: "/dashboard/templates/" in b.driver.current_url, 15, "no template page")
    assert values["name"] in b.text("h1")
    b.shot("05-template-detail")
    b.go("/dashboard/templates")
    b.wait_text(values["name"])
    b.shot("06-templates-list")


def _create_cluster(b: Browser, name: str, template: str, nodes: str) -> str:
    from selenium.webdriver.support.ui import Select

    b.go("/dashboard/clusters")
    b.click("#new-cluster")
    b.wait_text("Create a cluster")
    b.fill({"name": name, "node_count": nodes, "create_timeout": "10"})
    Select(b.el('[name="cluster_template_id"]')).select_by_visible_text(template)
    b.shot("07-cluster-form")
    b.click("#create-cluster")
    b.wait(lambda: "/dashboard/clusters/" in b.driver.current_url and b.el("#live"), 15, "no cluster page")
    return str(b.driver.current_url.split("/dashboard/clusters/")[1].split("?")[0])


def _deleted(b: Browser) -> bool:
    """The page ended on the deletion: the cluster page's banner, or the list's notice
    when the delete finished before the cluster page was even shown."""
    if b.driver.current_url.endswith("/dashboard/clusters?done=deleted"):
        return "The cluster was deleted." in b.text()
    return bool(b.el("#gone").is_displayed())


def _status(b: Browser) -> str:
    return b.text("[data-field=status]")


def test_fake_provider_flow(driver: Any, tmp_path: Path) -> None:
    with flotilla_serve(
        tmp_path, FLOTILLA_ENABLED_PROVIDERS='["fake"]', FLOTILLA_DEFAULT_PROVIDER="fake"
    ) as server:
        _register_image(server, None)
        b = Browser(driver, server.endpoint, "fake")
        _sign_in(b, server)
        _create_template(b, TEMPLATE)
        uuid = _create_cluster(b, "web1", "web-swarm (swarm-mode)", "1")
        # The page follows the operation by itself (server-sent events, then one reload).
        b.wait(lambda: _status(b) == "CREATE_COMPLETE", 60, "the cluster page did not reach CREATE_COMPLETE")
        b.wait(lambda: "tcp://" in b.text("#api-address"), 15, "no API address on the final page")
        assert b.driver.execute_script("return document.getElementById('live').dataset.running") == "0"
        assert "create completed in" in b.text("#history")
        b.shot("08-cluster-complete")
        b.shot("08-cluster-complete-full", full=True)

        b.click("#scale")
        b.wait_text("Scale web1")
        b.fill({"node_count": "2"})
        b.shot("09-scale-form")
        b.click("#scale-submit")
        b.wait(lambda: _status(b) == "UPDATE_COMPLETE", 60, "the scale did not complete on the page")
        b.wait(lambda: "Masters / nodes\n1 / 2" in b.text(".facts"), 15, "the page does not show 2 nodes")
        b.shot("10-cluster-scaled")

        b.click("#rotate-ca")
        b.wait(
            lambda: "CA rotation requested" in b.text() or "rotate_ca completed" in b.text(),
            15,
            "no rotation",
        )
        b.wait(lambda: "rotate_ca completed" in b.text("#history"), 60, "the CA rotation did not complete")

        b.go("/dashboard/clusters")
        b.wait_text("web1")
        assert "UPDATE_COMPLETE" in b.text("#clusters")
        b.shot("11-clusters-list")
        b.go(f"/dashboard/clusters/{uuid}/config")
        b.wait_text("Download config bundle")
        assert "DOCKER_TLS_VERIFY=1" in b.text()
        b.shot("12-config")
        for page in ("quotas", "services"):
            b.go(f"/dashboard/admin/{page}")
            b.wait_text("admin" if page == "quotas" else "conductor")
            b.shot(f"13-admin-{page}")

        b.go(f"/dashboard/clusters/{uuid}")
        b.click("#delete-cluster")
        b.wait_text("Delete cluster web1?")
        b.shot("14-confirm-delete")
        b.click("#confirm-delete")
        b.wait(lambda: _deleted(b), 60, "the page did not end on the deletion")
        b.shot("15-cluster-deleted")
        assert server.api("GET", f"/v1/clusters/{uuid}").status_code == 404


@pytest.mark.e2e
def test_local_provider_flow(driver: Any, tmp_path: Path, engine: Any, hostroot_image: str) -> None:
    with flotilla_serve(tmp_path, FLOTILLA_LOCAL__DOCKER_HOST=engine.host) as server:
        _register_image(server, hostroot_image)
        b = Browser(driver, server.endpoint, "local")
        _sign_in(b, server)
        _create_template(b, {**TEMPLATE, "name": "web-docker", "coe": "docker"})
        uuid = _create_cluster(b, "web2", "web-docker (docker)", "1")
        seen: set[str] = set()

        def progressed() -> bool:
            step = b.text("[data-field=step]")
            if re.match(r"^\d+ of \d+: ", step) and not any(re.match(r"^\d+ of \d+: ", x) for x in seen):
                b.shot("07b-cluster-live")
            seen.add(step)
            seen.add("elapsed " + b.text("[data-field=elapsed]"))
            return _status(b) == "CREATE_COMPLETE"

        b.wait(progressed, 240, "the cluster did not complete")
        # Live steps were shown (which ones depends on timing: a fast daemon can skip
        # "waiting for Docker" between two page updates).
        assert any(re.match(r"^\d+ of \d+: ", s) for s in seen), seen
        assert len({s for s in seen if s.startswith("elapsed ")}) > 1, seen  # and the clock moved
        b.wait(lambda: "tcp://" in b.text("#api-address"), 15, "no API address after the reload")
        b.shot("08-cluster-complete")
        b.click("#scale")
        b.wait_text("Scale web2")
        b.fill({"node_count": "2"})
        b.click("#scale-submit")
        b.wait_text("The cluster was not scaled.")
        assert "cannot be scaled" in b.text("#form-error")
        b.shot("09-scale-refused")
        b.go(f"/dashboard/clusters/{uuid}/config")
        b.wait_text("Download config bundle")
        assert "DOCKER_TLS_VERIFY=1" in b.text()
        b.shot("10-config")
        b.go(f"/dashboard/clusters/{uuid}")
        b.click("#delete-cluster")
        b.wait_text("Delete cluster web2?")
        b.click("#confirm-delete")
        b.wait(lambda: _deleted(b), 120, "the page did not end on the deletion")
        b.shot("11-cluster-deleted")
        assert server.api("GET", f"/v1/clusters/{uuid}").status_code == 404

        # A create that fails: the page ends on CREATE_FAILED with the reason up top.
        broken = {"name": "broken-node", "os_distro": "debian", "source": "flotilla-node:no-such-tag"}
        assert server.api("POST", "/local/v1/images", json=broken).status_code == 201
        body = {
            "name": "web-broken",
            "coe": "docker",
            "image_id": "broken-node",
            "docker_storage_driver": "overlay2",
        }
        assert server.api("POST", "/v1/clustertemplates", json=body).status_code == 201
        failed = _create_cluster(b, "web3", "web-broken (docker)", "1")
        b.wait(lambda: _status(b) == "CREATE_FAILED", 120, "the failed create did not end on the page")
        b.wait(lambda: b.el("#failure").is_displayed(), 15, "the failure is not shown")
        assert "CREATE_FAILED" in b.text("#failure") and "no-such-tag" in b.text("#failure")
        b.shot("12-cluster-failed")
        assert server.api("DELETE", f"/v1/clusters/{failed}").status_code == 204
        # Wait for the delete to finish: stopping the server mid-delete would leave the network behind.
        deadline = time.monotonic() + 60
        while server.api("GET", f"/v1/clusters/{failed}").status_code != 404:
            assert time.monotonic() < deadline, "the failed cluster was not deleted"
            time.sleep(0.2)
