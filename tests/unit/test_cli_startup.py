"""What a CLI command loads before it sends its request (checked by module, never timed).

Every ``flotilla`` command is a fresh process, so its imports are most of its time: a list
answered in milliseconds by the server takes the better part of a second at the shell.
``flotilla.settings`` (pydantic, about a fifth of a second) is the server's; the driver
registry and the ``flotilla.node_image_extras`` entry points (every installed package's
metadata read) are ``image-build``'s only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flotilla.cli.main import build_parser

#: Runs one command (the server is unreachable: only what it loads matters) and prints
#: the modules of interest that it loaded.
PROBE = """
import json, sys
from flotilla.cli.main import main
code = main(sys.argv[1:])
loaded = [m for m in sys.modules if m.split(".")[0] == "pydantic" or m in ("flotilla.settings", "flotilla.drivers.registry")]
print(json.dumps({"code": code, "loaded": sorted(loaded)}))
"""
UNREACHABLE = "http://127.0.0.1:9/v1"


def probe(args: list[str], home: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "FLOTILLA_"))}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"))
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, cwd=home, timeout=120
    )
    assert "The Flotilla server is not reachable" in proc.stderr, proc.stderr
    out: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize("command", ["cluster-template-list", "cluster-list", "image-list"])
def test_a_list_command_loads_neither_settings_nor_the_driver_registry(tmp_path: Path, command: str) -> None:
    flags = probe(["--os-token", "t", "--os-endpoint-override", UNREACHABLE, command], tmp_path)
    assert flags == {"code": 1, "loaded": []}
    data_dir = tmp_path / "data" / "flotilla"  # the default data dir, with the server's clouds.yaml
    data_dir.mkdir(parents=True)
    (data_dir / "clouds.yaml").write_text(
        json.dumps(
            {
                "clouds": {
                    "flotilla": {"auth_type": "admin_token", "auth": {"token": "t", "endpoint": UNREACHABLE}}
                }
            }
        )
    )
    assert probe([command], tmp_path) == {"code": 1, "loaded": []}


def test_image_build_still_offers_the_extras_flags(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["image-build", "--help"])
    assert "--kubernetes {auto,yes,no}" in capsys.readouterr().out
    args = build_parser().parse_args(["image-build", "img", "--os-distro", "debian", "--kubernetes", "yes"])
    assert args.coe_extras_kubernetes == "yes"

    def unreadable() -> None:
        raise AssertionError("entry points read by a command that does not use them")

    monkeypatch.setattr("flotilla.drivers.registry.node_image_extras", unreadable)
    assert build_parser().parse_args(["cluster-list"]).command == "cluster-list"
    with pytest.raises(AssertionError, match="entry points read"):
        build_parser().parse_args(["image-build", "img", "--os-distro", "debian"])
