"""The guide's swarm flow driven by the REAL ``magnum`` shell (python-magnumclient 2.17.0)
against a server whose clusters run on the real Docker Engine (local provider), and the
bay reached with the plain ``docker`` CLI from what ``bay-config`` wrote.

The other compat tests use the in-memory ``fake`` provider; this one needs the session's
Docker Engine (tests/engine_fixtures.py) and the node image built there.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from flotilla.drivers.providers.local import Engine, leaks

if TYPE_CHECKING:  # conftest.py is pytest's, not a package module: types only
    from conftest import Magnum, Server

pytestmark = [pytest.mark.compat, pytest.mark.e2e]


def _wait(magnum: Magnum, srv: Server, bay: str, timeout: float = 180) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        shown = magnum("bay-show", bay, on=srv)
        if shown.returncode != 0:
            return {}
        props = shown.props()
        if not props["status"].endswith("IN_PROGRESS"):
            return props
        assert time.monotonic() < deadline, f"bay {bay} stuck in {props['status']}: {props}"
        time.sleep(0.5)


def _docker(env: dict[str, str], *args: str) -> str:
    r = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, f"docker {' '.join(args)}: {r.stdout}\n{r.stderr}"
    return r.stdout


def test_guide_swarm_flow_with_magnum_217(
    magnum: Magnum, magnum_bin: Path, engine_server: Server, engine: Engine, tmp_path: Path
) -> None:
    srv = engine_server
    magnum(
        "baymodel-create", "--name", "swarmbaymodel", "--image-id", "fedora-atomic-latest", "--keypair-id", "testkey",
        "--external-network-id", "public", "--dns-nameserver", "8.8.8.8", "--flavor-id", "m1.small",
        "--docker-storage-driver", "overlay2", "--coe", "swarm", on=srv,
    ).ok()  # fmt: skip
    created = magnum(
        "bay-create", "--name", "swarmbay", "--baymodel", "swarmbaymodel", "--master-count", "1", "--node-count", "2",
        on=srv,
    ).ok()  # fmt: skip
    assert created.lines[0].startswith("Request to create bay "), created
    uid = created.lines[0].split()[4]
    try:
        props = _wait(magnum, srv, "swarmbay")
        assert props["status"] == "CREATE_COMPLETE", props

        # The guide's recipe for the address, as a shell pipeline.
        prefix = f"{magnum_bin} --os-token {srv.token} --os-endpoint-override {srv.endpoint}"
        awk = subprocess.run(
            ["bash", "-c", f"{prefix} bay-show swarmbay | awk '/ api_address /{{print $4}}'"],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        api_address = awk.stdout.strip()
        assert api_address.startswith("tcp://") and api_address.endswith(":2376"), awk

        # bay-config writes the client certificates and prints the environment.
        certs = tmp_path / "certs"
        certs.mkdir()
        config = magnum("bay-config", "swarmbay", "--dir", str(certs), on=srv).ok()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        for line in config.lines:
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                env[key] = value.strip("'\"")
        # 2.17 writes the config itself: DOCKER_TLS_VERIFY=True (docker takes any non-empty value)
        assert env["DOCKER_HOST"] == api_address and env["DOCKER_TLS_VERIFY"] == "True", config

        nodes = _docker(env, "node", "ls", "--format", "{{.Hostname}} {{.Status}}").split("\n")
        assert sorted(n.split()[1] for n in nodes if n) == ["Ready"] * 3, nodes

        magnum("bay-update", "swarmbay", "replace", "node_count=3", on=srv).ok()
        props = _wait(magnum, srv, "swarmbay")
        assert props["status"] == "UPDATE_COMPLETE" and props["node_count"] == "3", props
        nodes = _docker(env, "node", "ls", "--format", "{{.Hostname}} {{.Status}}").split("\n")
        assert sorted(n.split()[1] for n in nodes if n) == ["Ready"] * 4, nodes
    finally:
        magnum("bay-delete", "swarmbay", on=srv).ok()
        assert _wait(magnum, srv, uid) == {}
    assert leaks(engine, uid) == []
    magnum("baymodel-delete", "swarmbaymodel", on=srv).ok()
