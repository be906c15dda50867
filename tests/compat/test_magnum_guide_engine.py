"""The guide's commands typed verbatim with the REAL ``magnum`` shell (python-magnumclient
2.17.0, token mode) give working clusters on the real Docker Engine (issue 14, item 10).

* The guide's swarm baymodel line, as printed (no storage driver: 2.17 sends its default
  devicemapper; the guide's image ``fedora-atomic-latest``, which here stands for the
  local node image ``flotilla-node``), then the issue's ``bay-create ... --node-count 2``:
  a CREATE_COMPLETE bay whose nodes run overlay2 on their 5 GB volume, as the baymodel
  and the bay's status_reason say. The guide's own bay line (``--master-count 3`` without
  a load balancer) gets Magnum's 400 at once, reported by the client.
* The same line with ``--coe docker``: the guide's sample driver.
* Labels set on the baymodel take effect on a bay created with bay-create (which sends
  none): ``auto_healing_enabled=true`` replaces a killed worker.

Needs the session's Docker Engine (tests/engine_fixtures.py): run under the engine lock.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from flotilla.drivers.providers.local import Engine, leaks

if TYPE_CHECKING:  # conftest.py is pytest's, not a package module: types only
    from conftest import Magnum, Server

pytestmark = [pytest.mark.compat, pytest.mark.e2e]

#: magnum-user-guide.rst, Swarm section, exactly as printed (but for --coe in the docker case).
GUIDE_BAYMODEL = [
    "baymodel-create", "--name", "swarmbaymodel", "--image-id", "fedora-atomic-latest", "--keypair-id", "testkey",
    "--external-network-id", "public", "--dns-nameserver", "8.8.8.8", "--flavor-id", "m1.small",
    "--docker-volume-size", "5", "--coe", "swarm",
]  # fmt: skip
GUIDE_BAY = [
    "bay-create",
    "--name",
    "swarmbay",
    "--baymodel",
    "swarmbaymodel",
    "--master-count",
    "3",
    "--node-count",
    "8",
]


def _bay(magnum: Magnum, srv: Server, bay: str, show: str = "bay-show") -> dict[str, str]:
    shown = magnum(show, bay, on=srv)
    return shown.props() if shown.returncode == 0 else {}


def _until(
    magnum: Magnum, srv: Server, bay: str, pred: Any, timeout: float = 240, show: str = "bay-show"
) -> dict[str, str]:
    """``show`` ``cluster-show`` for health_status (the bay view has none, as in Magnum)."""
    deadline = time.monotonic() + timeout
    while True:
        props = _bay(magnum, srv, bay, show)
        if pred(props):
            return props
        assert time.monotonic() < deadline, f"bay {bay}: {props}"
        time.sleep(1)


def _settled(props: dict[str, str]) -> bool:
    return not props or not props["status"].endswith("IN_PROGRESS")


def _create(magnum: Magnum, srv: Server, args: list[str]) -> str:
    out = magnum(*args, on=srv).ok()
    assert len(out.lines) == 1 and out.lines[0].startswith("Request to create bay "), out
    assert out.lines[0].endswith(" has been accepted."), out
    return out.lines[0].split()[4]


def _delete(magnum: Magnum, srv: Server, engine: Engine, bay: str, uid: str) -> None:
    magnum("bay-delete", bay, on=srv)
    assert _until(magnum, srv, uid, lambda p: not p) == {}
    assert leaks(engine, uid) == []


def _storage(engine: Engine, node: str) -> tuple[str, str]:
    """(storage driver, filesystem under /var/lib/docker) as the node's dockerd runs them."""
    driver = engine.run(["exec", node, "docker", "info", "--format", "{{.Driver}}"]).stdout.strip()
    fs = engine.run(["exec", node, "df", "-P", "/var/lib/docker"]).stdout.strip().splitlines()[-1]
    return driver, fs


