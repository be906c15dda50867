"""A real ``flotilla serve`` subprocess on the session's Docker Engine, for e2e tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import serving

FLOTILLA = serving.FLOTILLA
free_port = serving.free_port


@dataclass
class Server:
    data_dir: Path
    docker_host: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = serving.clean_env()
        env.update(
            FLOTILLA_LOCAL__DOCKER_HOST=self.docker_host,
            FLOTILLA_CONDUCTOR__LEASE_SECONDS="4",
            FLOTILLA_CONDUCTOR__SYNC_INTERVAL="2",
        )
        env.update(self.extra_env)  # overrides the defaults above
        return env

    def start(self) -> Server:
        launched = serving.launch(self.data_dir, self.env(), port=self.port)
        self.proc, self.token = launched.proc, launched.token
        return self

    def log(self) -> str:
        path = self.data_dir / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the crash the conductor must survive."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            serving.stop(self.proc)

    def fl(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the ``flotilla`` CLI against this server."""
        r = subprocess.run(
            [FLOTILLA, "--data-dir", str(self.data_dir), *args],
            env=self.env(), capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and r.returncode != 0:
            raise AssertionError(
                f"flotilla {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
            )
        return r

    def fl_start(self, *args: str) -> Pending:
        """Start the ``flotilla`` CLI against this server without waiting for it (several
        ``cluster-create --wait`` in flight at once); :meth:`Pending.result` collects it."""
        proc = subprocess.Popen(
            [FLOTILLA, "--data-dir", str(self.data_dir), *args],
            env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        return Pending(args, proc)

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"X-Auth-Token": self.token, "OpenStack-API-Version": "container-infra latest"}
        return httpx.request(method, self.endpoint + path, headers=headers, timeout=30, **kw)

    def cluster(self, ident: str) -> dict[str, Any]:
        r = self.api("GET", f"/v1/clusters/{ident}")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def wait(self, ident: str, timeout: float = 180) -> dict[str, Any]:
        """Poll until the cluster leaves *_IN_PROGRESS (or is gone: returns {})."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.api("GET", f"/v1/clusters/{ident}")
            if r.status_code == 404:
                return {}
            data: dict[str, Any] = r.json()
            if not data["status"].endswith("IN_PROGRESS"):
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"cluster {ident} still {data['status']} ({data['status_reason']})")
            time.sleep(0.2)

    def docker_env(self, cluster: str, cert_dir: Path) -> dict[str, str]:
        """The environment `eval $(flotilla cluster-config ...)` gives, as a dict."""
        cert_dir.mkdir(parents=True, exist_ok=True)
        out = self.fl("cluster-config", cluster, "--dir", str(cert_dir), "--force").stdout
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        for line in out.splitlines():
            assert line.startswith("export "), f"unexpected stdout line from cluster-config: {line!r}"
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value
        return env


@dataclass
class Pending:
    """A ``flotilla`` CLI command started by :meth:`Server.fl_start`."""

    args: tuple[str, ...]
    proc: subprocess.Popen[str]
    collected: bool = False

    def result(self, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Wait for the command (``timeout`` from now); like :meth:`Server.fl` when ``check``."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
            self.collected = True
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"flotilla {' '.join(self.args)} did not end within {timeout:g} s") from None
        r = subprocess.CompletedProcess(list(self.args), self.proc.returncode, out, err)
        if check and r.returncode != 0:
            raise AssertionError(
                f"flotilla {' '.join(self.args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
            )
        return r

    def stop(self) -> None:
        """Kill it by pid if it still runs (a test that failed before collecting it)."""
        if self.collected:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=10)
        self.collected = True


def docker(
    env: dict[str, str], *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def as_json(r: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(r.stdout)
