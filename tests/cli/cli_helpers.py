"""Helpers for the CLI tests: the server handle and a runner for the ``flotilla`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent
FLOTILLA = str(BIN / "flotilla")
START_TIMEOUT = 60.0
IMAGE = "fedora-atomic-latest"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any OS_* / FLOTILLA_* settings of the person running the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "FLOTILLA_"))}
    env.update(extra)
    return env


@dataclass
class Server:
    data_dir: Path
    endpoint: str
    token: str
    workdir: Path
    home: Path
    docker_host: str = ""

    def env(self, **extra: str) -> dict[str, str]:
        if self.docker_host:
            extra.setdefault("FLOTILLA_LOCAL__DOCKER_HOST", self.docker_host)
        return clean_env(HOME=str(self.home), **extra)

    def run(
        self,
        *args: str,
        data_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``flotilla --data-dir D ARGS``; with ``check`` fail the test on a non-zero exit."""
        argv = [FLOTILLA, "--data-dir", str(data_dir or self.data_dir), *args]
        proc = subprocess.run(
            argv,
            cwd=self.workdir,
            env=dict(env) if env is not None else self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"{' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.endpoint,
            headers={"X-Auth-Token": self.token, "OpenStack-API-Version": "container-infra latest"},
            timeout=30,
        )
