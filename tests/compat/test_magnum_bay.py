"""Bays with the legacy ``magnum`` shell (python-magnumclient 2.17.0, token mode).

The baymodel uses the ``docker`` COE (Flotilla's single-Docker-host COE) and
``--docker-storage-driver overlay2``; the 2.17 CLI's default ``devicemapper`` works too, see
``test_bay_create_devicemapper_baymodel``. The session server runs clusters on the
in-memory ``fake`` provider (conftest.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # conftest.py is pytest's, not a package module: types only
    from conftest import Magnum, Result

pytestmark = pytest.mark.compat

TRACEBACK = "Traceback (most recent call last)"
# What 2.17 prints in token mode for an error: its exception for the status, never the
# server's text (it reads that only from an application/json body, and then crashes on
# http.client's response: "'HTTPResponse' object has no attribute 'json'", which is what
# it printed before Flotilla sent it errors as text/plain; the text is in the --debug log).
TOKEN_MODE_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict"}


def token_mode_error(status: int) -> str:
    return f"{TOKEN_MODE_REASONS[status]} (HTTP {status})"


BAYMODEL_FLAGS = [
    "--image-id",
    "fedora-atomic-latest",
    "--keypair-id",
    "testkey",
    "--external-network-id",
    "public",
    "--dns-nameserver",
    "8.8.8.8",
    "--flavor-id",
    "m1.small",
    "--docker-volume-size",
    "5",
]
# magnum-api-ref / reference §7.7: the keys of a bay (show), without `links` (the CLI drops it)
BAY_SHOW_KEYS = {
    "uuid",
    "name",
    "baymodel_id",
    "node_count",
    "master_count",
    "docker_volume_size",
    "labels",
    "master_flavor_id",
    "flavor_id",
    "bay_create_timeout",
    "stack_id",
    "status",
    "status_reason",
    "discovery_url",
    "api_address",
    "coe_version",
    "container_version",
    "node_addresses",
    "master_addresses",
    "fixed_network",
    "fixed_subnet",
    "floating_ip_enabled",
    "master_lb_enabled",
    "created_at",
    "updated_at",
}
FINAL = {"CREATE_COMPLETE", "CREATE_FAILED"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(magnum: Magnum, bay: str, statuses: set[str], timeout: float = 180) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        props = magnum("bay-show", bay).ok().props()
        if props["status"] in statuses or time.monotonic() > deadline:
            assert props["status"] in statuses, f"bay {bay} stuck in {props['status']}: {props}"
            return props
        time.sleep(1)


def wait_gone(magnum: Magnum, bay: str, timeout: float = 180) -> Result:
    deadline = time.monotonic() + timeout
    while True:
        shown = magnum("bay-show", bay)
        if shown.returncode != 0:
            return shown
        assert time.monotonic() < deadline, f"bay {bay} not deleted:\n{shown}"
        time.sleep(1)


@pytest.fixture(scope="module")
def baymodel(magnum: Magnum) -> Iterator[dict[str, str]]:
    name = unique("dockermodel")
    props = (
        magnum(
            "baymodel-create",
            "--name",
            name,
            *BAYMODEL_FLAGS,
            "--docker-storage-driver",
            "overlay2",
            "--coe",
            "docker",
        )
        .ok()
        .props()
    )
    yield props
    magnum("baymodel-delete", name)


def test_bay_lifecycle(magnum: Magnum, baymodel: dict[str, str]) -> None:
    name = unique("bay")
    created = magnum("bay-create", "--name", name, "--baymodel", baymodel["name"], "--node-count", "1").ok()
    # bay-create catches errors itself and exits 0, so check its message
    assert len(created.lines) == 1 and created.lines[0].startswith("Request to create bay "), created
    uid = created.lines[0].split()[4]
    assert created.lines[0] == f"Request to create bay {uid} has been accepted."
    try:
        props = wait_for(magnum, name, FINAL)
        assert props["status"] == "CREATE_COMPLETE", props
        assert set(props) == BAY_SHOW_KEYS
        assert props["uuid"] == uid
        assert props["name"] == name
        assert props["baymodel_id"] == baymodel["uuid"]
        assert props["node_count"] == "1"
        assert props["master_count"] == "1"
        assert props["bay_create_timeout"] == "60"
        assert props["flavor_id"] == "m1.small"
        assert props["docker_volume_size"] == "5"
        assert props["api_address"] not in ("", "-")

        rows = magnum("bay-list").ok().rows()
        row = next(r for r in rows if r["uuid"] == uid)
        assert row == {
            "uuid": uid,
            "name": name,
            "node_count": "1",
            "master_count": "1",
            "status": "CREATE_COMPLETE",
        }
        rows = magnum("bay-list", "--fields", "baymodel_id,stack_id", "--limit", "50").ok().rows()
        row = next(r for r in rows if r["uuid"] == uid)
        assert row["Baymodel Id"] == baymodel["uuid"]

        # --long adds the baymodel's fields with a baymodel_ prefix
        long = magnum("bay-show", "--long", uid).ok().props()
        assert long["baymodel_name"] == baymodel["name"]
        assert long["baymodel_coe"] == "docker"

        # the same record through the cluster view
        cluster = magnum("cluster-show", uid).ok().props()
        assert cluster["cluster_template_id"] == baymodel["uuid"]
        assert cluster["keypair"] == "testkey"

        # the baymodel is in use now
        in_use = magnum("baymodel-delete", baymodel["name"])
        assert in_use.lines == [f"Delete for baymodel {baymodel['name']} failed: {token_mode_error(400)}"]
        assert magnum("baymodel-show", baymodel["uuid"]).ok().props()["name"] == baymodel["name"]
    finally:
        deleted = magnum("bay-delete", name).ok()
    assert deleted.lines == [f"Request to delete bay {name} has been accepted."]
    gone = wait_gone(magnum, uid)
    assert TRACEBACK not in gone.output
    assert uid not in magnum("bay-list").ok().stdout


def test_bay_create_v1_1_is_synchronous(magnum: Magnum, baymodel: dict[str, str]) -> None:
    """At microversion 1.1 bay-create gets 201 and the whole bay, which the CLI prints."""
    name = unique("bay11")
    out = magnum(
        "--magnum-api-version",
        "1.1",
        "bay-create",
        "--name",
        name,
        "--baymodel",
        baymodel["uuid"],
        "--node-count",
        "1",
    ).ok()
    try:
        props = out.props()
        assert props, out  # a table, not "Create for bay ... failed"
        assert props["name"] == name
        assert props["baymodel_id"] == baymodel["uuid"]
        assert "links" not in props
        wait_for(magnum, name, FINAL)
    finally:
        magnum("bay-delete", name).ok()
    wait_gone(magnum, name)


def test_bay_update(magnum: Magnum, baymodel: dict[str, str]) -> None:
    name = unique("bay-upd")
    magnum("bay-create", "--name", name, "--baymodel", baymodel["name"], "--node-count", "1").ok()
    try:
        wait_for(magnum, name, FINAL)
        # only node_count is patchable on a bay
        magnum("bay-update", name, "replace", "name=other").failed()
        status, err = magnum("bay-update", name, "replace", "name=other", debug=True).http_error()
        assert status == 400
        assert err["detail"].startswith("cannot change cluster property(ies) name")
        # the docker COE is a single host: scaling it is refused cleanly
        magnum("bay-update", name, "replace", "node_count=2").failed()
        status, err = magnum("bay-update", name, "replace", "node_count=2", debug=True).http_error()
        assert status == 400
        props = magnum("bay-show", name).ok().props()
        assert props["node_count"] == "1"
        assert props["status"] == "CREATE_COMPLETE"
    finally:
        magnum("bay-delete", name).ok()
    wait_gone(magnum, name)


@pytest.mark.parametrize(
    ("flags", "status", "words"),
    [
        pytest.param(
            ["--baymodel", "no-such-baymodel", "--node-count", "1"], 404, ("no-such-baymodel",), id="no-model"
        ),
        pytest.param(
            ["--node-count", "0"],
            400,
            ("node_count", "0"),
            id="zero-nodes",
        ),
        pytest.param(["--node-count", "1", "--master-count", "2"], 400, ("master",), id="two-masters-no-lb"),
    ],
)
def test_bad_bay_create(
    magnum: Magnum, baymodel: dict[str, str], flags: list[str], status: int, words: tuple[str, ...]
) -> None:
    name = unique("bad-bay")
    if "--baymodel" not in flags:
        flags = ["--baymodel", baymodel["name"], *flags]
    args = ["bay-create", "--name", name, *flags]
    out = magnum(*args)
    # 2.17 prints "Create for bay X failed: ..." and exits 0 when the POST fails; a failing
    # baymodel lookup (before the try) is an ERROR with exit 1
    assert TRACEBACK not in out.output, out
    if out.returncode == 0:
        assert out.lines == [f"Create for bay {name} failed: {token_mode_error(status)}"], out
    else:
        out.failed()
    got, err = magnum(*args, debug=True).http_error()
    assert got == status, err
    for w in words:
        assert w.lower() in err["detail"].lower(), err
    assert name not in magnum("bay-list").ok().stdout


def test_bay_create_devicemapper_baymodel(magnum: Magnum) -> None:
    """The guide's flow without --docker-storage-driver: 2.17 defaults to devicemapper.

    The bay is created (on the local provider devicemapper is served as overlay2 on each
    node's sized volume, see tests/compat/test_magnum_guide_engine.py); it used to be a
    400 at bay create that 2.17 reported as an AttributeError.
    """
    model = unique("dm-model")
    magnum("baymodel-create", "--name", model, *BAYMODEL_FLAGS, "--coe", "docker").ok()
    name = unique("dm-bay")
    try:
        out = magnum("bay-create", "--name", name, "--baymodel", model, "--node-count", "1").ok()
        assert len(out.lines) == 1 and out.lines[0].startswith("Request to create bay "), out
        assert out.lines[0].endswith(" has been accepted."), out
        assert name in magnum("bay-list").ok().stdout
    finally:
        magnum("bay-delete", name)
        wait_gone(magnum, name)
        magnum("baymodel-delete", model).ok()