def test_the_guides_swarm_lines_verbatim(magnum: Magnum, guide_server: Server, engine: Engine) -> None:
    srv = guide_server
    model = magnum(*GUIDE_BAYMODEL, on=srv).ok().props()
    try:
        assert model["docker_storage_driver"] == "overlay2", (
            model
        )  # what the nodes run (2.17 sent devicemapper)
        assert model["image_id"] == "fedora-atomic-latest" and model["docker_volume_size"] == "5", model

        # The guide's own bay line: 3 managers need a load balancer (Magnum's rule), refused at once.
        out = magnum(*GUIDE_BAY, on=srv)
        assert out.lines == ["Create for bay swarmbay failed: Bad Request (HTTP 400)"], out
        status, err = magnum(*GUIDE_BAY, on=srv, debug=True).http_error()
        assert status == 400 and "master_count must be 1 when master_lb_enabled is False" in err["detail"]

        uid = _create(
            magnum,
            srv,
            ["bay-create", "--name", "swarmbay", "--baymodel", "swarmbaymodel", "--node-count", "2"],
        )
        try:
            props = _until(magnum, srv, uid, _settled)
            assert props["status"] == "CREATE_COMPLETE", props
            assert "Docker storage: overlay2 on a 5 GB volume per node" in props["status_reason"], props
            driver, fs = _storage(engine, f"swarmbay-{uid[:8]}-node-1")
            assert driver == "overlay2", fs
            size_kb = int(fs.split()[1])
            assert 4 * 1024 * 1024 < size_kb <= 5 * 1024 * 1024, fs  # the dedicated 5 GB volume
        finally:
            _delete(magnum, srv, engine, "swarmbay", uid)
    finally:
        magnum("baymodel-delete", "swarmbaymodel", on=srv).ok()


def test_the_guides_docker_lines(magnum: Magnum, guide_server: Server, engine: Engine) -> None:
    srv = guide_server
    args = [a if a != "swarm" else "docker" for a in GUIDE_BAYMODEL]
    args[args.index("swarmbaymodel")] = "dockerbaymodel"
    model = magnum(*args, on=srv).ok().props()
    try:
        assert model["docker_storage_driver"] == "overlay2" and model["coe"] == "docker", model
        uid = _create(
            magnum,
            srv,
            ["bay-create", "--name", "dockerbay", "--baymodel", "dockerbaymodel", "--node-count", "1"],
        )
        try:
            props = _until(magnum, srv, uid, _settled)
            assert props["status"] == "CREATE_COMPLETE", props
            assert props["api_address"].startswith("tcp://"), props
            assert _storage(engine, f"dockerbay-{uid[:8]}-master-0")[0] == "overlay2"
        finally:
            _delete(magnum, srv, engine, "dockerbay", uid)
    finally:
        magnum("baymodel-delete", "dockerbaymodel", on=srv).ok()


def test_baymodel_labels_take_effect_on_the_bay(magnum: Magnum, guide_server: Server, engine: Engine) -> None:
    srv = guide_server
    args = [a if a != "swarmbaymodel" else "healmodel" for a in GUIDE_BAYMODEL]
    magnum(*args[:-2], "--labels", "auto_healing_enabled=true", *args[-2:], on=srv).ok()
    try:
        uid = _create(
            magnum, srv, ["bay-create", "--name", "healbay", "--baymodel", "healmodel", "--node-count", "1"]
        )
        try:
            props = _until(magnum, srv, uid, lambda p: p["status"] == "CREATE_COMPLETE" and p.get("health_status") == "HEALTHY",
                           show="cluster-show")  # fmt: skip
            assert "auto_healing_enabled" in props["labels"], props  # inherited from the baymodel
            victim = f"healbay-{uid[:8]}-node-0"
            engine.run(["rm", "-f", victim])
            props = _until(magnum, srv, uid, lambda p: p["status"] == "UPDATE_COMPLETE" and p.get("health_status") == "HEALTHY",
                           show="cluster-show")  # fmt: skip
            running = engine.run(
                ["ps", "--filter", f"label=flotilla.cluster={uid}", "--format", "{{.Names}}"]
            ).stdout.split()
            assert len([n for n in running if "-node-" in n]) == 1, running  # the worker was replaced
        finally:
            _delete(magnum, srv, engine, "healbay", uid)
    finally:
        magnum("baymodel-delete", "healmodel", on=srv).ok()
