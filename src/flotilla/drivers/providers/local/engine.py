"""The outer Docker Engine: the local provider's "IaaS".

Either an existing engine (``docker_host``) or a dedicated ``dockerd`` that Flotilla
starts and owns. The owned daemon keeps all of its state away from any system Docker:

* data-root ``DATA_DIR/docker/root``, log ``DATA_DIR/docker/dockerd.log``, pidfile
  ``DATA_DIR/docker/dockerd.pid``, its own ``daemon.json`` (so ``/etc/docker`` is ignored);
* exec-root and socket under ``/run/flotilla-<hash of DATA_DIR>/`` (unix socket paths
  are limited to 108 bytes, so they cannot live under an arbitrary DATA_DIR);
* ``--ip-forward=false``: the host's ``ip_forward`` and FORWARD policy stay as they are;
* ``--iptables=false``: the daemon leaves iptables alone (a starting dockerd flushes the
  isolation chains of every other engine); the provider owns the rules (``firewall.py``);
* ``--bridge=none``: no default bridge. Starting a daemon with ``--bridge=none``
  deletes an existing ``docker0``, so we refuse to start when one exists (someone else's
  engine owns it; point ``docker_host`` at that engine instead);
* ``--default-runtime capfix`` (the ``runc-capfix`` wrapper): drops host devices from
  privileged containers' ``/dev`` (``devices.py``), and capabilities outside the host's
  bounding set when it is incomplete (``--privileged`` breaks otherwise).

Frequent calls go to the Engine API over the socket (:attr:`Engine.api`), the rest
through the ``docker`` CLI (:meth:`Engine.run`); no SDK.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from flotilla.errors import FlotillaError, Unavailable

from . import dockerd
from .engine_api import EngineApi

log = logging.getLogger(__name__)

#: API version the CLI speaks to an owned daemon (Debian docker.io 20.10 = 1.41). Pinning
#: it skips the CLI's version negotiation round trip on every call.
OWNED_API_VERSION = "1.41"

_START_TIMEOUT = 30.0
#: CLI warnings that say nothing about a failure (the owned engine runs --ip-forward=false
#: on purpose: cluster networks are --internal, nothing is routed).
_NOISE = ("WARNING: IPv4 forwarding is disabled", "Run 'docker run --help'", "See 'docker run --help'")
_STOP_TIMEOUT = 20.0


class EngineError(FlotillaError):
    """A docker CLI call failed; the message carries the command and Docker's stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        cmd = " ".join(["docker", *argv[:3]]) + (" ..." if len(argv) > 3 else "")
        lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(_NOISE)]
        detail = "\n".join(lines) or f"exit status {returncode}"
        super().__init__(f"{cmd}: {detail}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


class Engine:
    """A Docker Engine reachable through the docker CLI.

    Build one with :meth:`connect`. ``owned`` is True when this object (or an earlier
    one for the same DATA_DIR) started the daemon; only then does :meth:`stop` do
    anything, and it stops that daemon by its pid, never by name.
    """

    def __init__(
        self,
        *,
        host: str,
        data_dir: Path,
        owned: bool,
        env: Mapping[str, str],
        pid: int | None = None,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.host = host
        self.data_dir = data_dir
        self.owned = owned
        self.pid = pid
        self._env = dict(env)
        self._process = process
        self._api: EngineApi | None = None
        self._api_lock = threading.Lock()

    # ----------------------------------------------------------------- construction

    @classmethod
    def connect(cls, docker_host: str | None, data_dir: Path) -> Engine:
        """Use ``docker_host`` if given, else start (or reuse) a dedicated dockerd.

        Raises ``Unavailable`` when the docker CLI or dockerd is missing, when we are not
        root (owned daemon only), when a foreign ``docker0`` exists (owned daemon only),
        or when the engine does not answer; the message says what to do.
        """
        data_dir = Path(data_dir).resolve()
        if shutil.which("docker") is None:
            raise Unavailable("the docker CLI is not installed: apt-get install docker.io (or docker-ce-cli)")
        if docker_host:
            env = {**os.environ, "DOCKER_HOST": docker_host, "DOCKER_CLI_HINTS": "false"}
            engine = cls(host=docker_host, data_dir=data_dir, owned=False, env=env)
            engine._pin_api_version()
            return engine
        return cls._start_owned(data_dir)

    @classmethod
    def _start_owned(cls, data_dir: Path) -> Engine:
        dockerd_bin = shutil.which("dockerd") or (
            "/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None
        )
        if dockerd_bin is None:
            raise Unavailable("dockerd is not installed: apt-get install docker.io (or set docker_host)")
        if os.geteuid() != 0:
            raise Unavailable(
                "starting a dedicated dockerd needs root; run as root, "
                "or set docker_host to an existing engine"
            )
        docker_dir = data_dir / "docker"
        run_dir = dockerd.short_run_dir(data_dir)
        host = f"unix://{run_dir / 'docker.sock'}"
        cli_dir = docker_dir / "cli"
        env = {
            **os.environ,
            "DOCKER_HOST": host,
            "DOCKER_API_VERSION": OWNED_API_VERSION,
            "DOCKER_CONFIG": str(cli_dir),
            "DOCKER_CLI_HINTS": "false",
        }
        env.pop("DOCKER_CONTEXT", None)
        env.pop("DOCKER_TLS_VERIFY", None)
        env.pop("DOCKER_CERT_PATH", None)
        docker_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Two processes (API server, conductor) may start at once: one starts, one reuses.
        with (docker_dir / "start.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return cls._reuse_or_start(dockerd_bin, data_dir, run_dir, env)

    @classmethod
    def _reuse_or_start(cls, dockerd_bin: str, data_dir: Path, run_dir: Path, env: dict[str, str]) -> Engine:
        docker_dir = data_dir / "docker"
        sock = run_dir / "docker.sock"
        pidfile = docker_dir / "dockerd.pid"
        logfile = docker_dir / "dockerd.log"
        root = docker_dir / "root"
        host = f"unix://{sock}"
        pid = dockerd.running_pid(pidfile, root)
        if pid is not None and dockerd.unix_ping(sock):
            log.info("reusing dockerd pid %d at %s", pid, host)
            return cls(host=host, data_dir=data_dir, owned=True, env=env, pid=pid)
        if pid is not None:
            # Ours but not answering: give it a moment (it may be starting), then fail.
            dockerd.wait_ready(sock, pid, None, logfile, _START_TIMEOUT)
            return cls(host=host, data_dir=data_dir, owned=True, env=env, pid=pid)

        started = time.monotonic()
        process = dockerd.start(dockerd_bin, data_dir, run_dir)
        log.info("started dockerd pid %d (data-root %s, socket %s, log %s)", process.pid, root, sock, logfile)
        dockerd.wait_ready(sock, process.pid, process, logfile, _START_TIMEOUT)
        log.info("dockerd pid %d answered after %.2f s", process.pid, time.monotonic() - started)
        return cls(host=host, data_dir=data_dir, owned=True, env=env, pid=process.pid, process=process)

    def _pin_api_version(self) -> None:
        """Ask the engine once for its API version and pin the CLI and the API client to it
        (no per-call negotiation)."""
        if "DOCKER_API_VERSION" in self._env:
            return
        probe = EngineApi(self.host, self._env, None)  # Unavailable for unsupported schemes
        try:
            version = probe.request("GET", "/version", timeout=15) or {}
        except FlotillaError as exc:
            if isinstance(exc, Unavailable):
                raise
            raise Unavailable(f"the Docker Engine at {self.host} does not answer: {exc}") from exc
        finally:
            probe.close()
        if isinstance(version, dict) and version.get("ApiVersion"):
            self._env["DOCKER_API_VERSION"] = str(version["ApiVersion"])

    # ----------------------------------------------------------------- use

    @property
    def engine_id(self) -> str:
        """A short id of this Flotilla data dir's engine (labels host-wide objects such as
        iptables rules, which several engines share)."""
        return dockerd.short_run_dir(self.data_dir).name.removeprefix("flotilla-")

    @property
    def env(self) -> dict[str, str]:
        """The environment docker CLI subprocesses get (a copy)."""
        return dict(self._env)

    @property
    def api(self) -> EngineApi:
        """The engine's HTTP API (created on first use, shared by threads)."""
        with self._api_lock:
            if self._api is None:
                self._api = EngineApi(self.host, self._env, self._env.get("DOCKER_API_VERSION"))
            return self._api

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | str | None = None,
        timeout: float | None = 120.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGV`` against this engine; stdout/stderr are decoded text.

        Raises ``EngineError`` on a non-zero exit when ``check`` is true, and
        ``subprocess.TimeoutExpired`` (after killing the CLI) on timeout.
        """
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            ["docker", *argv],
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True,
            env=self._env,
            timeout=timeout,
            check=False,
        )
        res = subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
        if check and proc.returncode != 0:
            raise EngineError(argv, proc.returncode, res.stderr)
        return res

    def ping(self) -> None:
        """Raise ``Unavailable`` unless the engine answers."""
        try:
            self.api.request("GET", "/_ping", timeout=15)
        except FlotillaError as exc:
            if isinstance(exc, Unavailable):
                raise
            raise Unavailable(f"the Docker Engine at {self.host} does not answer: {exc}") from exc

    def info(self) -> dict[str, object]:
        """``docker info`` as a dict."""
        data = json.loads(self.run(["info", "--format", "{{json .}}"]).stdout)
        if not isinstance(data, dict):
            raise EngineError(["info"], 0, "unexpected output")
        return data

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Stop the daemon if we own it (SIGTERM by pid, SIGKILL after ``timeout``); else no-op.

        Containers of an owned daemon are stopped with it (restart policies bring them
        back when the daemon starts again).
        """
        if not self.owned or self.pid is None:
            return
        pid = self.pid
        if self._process is None and not dockerd.pid_alive(pid):
            return
        bridges = self._bridges()
        log.info("stopping dockerd pid %d", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None:
                if self._process.poll() is not None:
                    break
            elif not dockerd.pid_alive(pid):
                break
            time.sleep(0.05)
        else:
            log.warning("dockerd pid %d did not stop within %.0f s; killing it", pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if self._process is not None:
                self._process.wait(timeout=10)
        self.pid = None
        self._process = None
        with self._api_lock:
            if self._api is not None:
                self._api.close()
                self._api = None
        # The exec-root/socket dir is ours alone. A daemon may leave namespace mounts
        # there (exec/netns/default); unmount them so the dir can go.
        run_dir = dockerd.short_run_dir(self.data_dir)
        dockerd.unmount_under(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
        # A daemon killed earlier (and revived) leaves its bind mount of the data-root below
        # the one its successor removes on the way out.
        dockerd.unmount_stacked(self.data_dir / "docker" / "root")
        dockerd.remove_bridges(bridges)
        log.info("dockerd pid %d stopped", pid)

    def _bridges(self) -> list[str]:
        """Host bridge names of this engine's bridge networks (best effort)."""
        try:
            nets = self.api.get("/networks") or []
        except FlotillaError:
            return []
        return [
            str(name)
            for net in nets
            if net.get("Driver") == "bridge"
            and (name := (net.get("Options") or {}).get("com.docker.network.bridge.name"))
        ]

    def answers(self, timeout: float = 3.0) -> bool:
        """True when the engine answers ``/_ping`` now."""
        try:
            self.api.request("GET", "/_ping", timeout=timeout)
        except FlotillaError:
            return False
        return True

    def _answers_fresh(self, timeout: float) -> bool:
        """True when the engine answers ``/_ping`` on a new connection within ``timeout``."""
        try:
            probe = EngineApi(self.host, self._env, self._env.get("DOCKER_API_VERSION"))
        except FlotillaError:
            return False
        try:
            probe.request("GET", "/_ping", timeout=timeout)
        except FlotillaError:
            return False
        finally:
            probe.close()
        return True

    def _retire_api(self) -> None:
        """Make the next ``api`` call build a new client. The old one is not closed here:
        other threads may be in the middle of a request on it (closing it under them fails
        their request with "Bad file descriptor"); its connections go when it does."""
        with self._api_lock:
            self._api = None

    def revive(self, quick: float = 3.0, patience: float = 30.0) -> bool:
        """Make the engine answer again, if it stopped: an owned daemon that died is started
        again on the same data dir (its containers come back by their restart policies);
        for any engine the API client is rebuilt (a fresh connection). Returns True when
        the engine had stopped answering. Raises ``Unavailable`` when it cannot be revived.

        A busy engine is not a stopped one: when the ``quick`` ping fails, a fresh
        connection gets ``patience`` seconds before anything is restarted or reconnected.
        """
        if self.answers(quick):
            return False
        if self._answers_fresh(patience):
            # Slow, or the shared client's connection went bad: a new client for later calls.
            log.info("the Docker Engine at %s answered slowly; it is running", self.host)
            self._retire_api()
            return False
        self._retire_api()
        if not self.owned:
            log.warning("the Docker Engine at %s stopped answering; reconnecting", self.host)
            self.ping()
            return True
        if self._process is not None:
            self._process.poll()  # reap it: a zombie would look alive to dockerd's pidfile check
        log.warning("the owned dockerd (pid %s) stopped answering; starting it again", self.pid)
        dockerd.end_orphan_containerd(dockerd.short_run_dir(self.data_dir))
        restarted_at = time.time()
        fresh = Engine._start_owned(self.data_dir)
        self.host, self.pid, self._process, self._env = fresh.host, fresh.pid, fresh._process, fresh._env
        self._restart_by_policy(restarted_at)
        return True

    def _restart_by_policy(self, since: float) -> None:
        """Start the containers the new daemon stopped while restoring its state: without
        live-restore, dockerd kills what was running when its predecessor died and does
        not apply restart policies to them. Only containers with an ``always`` or
        ``unless-stopped`` policy that finished after ``since`` (epoch seconds) are started,
        so ones stopped on purpose before the crash stay stopped."""
        from datetime import datetime

        for row in self.api.get("/containers/json", all=1, filters=json.dumps({"status": ["exited"]})) or []:
            info = self.api.inspect("container", str(row.get("Id")))
            if not info:
                continue
            policy = ((info.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name")
            finished = str((info.get("State") or {}).get("FinishedAt") or "")
            try:
                ended = datetime.fromisoformat(finished[:26].rstrip("Z") + "+00:00").timestamp()
            except ValueError:
                continue
            if policy in ("always", "unless-stopped") and ended >= since - 1:
                try:
                    self.api.request("POST", f"/containers/{info['Id']}/start", timeout=60)
                    log.info("started container %s again (restart policy %s)", info.get("Name"), policy)
                except FlotillaError as exc:
                    log.warning("could not start container %s again: %s", info.get("Name"), exc)

    def __repr__(self) -> str:
        return f"Engine(host={self.host!r}, owned={self.owned}, pid={self.pid})"


def probe(docker_host: str | None, data_dir: Path, timeout: float = 2.0) -> tuple[str, str]:
    """The engine's state without starting anything: ``("up" | "down" | "not started", detail)``.

    ``not started``: no owned daemon yet (it starts when a cluster first needs it).
    """
    if docker_host:
        api = EngineApi(docker_host, {**os.environ, "DOCKER_HOST": docker_host}, None)
        try:
            api.request("GET", "/_ping", timeout=timeout)
        except FlotillaError as exc:
            log.warning("the Docker Engine at %s does not answer: %s", docker_host, exc)
            return "down", "the configured Docker Engine (docker_host) does not answer"
        finally:
            api.close()
        return "up", "the configured Docker Engine (docker_host) answers"
    data_dir = Path(data_dir).resolve()
    pidfile = data_dir / "docker" / "dockerd.pid"
    if not pidfile.is_file():
        return "not started", "Flotilla starts its own dockerd when a cluster first needs it"
    sock = dockerd.short_run_dir(data_dir) / "docker.sock"
    if dockerd.unix_ping(sock, timeout):
        return "up", "Flotilla's own dockerd answers"
    if dockerd.running_pid(pidfile, data_dir / "docker" / "root") is None:
        return "down", "Flotilla's own dockerd is not running (the conductor starts it again)"
    return "down", "Flotilla's own dockerd runs but does not answer"
