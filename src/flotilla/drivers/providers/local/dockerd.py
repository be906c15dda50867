"""Flotilla's own dockerd as a process: its flags, start, readiness, the pid and mount
housekeeping around it, and what a dead one leaves behind (its containerd, bridges).

``engine.Engine`` decides whether to start, reuse or revive a daemon and talks to it;
this module only handles the process. The daemon's flags and why: ``engine``'s docstring.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from flotilla.errors import Unavailable

from . import devices

log = logging.getLogger(__name__)


def capability_bounding_set() -> int:
    """This process's capability bounding set (``CapBnd`` of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise RuntimeError("/proc/self/status has no CapBnd line")


def needs_capfix() -> bool:
    """True when the bounding set lacks capabilities the kernel knows (``--privileged`` breaks)."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text().strip())
    full = (1 << (last + 1)) - 1
    return capability_bounding_set() & full != full


def short_run_dir(data_dir: Path) -> Path:
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:10]
    base = Path("/run") if Path("/run").is_dir() and os.access("/run", os.W_OK) else Path("/tmp")
    return base / f"flotilla-{digest}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def unix_ping(sock_path: Path, timeout: float = 1.0) -> bool:
    """``GET /_ping`` over the unix socket; cheaper than spawning the CLI while polling."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock_path))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = s.recv(256)
    except OSError:
        return False
    return data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]


def unmount_under(directory: Path) -> None:
    """Lazily unmount every mount point below ``directory`` (deepest first)."""
    prefix = str(directory).rstrip("/") + "/"
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return
    for point in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        res = subprocess.run(["umount", "-l", point], capture_output=True, text=True, check=False, timeout=10)
        if res.returncode != 0:
            log.warning("could not unmount %s: %s", point, res.stderr.strip())


def unmount_stacked(point: Path, limit: int = 8) -> None:
    """Unmount ``point`` while it is still a mount point (mounts may be stacked on it)."""
    for _ in range(limit):
        try:
            mounted = any(
                line.split()[1] == str(point) for line in Path("/proc/mounts").read_text().splitlines()
            )
        except OSError:
            return
        if not mounted:
            return
        res = subprocess.run(["umount", str(point)], capture_output=True, text=True, check=False, timeout=10)
        if res.returncode != 0:
            log.warning("could not unmount %s: %s", point, res.stderr.strip())
            return


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def running_pid(pidfile: Path, root: Path) -> int | None:
    """The pid in ``pidfile`` if that process is alive and is a dockerd with our data-root."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    cmd = cmdline(pid)
    if not cmd or not cmd[0].endswith("dockerd") or str(root) not in cmd:
        return None
    return pid


def wait_ready(
    sock: Path, pid: int, process: subprocess.Popen[bytes] | None, logfile: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if unix_ping(sock):
            return
        exited = process.poll() is not None if process is not None else not pid_alive(pid)
        if exited:
            raise Unavailable(
                f"dockerd (pid {pid}) exited during start-up; see {logfile}:\n{log_tail(logfile)}"
            )
        if time.monotonic() > deadline:
            raise Unavailable(
                f"dockerd (pid {pid}) did not answer on {sock} within {timeout:.0f} s; see {logfile}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def remove_bridges(names: Sequence[str]) -> None:
    """Delete bridges a stopped daemon left on the host (it keeps them when it stops
    with networks still defined, and they would shadow routes until reboot)."""
    for name in names:
        if Path(f"/sys/class/net/{name}").exists():
            res = subprocess.run(
                ["ip", "link", "delete", name], capture_output=True, text=True, check=False, timeout=10
            )
            if res.returncode != 0:
                log.warning("could not delete bridge %s: %s", name, res.stderr.strip())
            else:
                log.info("deleted bridge %s left by the stopped daemon", name)


def end_orphan_containerd(run_dir: Path, wait: float = 5.0) -> None:
    """Make sure the containerd of a dead owned dockerd is gone before a new dockerd starts:
    the new one would otherwise find its pidfile, take it for "still running" (even as a
    zombie not yet reaped by init) and time out talking to it. A live containerd serving
    our exec-root is stopped by its pid; then the stale pidfile is removed."""
    pidfile = run_dir / "exec" / "containerd" / "containerd.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return

    def ours() -> bool:  # a zombie has an empty cmdline: not "ours", nothing to signal
        return pid_alive(pid) and str(run_dir) in " ".join(cmdline(pid))

    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None and ours():
            log.warning("stopping containerd pid %d left by the dead dockerd (%s)", pid, sig.name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while ours() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not ours():
            break
    with contextlib.suppress(OSError):
        pidfile.unlink()


def start(dockerd: str, data_dir: Path, run_dir: Path) -> subprocess.Popen[bytes]:
    """Start Flotilla's own dockerd for ``data_dir`` (its flags and why: ``engine``'s docstring)
    and return the process; it may not answer yet (:func:`wait_ready`).

    Raises ``Unavailable`` when a ``docker0`` bridge shows another engine on the host.
    """
    docker_dir = data_dir / "docker"
    sock = run_dir / "docker.sock"
    pidfile = docker_dir / "dockerd.pid"
    logfile = docker_dir / "dockerd.log"
    root = docker_dir / "root"
    host = f"unix://{sock}"
    cli_dir = docker_dir / "cli"
    if Path("/sys/class/net/docker0").exists():
        raise Unavailable(
            "a docker0 bridge exists, so another Docker Engine probably runs on this host; starting "
            "Flotilla's own dockerd (--bridge=none) would delete it. Set docker_host (e.g. "
            "FLOTILLA_LOCAL__DOCKER_HOST=unix:///var/run/docker.sock) to use that engine, or remove a "
            "stale bridge with `ip link delete docker0`"
        )
    for d in (docker_dir, root, cli_dir, run_dir):
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = docker_dir / "daemon.json"
    config.write_text("{}\n")
    argv = [
        dockerd,
        "--config-file",
        str(config),
        "--data-root",
        str(root),
        "--exec-root",
        str(run_dir / "exec"),
        "--host",
        host,
        "--pidfile",
        str(pidfile),
        "--bridge=none",
        # A dockerd that starts flushes the DOCKER-ISOLATION chains all engines on
        # the host share; Flotilla installs its own rules per network (firewall.py).
        "--iptables=false",
        # Nodes sit on --internal bridges: nothing is routed, so leave the host's
        # ip_forward and FORWARD policy alone (dockerd would set them to 1/DROP).
        "--ip-forward=false",
        "--storage-driver=overlay2",
    ]
    # Always: it keeps host devices out of nodes (and fixes capabilities if needed).
    wrapper = docker_dir / "runc-capfix"
    script = resources.files("flotilla.drivers.providers.local").joinpath("runc-capfix.sh").read_text()
    tmp = wrapper.with_suffix(".tmp")
    tmp.write_text(script.replace("@NODE_DEVICES@", devices.wrapper_allowlist()))
    tmp.chmod(0o755)
    tmp.replace(wrapper)
    argv += ["--add-runtime", f"capfix={wrapper}", "--default-runtime", "capfix"]
    log.info("OCI runtime wrapper %s (device filter; capability fix: %s)", wrapper, needs_capfix())
    # Nodes with a restart policy start with the daemon: their parent cgroup must
    # deny host devices before that.
    devices.ensure_parent_cgroup()
    fd = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "ab") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            # The server runs with umask 077 (private data dir); dockerd writes files
            # that non-root processes in containers read (hostname, resolv.conf).
            umask=0o022,
        )
    return process
