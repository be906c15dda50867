"""Cluster and bay commands end to end (real clusters on the server's local Docker Engine).

Skipped when the server has no clusters API yet, or when no Docker Engine can be used
here (``image-build`` fails: not root, docker.io missing, ...).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import FLOTILLA, IMAGE, Server

NODE_TAG = "flotilla-node:hostroot"


def _name(prefix: str) -> str:
    return f"{prefix}{uuidlib.uuid4().hex[:6]}"


def _rows(table: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in table.splitlines():
        if line.startswith("| "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 2:
                out[cells[0]] = cells[1]
    return out


@pytest.fixture(scope="module")
def cl(server: Server) -> Iterator[Server]:
    """The server, once it has a clusters API and a node image its Docker Engine can run."""
    with server.http() as http:
        if http.get("/v1/clusters").status_code == 404:
            pytest.skip("clusters API not there yet")
    proc = server.run(
        "image-build", IMAGE, "--os-distro", "fedora-atomic", "--tag", NODE_TAG, check=False, timeout=600
    )
    if proc.returncode != 0:
        pytest.skip(f"no Docker Engine for cluster tests: {proc.stderr.strip()}")
    if not server.run("keypair-list").stdout.count("testkey"):
        server.run("keypair-create", "testkey")
    yield server
    leftovers = json.loads(server.run("--json", "cluster-list").stdout)
    if leftovers:
        server.run("cluster-delete", "--wait", *[c["uuid"] for c in leftovers], check=False, timeout=300)


def test_docker_cluster_lifecycle(cl: Server, tmp_path: Path) -> None:
    tpl, name = _name("dock"), _name("c")
    cl.run(
        "cluster-template-create", tpl, "--image", IMAGE, "--external-network", "public", "--coe", "docker",
        "--docker-storage-driver", "overlay2", "--keypair", "testkey",
    )  # fmt: skip
    created = cl.run("cluster-create", name, "--cluster-template", tpl, "--wait", timeout=600)
    assert re.search(r"Request to create cluster [0-9a-f-]{36} has been accepted\.", created.stdout)
    progress = created.stderr.splitlines()
    assert any(re.match(rf"{name}: CREATE_IN_PROGRESS - \d+/\d+ ", line) for line in progress), created.stderr
    assert re.match(rf"{name}: CREATE_COMPLETE.* \(\d+s\)$", progress[-1]), created.stderr

    assert re.search(
        rf"\| {name}\s+\| testkey\s+\| 1\s+\| 1\s+\| CREATE_COMPLETE", cl.run("cluster-list").stdout
    )
    shown = _rows(cl.run("cluster-show", name, "--long").stdout)
    assert shown["status"] == "CREATE_COMPLETE"
    assert shown["api_address"].startswith("tcp://")
    assert shown["clustertemplate_coe"] == "docker"

    cfg = tmp_path / "cfg"
    no_shell = {k: v for k, v in cl.env().items() if k != "SHELL"}  # magnumclient crashed without $SHELL
    exports = cl.run("cluster-config", name, "--dir", str(cfg), env=no_shell)
    assert exports.stdout.splitlines() == [
        f"export DOCKER_HOST={shown['api_address']}",
        f"export DOCKER_CERT_PATH={cfg}",
        "export DOCKER_TLS_VERIFY=1",
    ]
    assert (cfg / "key.pem").stat().st_mode & 0o777 == 0o600
    assert (cfg / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    again = cl.run("cluster-config", name, "--dir", str(cfg), check=False)
    assert again.returncode == 1 and "exists" in again.stderr and again.stdout == ""
    if shutil.which("docker"):
        flotilla = f"{FLOTILLA} --data-dir {cl.data_dir}"
        config = f"{flotilla} cluster-config {name} --dir {cfg} --force"
        script = f"eval $({config}) && docker version -f '{{{{.Server.Version}}}}'"
        proc = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, env=cl.env(), timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == shown["coe_version"]

    refused = cl.run("cluster-update", name, "replace", "node_count=2", check=False)
    assert (
        refused.returncode == 1 and refused.stderr.startswith("ERROR: ") and "Traceback" not in refused.stderr
    )

    deleted = cl.run("cluster-delete", name, "--wait", timeout=300)
    assert f"Request to delete cluster {name} has been accepted." in deleted.stdout
    assert f"{name}: deleted" in deleted.stderr
    gone = cl.run("cluster-show", name, check=False)
    assert gone.returncode == 1 and "could not be found" in gone.stderr


def test_guide_swarm_bay(cl: Server, tmp_path: Path) -> None:
    model, bay = _name("swarmbaymodel"), _name("swarmbay")
    cl.run(
        "baymodel-create", "--name", model, "--image-id", IMAGE, "--keypair-id", "testkey",
        "--external-network-id", "public", "--dns-nameserver", "8.8.8.8", "--flavor-id", "m1.small",
        "--docker-volume-size", "5", "--docker-storage-driver", "overlay2", "--coe", "swarm",
    )  # fmt: skip
    created = cl.run(
        "bay-create", "--name", bay, "--baymodel", model, "--node-count", "1", "--wait", timeout=600
    )
    assert "Request to create bay" in created.stdout
    rows = _rows(cl.run("bay-show", bay).stdout)
    assert rows["status"] == "CREATE_COMPLETE" and rows["node_count"] == "1"
    assert "keypair" not in rows and "baymodel_id" in rows

    cl.run("bay-update", bay, "replace", "node_count=2", "--wait", timeout=600)
    assert _rows(cl.run("bay-show", bay).stdout)["node_count"] == "2"
    resized = cl.run("cluster-resize", bay, "1", "--wait", timeout=600)
    assert f"Request to resize cluster {bay} has been accepted." in resized.stdout
    assert "UPDATE_COMPLETE" in resized.stderr
    groups = cl.run("nodegroup-list", bay).stdout
    assert re.search(r"\| default-worker\s+\|.*\| 1\s+\|", groups), groups
    assert "default-master" in groups

    cfg = tmp_path / "bay"
    exports = cl.run("bay-config", bay, "--dir", str(cfg)).stdout
    assert "export DOCKER_TLS_VERIFY=1" in exports and (cfg / "cert.pem").is_file()

    ca = cl.run("ca-show", "--bay", bay).stdout
    assert ca.startswith("-----BEGIN CERTIFICATE-----")
    assert cl.run("ca-show", bay).stdout == ca
    csr = tmp_path / "me.csr"
    from flotilla.certs.authority import generate_csr

    csr.write_text(generate_csr("me", "dev")[0])
    signed = cl.run("ca-sign", "--cluster", bay, "--csr", str(csr)).stdout
    assert signed.startswith("-----BEGIN CERTIFICATE-----")
    missing = cl.run("ca-sign", "--cluster", bay, "--csr", str(tmp_path / "nope"), check=False)
    assert missing.returncode == 1 and "A CSR must be provided" in missing.stderr

    rotated = cl.run("ca-rotate", "--cluster", bay)
    assert f"Request to rotate the CA certificate of cluster {bay} has been accepted." in rotated.stdout

    deleted = cl.run("bay-delete", bay, "--wait", timeout=300)
    assert f"{bay}: deleted" in deleted.stderr


def test_cluster_create_errors(cl: Server) -> None:
    proc = cl.run("cluster-create", "x", "--cluster-template", "no-such-template", check=False)
    assert proc.returncode == 1 and "ClusterTemplate no-such-template could not be found" in proc.stderr
    proc = cl.run("bay-create", "--baymodel", "no-such-model", check=False)
    assert proc.returncode == 1 and "could not be found" in proc.stderr
    proc = cl.run("cluster-config", "no-such-cluster", check=False)
    assert proc.returncode == 1 and "Cluster no-such-cluster could not be found" in proc.stderr
    assert proc.stdout == ""
    proc = cl.run("cluster-delete", "no-such-cluster", "--wait", check=False)
    assert proc.returncode == 1 and "Delete for cluster no-such-cluster failed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_json_cluster_list(cl: Server) -> None:
    assert isinstance(json.loads(cl.run("--json", "cluster-list").stdout), list)
    assert isinstance(json.loads(cl.run("--json", "bay-list").stdout), list)
