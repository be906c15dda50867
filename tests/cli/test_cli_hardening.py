"""CLI hardening of issue 14, item 11 (no Docker Engine needed).

* Global options (``--data-dir``, ``--os-cloud``, ``--json``, ...) work after the command too.
* ``keypair-create`` refuses names that are not a safe file name before writing any key.
* Tables and messages show control characters as escapes: a template named with an ANSI
  sequence cannot drive the admin's terminal.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cli_helpers import FLOTILLA, clean_env

import serving
from flotilla.cli.main import build_parser


def run(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOTILLA, *args], capture_output=True, text=True, env=clean_env(HOME=str(home)), timeout=timeout
    )


# ---- global options after the command -------------------------------------------------------------


def test_engine_stop_takes_data_dir_after_the_command(tmp_path: Path) -> None:
    r = run("engine-stop", "--data-dir", str(tmp_path / "d"), home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"no Flotilla-owned Docker Engine for {tmp_path / 'd'}" in r.stderr


def test_serve_takes_data_dir_after_the_command(tmp_path: Path) -> None:
    """Reaches the server (which stops at once: its port is taken), not argparse's exit 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run(
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--bind",
            f"127.0.0.1:{port}",
            "--debug",
            home=tmp_path,
        )
    assert r.returncode == 1, r.stderr
    assert "unrecognized arguments" not in r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--data-dir", "D", "--json", "--os-cloud", "c", "cluster-list"],
        ["cluster-list", "--data-dir", "D", "--json", "--os-cloud", "c"],
        ["--json", "cluster-list", "--os-cloud", "c", "--data-dir", "D"],
    ],
)
def test_global_options_anywhere(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.data_dir, args.json, args.os_cloud, args.api_version) == ("D", True, "c", "latest")


def test_options_before_the_command_survive_the_command() -> None:
    args = build_parser().parse_args(["--data-dir", "A", "--debug", "engine-stop", "--force"])
    assert (args.data_dir, args.debug, args.force, args.json) == ("A", True, True, False)
    args = build_parser().parse_args(["--data-dir", "A", "engine-stop", "--data-dir", "B"])
    assert args.data_dir == "B"  # the later one wins, as people expect


def test_command_options_are_untouched() -> None:
    args = build_parser().parse_args(["image-create", "img", "--os-distro", "debian", "--os-token", "t"])
    assert (args.os_distro, args.os_token) == ("debian", "t")
    args = build_parser().parse_args(["serve", "--database-url", "sqlite:///x", "--log-level", "DEBUG"])
    assert (args.database_url, args.log_level) == ("sqlite:///x", "DEBUG")


def test_a_command_option_of_the_same_name_wins() -> None:
    from flotilla.cli.main import _add_global_options

    parser = argparse.ArgumentParser()
    _add_global_options(parser, after_command=False)
    sub = parser.add_subparsers(dest="command")
    own = sub.add_parser("export")
    own.add_argument("--json", metavar="FILE", help="write JSON to FILE")
    _add_global_options(own, after_command=True)  # no conflict error
    args = parser.parse_args(["export", "--json", "out.json", "--data-dir", "D"])
    assert (args.json, args.data_dir) == ("out.json", "D")


# ---- keypair names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "../escaped", ".hidden", "a/b"])
def test_keypair_create_refuses_unsafe_names_before_writing(tmp_path: Path, name: str) -> None:
    data_dir = tmp_path / "a" / "b" / "data"
    r = run(
        "keypair-create", name, "--data-dir", str(data_dir), "--os-endpoint-override", "http://127.0.0.1:9",
        "--os-token", "t", home=tmp_path,
    )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ERROR: Invalid keypair name" in r.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [], written


# ---- control characters in tables --------------------------------------------------------------------

EVIL = "evil\x1b[2J\x1b]0;pwned\x07\rX\u202e"


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[serving.Launched]:
    """A real ``flotilla serve`` with the fake provider only (no engine)."""
    root = tmp_path_factory.mktemp("cli-hardening")
    env = clean_env(HOME=str(root), FLOTILLA_ENABLED_PROVIDERS='["fake"]', FLOTILLA_DEFAULT_PROVIDER="fake")
    launched = serving.launch(root / "data", env, log=root / "serve.log")
    try:
        yield launched
    finally:
        launched.stop()


def test_tables_escape_control_characters(fake_server: serving.Launched, tmp_path: Path) -> None:
    h = {"X-Auth-Token": fake_server.token}
    r = httpx.post(
        f"{fake_server.url}/local/v1/images", json={"name": "img", "os_distro": "debian"}, headers=h
    )
    assert r.status_code == 201, r.text
    body = {"coe": "swarm", "image_id": "img", "name": EVIL, "labels": {"k": "v\x1b[5m"}}
    r = httpx.post(f"{fake_server.url}/v1/clustertemplates", json=body, headers=h)
    assert r.status_code == 201, r.text
    uuid = r.json()["uuid"]
    data = ["--data-dir", str(fake_server.data_dir)]
    for args in (["cluster-template-list"], ["cluster-template-show", uuid], ["baymodel-list"]):
        out = run(*args, *data, home=tmp_path)
        assert out.returncode == 0, out.stderr
        text = out.stdout
        for raw in ("\x1b", "\x07", "\r", "\u202e"):
            assert raw not in text, (args, text)
        assert "evil\\x1b[2J\\x1b]0;pwned\\x07\\rX\\u202e" in text, text
    # --json keeps the exact value (JSON escapes it)
    out = run("cluster-template-show", uuid, "--json", *data, home=tmp_path)
    assert json.loads(out.stdout)["name"] == EVIL
    assert "\x1b" not in out.stdout


# ---- fixed networks: registered by an admin, then named ------------------------------------------------


def test_fixed_network_must_be_registered(fake_server: serving.Launched, tmp_path: Path) -> None:
    h = {"X-Auth-Token": fake_server.token}
    r = httpx.post(
        f"{fake_server.url}/local/v1/images", json={"name": "img-fx", "os_distro": "debian"}, headers=h
    )
    assert r.status_code == 201, r.text
    data = ["--data-dir", str(fake_server.data_dir)]
    create = [
        "cluster-template-create",
        "--coe",
        "swarm",
        "--image",
        "img-fx",
        "--external-network",
        "public",
    ]
    create += ["--docker-storage-driver", "overlay2", *data]
    refused = run(*create, "--name", "fx1", "--fixed-network", "shared-net", home=tmp_path)
    assert (
        refused.returncode == 1
        and "ERROR: Unable to find network shared-net for fixed_network" in refused.stderr
    )
    made = run("network-create", "shared-net", "--json", *data, home=tmp_path)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["name"] == "shared-net"
    ok = run(*create, "--name", "fx2", "--fixed-network", "shared-net", "--json", home=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["fixed_network"] == "shared-net"
    host = run("network-create", "host", *data, home=tmp_path)
    assert host.returncode == 1 and "ERROR: Invalid network name 'host'" in host.stderr
