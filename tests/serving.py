"""Start and stop a real ``flotilla serve`` subprocess: the one way every test suite (and the
benches) does it. Each suite wraps the result in its own helper class."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

FLOTILLA = str(Path(sys.executable).with_name("flotilla"))
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: FLOTILLA_* settings a server inherits: where this machine's Kubernetes build lives (the
#: tests read the same cache to decide whether real nodes can run; a server looking elsewhere
#: would find no binaries when the build went to a non-default ``FLOTILLA_KUBE_CACHE``).
INHERITED = ("FLOTILLA_KUBE_CACHE",)


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without OS_*, FLOTILLA_* (but :data:`INHERITED`) and
    DOCKER_* (so a developer's shell cannot steer the server), plus ``overrides``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k in INHERITED or not k.startswith(("OS_", "FLOTILLA_", "DOCKER_"))
    }
    env.update(overrides)
    return env


class ServeFailed(RuntimeError):
    """The server exited or did not answer; the message carries the end of its log."""


@dataclass
class Launched:
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """The admin token the server wrote to ``DATA_DIR/clouds.yaml`` on first start."""
        clouds = yaml.safe_load((self.data_dir / "clouds.yaml").read_text())
        return str(clouds["clouds"]["flotilla"]["auth"]["token"])

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM by pid, SIGKILL if it does not exit within ``timeout``."""
        stop(self.proc, timeout)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no server log)"


def launch(
    data_dir: Path,
    env: Mapping[str, str],
    *,
    log: Path | None = None,
    cwd: Path | None = None,
    port: int | None = None,
    timeout: float = START_TIMEOUT,
    attempts: int = 3,
    extra_args: Sequence[str] = (),
) -> Launched:
    """``flotilla --data-dir DATA_DIR serve`` on a free port; returns once it answers and has
    written ``clouds.yaml``. Retries with another port when the server dies at start (the
    free port can be taken between picking and binding it). Raises ``ServeFailed``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    last = ""
    for _ in range(attempts):
        chosen = port or free_port()
        log_path = log or data_dir / "serve.log"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [FLOTILLA, "--data-dir", str(data_dir), "serve", "--bind", f"127.0.0.1:{chosen}", *extra_args],
                env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        launched = Launched(proc=proc, port=chosen, data_dir=data_dir, log=log_path)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if (data_dir / "clouds.yaml").is_file() and httpx.get(
                    launched.url + "/", timeout=2
                ).status_code == 200:
                    return launched
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        if proc.poll() is None:
            stop(proc)
            raise ServeFailed(f"flotilla serve did not answer within {timeout:.0f} s:\n{_tail(log_path)}")
        last = f"flotilla serve exited {proc.returncode}:\n{_tail(log_path)}"
        if port is not None:
            break
    raise ServeFailed(last)
