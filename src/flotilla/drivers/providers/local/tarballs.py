"""Node and workload images' filesystems as tar bytes, built in memory from the host
(``images`` imports them into an engine).

* :func:`hostroot_tarball`: ``/etc`` snapshots, the merged-usr symlinks and empty
  directories; nodes bind-mount the host's ``/usr`` over it. Adds the guide's login user.
* :func:`busybox_tarball`: a busybox root filesystem from Debian's busybox-static.
"""

from __future__ import annotations

import functools
import io
import struct
import subprocess
import tarfile
import time
from pathlib import Path

from flotilla.errors import Unavailable

#: /etc entries copied into the hostroot image (missing ones are skipped).
_HOSTROOT_ETC = (
    "passwd",
    "group",
    "shadow",
    "gshadow",
    "nsswitch.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "protocols",
    "services",
    "ethertypes",
    "os-release",
    "iproute2",
    "host.conf",
    "localtime",
    "shells",
    "profile",
    "bash.bashrc",
    "environment",
    "login.defs",
    "pam.d",
    "security",
    "gai.conf",
    "ssh",
)
_HOSTROOT_LINKS = {
    "bin": "usr/bin",
    "sbin": "usr/sbin",
    "lib": "usr/lib",
    "lib64": "usr/lib64",
    "lib32": "usr/lib32",
    "libx32": "usr/libx32",
    "var/run": "../run",
    "etc/mtab": "../proc/self/mounts",
}
_HOSTROOT_DIRS = {
    "usr": 0o755,
    "proc": 0o555,
    "sys": 0o555,
    "dev": 0o755,
    "run": 0o755,
    "tmp": 0o1777,
    "root": 0o700,
    "home": 0o755,
    "mnt": 0o755,
    "opt": 0o755,
    "etc": 0o755,
    "etc/docker": 0o755,
    "var": 0o755,
    "var/lib": 0o755,
    "var/lib/docker": 0o710,
    "var/log": 0o755,
    "var/tmp": 0o1777,
    "var/cache": 0o755,
}


def _add_dir(tar: tarfile.TarFile, name: str, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = int(time.time())
    tar.addfile(info)


def _add_symlink(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    info.mode = 0o777
    info.mtime = int(time.time())
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def hostroot_tarball() -> bytes:
    """The hostroot image's filesystem as an uncompressed tar (built in memory, ~1 MB)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in _HOSTROOT_DIRS.items():
            _add_dir(tar, name, mode)
        for name, target in _HOSTROOT_LINKS.items():
            # Only link what exists on the host (lib32 etc. are optional).
            if name.startswith("lib") and not (Path("/") / target).exists():
                continue
            _add_symlink(tar, name, target)
        for entry in _HOSTROOT_ETC:
            src = Path("/etc") / entry
            if entry in _ACCOUNT_FILES:
                continue
            if src.exists() or src.is_symlink():
                tar.add(str(src), arcname=f"etc/{entry}", recursive=True)
        _add_login_user(tar)
    return buf.getvalue()


#: The guide's login name for swarm nodes ("fedora"), added to the image's accounts.
LOGIN_USER = "fedora"
LOGIN_UID = 1500
_ACCOUNT_FILES = ("passwd", "group", "shadow", "gshadow")


def _add_login_user(tar: tarfile.TarFile) -> None:
    """Copy the host's account files and add the login user (key-only: no password),
    with ``/home/<user>/.ssh`` owned by it so sshd's StrictModes accept the key."""
    lines = {
        "passwd": f"{LOGIN_USER}:x:{LOGIN_UID}:{LOGIN_UID}:{LOGIN_USER}:/home/{LOGIN_USER}:/bin/sh",
        "group": f"{LOGIN_USER}:x:{LOGIN_UID}:",
        "shadow": f"{LOGIN_USER}:*:19000:0:99999:7:::",
        "gshadow": f"{LOGIN_USER}:!::",
    }
    for name, line in lines.items():
        src = Path("/etc") / name
        text = src.read_text() if src.is_file() else ""
        if not any(row.split(":", 1)[0] == LOGIN_USER for row in text.splitlines()):
            text = text.rstrip("\n") + ("\n" if text else "") + line + "\n"
        _add_file(tar, f"etc/{name}", text.encode(), 0o640 if "shadow" in name else 0o644)
    for path, mode in ((f"home/{LOGIN_USER}", 0o755), (f"home/{LOGIN_USER}/.ssh", 0o700)):
        info = tarfile.TarInfo(path)
        info.type = tarfile.DIRTYPE
        info.mode = mode
        info.uid = info.gid = LOGIN_UID
        info.mtime = int(time.time())
        tar.addfile(info)


def _is_static_elf(path: Path) -> bool:
    """True when ``path`` is an ELF64 executable without a PT_INTERP (statically linked)."""
    with path.open("rb") as f:
        header = f.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2:
            return False
        endian = "<" if header[5] == 1 else ">"
        (phoff,) = struct.unpack_from(endian + "Q", header, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", header, 0x36)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            (p_type,) = struct.unpack(endian + "I", f.read(4))
            if p_type == 3:  # PT_INTERP
                return False
    return True


@functools.lru_cache(maxsize=1)
def busybox_tarball() -> bytes:
    """A busybox root filesystem from the host's busybox-static, as tar bytes (~2 MB).

    Raises ``Unavailable`` when no statically linked ``/bin/busybox`` is installed.
    """
    busybox = Path("/bin/busybox")
    if not busybox.exists() or not _is_static_elf(busybox.resolve()):
        raise Unavailable(
            "a static /bin/busybox is needed for the workload image: apt-get install busybox-static"
        )
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True, timeout=10
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in {
            "bin": 0o755,
            "etc": 0o755,
            "dev": 0o755,
            "proc": 0o555,
            "sys": 0o555,
            "root": 0o700,
            "tmp": 0o1777,
            "var": 0o755,
            "var/www": 0o755,
            "run": 0o755,
        }.items():
            _add_dir(tar, name, mode)
        _add_file(tar, "bin/busybox", busybox.read_bytes(), 0o755)
        for applet in sorted(set(applets)):
            if applet != "busybox" and "/" not in applet:
                _add_symlink(tar, f"bin/{applet}", "busybox")
        _add_symlink(tar, "sbin", "bin")
        _add_symlink(tar, "usr", ".")
        _add_file(
            tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        )
        _add_file(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()
