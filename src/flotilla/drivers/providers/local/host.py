"""What the local provider needs from the host itself: loop devices for sized node
volumes, the host's routes (cluster subnets must not shadow them) and kernel features."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import logging
import os
import subprocess
import threading
from pathlib import Path

from flotilla.errors import FlotillaError

log = logging.getLogger(__name__)

_LOOP_LOCK = threading.Lock()


@functools.cache
def kernel_has_ipvs() -> bool:
    """Whether this kernel has IPVS: loaded (``/proc/net/ip_vs``), built in, or loadable."""
    if Path("/proc/net/ip_vs").exists():
        return True
    modules = Path("/lib/modules") / os.uname().release
    for index in ("modules.builtin", "modules.dep"):
        with contextlib.suppress(OSError):
            if "/ip_vs.ko" in (modules / index).read_text():
                return True
    return False


def list_loops() -> list[tuple[str, str]]:
    """(device, backing file) of every loop device on the host."""
    res = subprocess.run(
        ["losetup", "--json", "--list", "--output", "NAME,BACK-FILE"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if res.returncode != 0 or not res.stdout.strip():
        return []
    loops: list[tuple[str, str]] = []
    for dev in json.loads(res.stdout).get("loopdevices", []):
        back = str(dev.get("back-file") or "")
        back = back.removesuffix(" (deleted)")
        loops.append((str(dev.get("name")), back))
    return loops


def loops_under(directory: Path) -> list[tuple[str, str]]:
    prefix = str(directory).rstrip("/") + "/"
    return [(dev, back) for dev, back in list_loops() if back.startswith(prefix)]


def detach_loop(device: str) -> None:
    res = subprocess.run(["losetup", "-d", device], capture_output=True, text=True, check=False, timeout=30)
    if res.returncode != 0 and "No such device" not in res.stderr:
        raise FlotillaError(f"losetup -d {device}: {res.stderr.strip()}")


def ensure_loop(path: Path, size_gb: int) -> str:
    """Attach ``path`` (created and formatted when new) to a loop device; return the device."""
    with _LOOP_LOCK:
        private_dirs(path.parent, levels=2)
        if not path.exists():
            partial = path.with_suffix(".partial")
            # 0600: the image holds the node's /var/lib/docker (keys, images, secrets).
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.truncate(size_gb * 1024**3)
            subprocess.run(
                ["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "nodiscard", str(partial)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            partial.replace(path)
        else:
            private_file(path)
        if path.stat().st_size != size_gb * 1024**3:
            log.warning(
                "%s: keeping existing size %d bytes (asked %d GiB)", path, path.stat().st_size, size_gb
            )
        for dev, back in list_loops():
            if back == str(path):
                return dev
        res = subprocess.run(
            ["losetup", "--find", "--show", str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if res.returncode != 0:
            raise FlotillaError(f"losetup --find --show {path}: {res.stderr.strip()}")
        return res.stdout.strip()


def private_dirs(path: Path, levels: int = 1) -> None:
    """Create ``path`` 0700 and make it and ``levels - 1`` of its parents 0700
    (``volumes/<cluster>`` and ``volumes``)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for d in [path, *path.parents][:levels]:
        if d.stat().st_mode & 0o777 != 0o700:
            os.chmod(d, 0o700)


def private_file(path: Path) -> None:
    """Make an existing file 0600 (written by an older version with the umask's mode)."""
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_mode & 0o777 != 0o600:
            os.chmod(path, 0o600)


def free_gib(path: Path) -> int:
    """Whole GiB free (for root) on the filesystem of ``path`` (or of its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize // 1024**3


def fs_usage(path: Path) -> tuple[int, int]:
    """(size, free) in bytes of the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def routes() -> list[ipaddress.IPv4Network]:
    """Destinations of this host's IPv4 routes (every table), to keep cluster subnets off them."""
    res = subprocess.run(
        ["ip", "-j", "-4", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    nets: list[ipaddress.IPv4Network] = []
    if res.returncode == 0 and res.stdout.strip():
        for route in json.loads(res.stdout):
            dst = str(route.get("dst", ""))
            if dst and dst != "default":
                with contextlib.suppress(ValueError):
                    net = ipaddress.IPv4Network(dst, strict=False)
                    if net.prefixlen > 0:
                        nets.append(net)
    return nets
