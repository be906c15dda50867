"""The ``flotilla`` CLI against a real server: the user guide's baymodel commands and friends."""

from __future__ import annotations

import json
import re
import subprocess
import uuid as uuidlib
from pathlib import Path

import pytest
from cli_helpers import FLOTILLA, IMAGE, Server

from flotilla.cli.output import render_table
from flotilla.cli.templates import args_array_to_patch, format_labels

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _name(prefix: str) -> str:
    return f"{prefix}{uuidlib.uuid4().hex[:8]}"


def _rows(table: str) -> dict[str, str]:
    """``| key | value |`` rows of a show table."""
    out: dict[str, str] = {}
    for line in table.splitlines():
        if line.startswith("| "):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 2:
                out[cells[0]] = cells[1]
    return out


def _failed(proc: subprocess.CompletedProcess[str], text: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert proc.stderr.startswith("ERROR: "), proc.stderr
    assert text in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def _guide_swarm(name: str) -> list[str]:
    return [
        "baymodel-create", "--name", name, "--image-id", IMAGE, "--keypair-id", "testkey",
        "--external-network-id", "public", "--dns-nameserver", "8.8.8.8", "--flavor-id", "m1.small",
        "--docker-volume-size", "5", "--coe", "swarm",
    ]  # fmt: skip


def _guide_k8s(name: str) -> list[str]:
    return [
        "baymodel-create", "--name", name, "--image-id", IMAGE, "--keypair-id", "testkey",
        "--external-network-id", "public", "--dns-nameserver", "8.8.8.8", "--flavor-id", "m1.small",
        "--docker-volume-size", "5", "--network-driver", "flannel", "--coe", "kubernetes",
    ]  # fmt: skip


# ----------------------------------------------------------------------------- pure helpers


def test_format_labels_like_magnumclient() -> None:
    assert format_labels([]) == {}
    assert format_labels(["a=1,b=2;c=3"]) == {"a": "1", "b": "2", "c": "3"}
    assert format_labels(["a=1,2"]) == {"a": "1,2"}
    assert format_labels(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    assert format_labels(["a=1", "a=2"]) == {"a": "1,2"}


def test_patch_like_magnumclient() -> None:
    assert args_array_to_patch("replace", ["labels=k=v,k2=v2"]) == [
        {"op": "replace", "path": "/labels", "value": "{'k': 'v', 'k2': 'v2'}"}
    ]
    assert args_array_to_patch("replace", ["node_count=3", "name=x", "tls_disabled=true"]) == [
        {"op": "replace", "path": "/node_count", "value": 3},
        {"op": "replace", "path": "/name", "value": "x"},
        {"op": "replace", "path": "/tls_disabled", "value": True},
    ]
    assert args_array_to_patch("remove", ["http_proxy", "/labels"]) == [
        {"op": "remove", "path": "/http_proxy"},
        {"op": "remove", "path": "/labels"},
    ]


def test_render_table_prettytable_style() -> None:
    text = render_table(["Property", "Value"], [["uuid", "abc"], ["pem", "line1\nline2"]])
    assert text.splitlines() == [
        "+----------+-------+",
        "| Property | Value |",
        "+----------+-------+",
        "| uuid     | abc   |",
        "| pem      | line1 |",
        "|          | line2 |",
        "+----------+-------+",
    ]


# ----------------------------------------------------------------------------- guide commands


def test_guide_swarm_baymodel(server: Server) -> None:
    name = _name("swarmbaymodel")
    rows = _rows(server.run(*_guide_swarm(name)).stdout)
    assert rows["name"] == name
    assert rows["coe"] == "swarm"
    assert rows["docker_volume_size"] == "5"
    # magnumclient's default devicemapper, served on the local provider as overlay2 (shown as used)
    assert rows["docker_storage_driver"] == "overlay2"
    assert rows["flavor_id"] == "m1.small"
    assert rows["keypair_id"] == "testkey"
    assert rows["cluster_distro"] == "fedora-atomic"
    assert rows["master_flavor_id"] == "-"
    assert "links" not in rows
    assert UUID_RE.match(rows["uuid"])


def test_guide_kubernetes_baymodel_list_show_update_delete(server: Server) -> None:
    name = _name("k8sbaymodel")
    rows = _rows(server.run(*_guide_k8s(name)).stdout)
    assert rows["coe"] == "kubernetes"
    assert rows["network_driver"] == "flannel"

    listing = server.run("baymodel-list").stdout
    assert re.search(rf"\| {rows['uuid']} \| {name}\s+\|", listing), listing

    recipe = f"{FLOTILLA} --data-dir {server.data_dir} baymodel-show {name} | awk '/ uuid /{{print $4}}'"
    awk = subprocess.run(
        ["bash", "-c", recipe],
        capture_output=True,
        text=True,
        env=server.env(),
        cwd=server.workdir,
        timeout=60,
    )
    assert awk.returncode == 0, awk.stderr
    assert UUID_RE.match(awk.stdout.strip()), awk.stdout
    assert awk.stdout.strip() == rows["uuid"]

    updated = _rows(server.run("baymodel-update", name, "replace", "labels=a=1,b=2").stdout)
    assert json.loads(updated["labels"]) == {"a": "1", "b": "2"}
    updated = _rows(server.run("baymodel-update", name, "add", "http_proxy=http://proxy:3128").stdout)
    assert updated["http_proxy"] == "http://proxy:3128"
    updated = _rows(server.run("baymodel-update", name, "remove", "http_proxy").stdout)
    assert updated["http_proxy"] == "-"

    out = server.run("baymodel-delete", name).stdout
    assert f"Request to delete baymodel {name} has been accepted." in out
    _failed(server.run("baymodel-show", name, check=False), f"{name} could not be found")


def test_cluster_template_commands(server: Server) -> None:
    name = _name("tpl")
    rows = _rows(
        server.run(
            "cluster-template-create", name, "--image", IMAGE, "--external-network", "public",
            "--coe", "swarm-mode", "--docker-storage-driver", "overlay2", "--labels", "x=1",
            "--labels", "y=2", "--tags", "t1", "--floating-ip-disabled",
        ).stdout
    )  # fmt: skip
    assert rows["name"] == name
    assert rows["keypair_id"] == "-"
    assert rows["flavor_id"] == "m1.medium"
    assert json.loads(rows["labels"]) == {"x": "1", "y": "2"}
    assert rows["floating_ip_enabled"] == "False"
    assert rows["tags"] == "t1"
    assert rows["project_id"] == "admin"

    detail = server.run("cluster-template-list", "--detail").stdout
    assert "docker_storage_driver" in detail.splitlines()[1]
    fields = server.run("cluster-template-list", "--fields", "coe,tags").stdout
    assert re.search(rf"\| {name}\s+\| swarm-mode \| t1\s+\|", fields), fields

    shown = _rows(server.run("cluster-template-show", rows["uuid"]).stdout)
    assert shown["name"] == name
    out = server.run("cluster-template-delete", name).stdout
    assert f"Request to delete cluster template {name} has been accepted." in out


def test_delete_several_reports_each(server: Server) -> None:
    name = _name("del")
    server.run(*_guide_swarm(name))
    proc = server.run("baymodel-delete", name, "no-such-model", check=False)
    assert proc.returncode == 1
    assert f"Request to delete baymodel {name} has been accepted." in proc.stdout
    assert "ERROR: Delete for baymodel no-such-model failed:" in proc.stderr
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- errors


def test_devicemapper_without_volume_size_shows_server_message(server: Server) -> None:
    proc = server.run(
        "baymodel-create", "--image-id", IMAGE, "--keypair-id", "testkey", "--external-network-id", "public",
        "--coe", "swarm", check=False,
    )  # fmt: skip
    _failed(
        proc,
        "docker volume size None GB is not valid, expecting minimum value 3GB for devicemapper storage driver.",
    )


def test_unknown_coe(server: Server) -> None:
    proc = server.run(*_guide_swarm(_name("bad")), "--coe", "foo", check=False)
    _failed(proc, "Requested COE type foo is not supported")


def test_unknown_flavor(server: Server) -> None:
    args = _guide_swarm(_name("bad"))
    args[args.index("m1.small")] = "m9.huge"
    _failed(server.run(*args, check=False), "Unable to find flavor m9.huge")


def test_unknown_image(server: Server) -> None:
    args = _guide_swarm(_name("bad"))
    args[args.index(IMAGE)] = "no-such-image"
    _failed(server.run(*args, check=False), "Image no-such-image could not be found")


def test_bad_labels_are_a_cli_error(server: Server) -> None:
    _failed(server.run(*_guide_swarm(_name("bad")), "--labels", "novalue", check=False), "labels must be")


def test_name_and_positional_name_conflict(server: Server) -> None:
    proc = server.run(
        "cluster-template-create", "a", "--name", "b", "--image", IMAGE, "--external-network", "public",
        "--coe", "swarm", check=False,
    )  # fmt: skip
    _failed(proc, "mutually exclusive")


def test_missing_required_flag_is_argparse_error(server: Server) -> None:
    proc = server.run("baymodel-create", "--coe", "swarm", check=False)
    assert proc.returncode == 2
    assert "--image-id" in proc.stderr


# ----------------------------------------------------------------------------- output modes, help


def test_json_output(server: Server) -> None:
    name = _name("js")
    created = json.loads(server.run("--json", *_guide_swarm(name)).stdout)
    assert created["name"] == name
    assert created["links"][0]["rel"] == "self"
    listed = json.loads(server.run("--json", "baymodel-list").stdout)
    assert name in [b["name"] for b in listed]
    shown = json.loads(server.run("--json", "baymodel-show", name).stdout)
    assert shown["uuid"] == created["uuid"]
    deleted = server.run("--json", "baymodel-delete", name)
    assert deleted.stdout == ""
    assert "has been accepted" in deleted.stderr
    for cmd in ("image-list", "flavor-list", "network-list", "keypair-list"):
        assert isinstance(json.loads(server.run("--json", cmd).stdout), list)


@pytest.mark.parametrize(
    "command",
    ["baymodel-create", "cluster-template-update", "bay-create", "cluster-config", "ca-show", "image-build"],
)
def test_help(server: Server, command: str) -> None:
    proc = server.run(command, "--help")
    assert proc.stdout.startswith(f"usage: flotilla {command}")
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- catalog


def test_catalog_lists(server: Server) -> None:
    assert "m1.small" in server.run("flavor-list").stdout
    assert re.search(r"\| public\s+\| True", server.run("network-list").stdout)
    images = server.run("image-list").stdout
    assert IMAGE in images and "fedora-atomic" in images
    assert _rows(server.run("image-show", IMAGE).stdout)["source"] == "flotilla-node:hostroot"


def test_image_create_replace_and_delete(server: Server) -> None:
    name = _name("img")
    server.run("image-create", name, "--os-distro", "ubuntu", "--source", "x:1")
    _failed(
        server.run("image-create", name, "--os-distro", "ubuntu", check=False), f"Image {name} already exists"
    )
    rows = _rows(
        server.run("image-create", name, "--os-distro", "debian", "--source", "x:2", "--replace").stdout
    )
    assert rows["os_distro"] == "debian" and rows["source"] == "x:2"
    server.run("image-delete", name)
    assert name not in server.run("image-list").stdout


def test_flavor_create(server: Server) -> None:
    name = _name("f.")
    rows = _rows(server.run("flavor-create", name, "--vcpus", "1", "--ram", "256").stdout)
    assert rows["name"] == name and rows["ram_mb"] == "256"


def test_keypair_generated_when_no_ssh_key(server: Server) -> None:
    name = _name("kp")
    proc = server.run("keypair-create", name)
    private = server.data_dir / "keys" / name
    assert private.is_file() and (private.stat().st_mode & 0o777) == 0o600
    assert str(private) in proc.stderr
    public = (server.data_dir / "keys" / f"{name}.pub").read_text()
    assert public.startswith("ssh-ed25519 ")
    rows = _rows(proc.stdout)
    assert rows["name"] == name and rows["fingerprint"] != "-"
    assert name in server.run("keypair-list").stdout
    server.run("keypair-delete", name)
    assert name not in server.run("keypair-list").stdout


def test_keypair_from_file(server: Server, tmp_path: Path) -> None:
    src = server.data_dir / "keys" / "src.pub"
    if not src.exists():
        server.run("keypair-create", "src")
    name = _name("kpf")
    rows = _rows(server.run("keypair-create", name, "--public-key", str(src)).stdout)
    assert rows["public_key"] == src.read_text().strip()


# ----------------------------------------------------------------------------- connection and auth


def test_token_and_endpoint_from_environment(server: Server, tmp_path: Path) -> None:
    env = server.env(OS_TOKEN=server.token, OS_ENDPOINT_OVERRIDE=server.endpoint + "/v1")
    proc = server.run("baymodel-list", data_dir=tmp_path / "empty", env=env)
    assert "| uuid" in proc.stdout
    env = server.env(OS_TOKEN=server.token, OS_ENDPOINT_OVERRIDE=server.endpoint)
    assert server.run("image-list", data_dir=tmp_path / "empty", env=env).returncode == 0


def test_os_cloud_from_clouds_yaml(server: Server, tmp_path: Path) -> None:
    cfg = tmp_path / "clouds.yaml"
    cfg.write_text(
        "clouds:\n  mine:\n    auth_type: admin_token\n"
        f"    auth:\n      token: {server.token}\n      endpoint: {server.endpoint}/v1\n"
    )
    env = server.env(OS_CLIENT_CONFIG_FILE=str(cfg))
    assert server.run("--os-cloud", "mine", "flavor-list", data_dir=tmp_path / "x", env=env).returncode == 0
    _failed(
        server.run("--os-cloud", "other", "flavor-list", env=env, check=False), "Cloud 'other' is not defined"
    )


def test_no_credentials_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    _failed(
        server.run("baymodel-list", data_dir=tmp_path / "nothing", check=False),
        "No Flotilla credentials found",
    )


def test_server_not_reachable(server: Server, tmp_path: Path) -> None:
    env = server.env(OS_TOKEN="x", OS_ENDPOINT_OVERRIDE="http://127.0.0.1:9")
    proc = server.run("baymodel-list", data_dir=tmp_path / "nothing", env=env, check=False)
    _failed(proc, "The Flotilla server is not reachable at http://127.0.0.1:9")
    assert "flotilla serve" in proc.stderr


def test_bad_token(server: Server, tmp_path: Path) -> None:
    env = server.env(OS_TOKEN="not-a-token", OS_ENDPOINT_OVERRIDE=server.endpoint)
    proc = server.run("baymodel-list", data_dir=tmp_path / "nothing", env=env, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("ERROR: ") and "Traceback" not in proc.stderr


def test_reader_cannot_create(server: Server, tmp_path: Path) -> None:
    token = server.run("token-create", "--project", "p2", "--user", "u", "--role", "reader").stdout.strip()
    env = server.env(OS_TOKEN=token, OS_ENDPOINT_OVERRIDE=server.endpoint + "/v1")
    assert server.run("baymodel-list", data_dir=tmp_path / "r", env=env).returncode == 0
    proc = server.run(*_guide_swarm(_name("ro")), data_dir=tmp_path / "r", env=env, check=False)
    _failed(proc, "Policy doesn't allow baymodel:create to be performed.")
