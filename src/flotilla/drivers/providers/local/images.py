"""Node and workload images without a registry.

Two node image designs (see the feasibility note, section 2):

* **hostroot** (:func:`build_hostroot_image`): a ~1 MB tarball of ``/etc`` snapshots,
  the merged-usr symlinks and a few empty directories, imported with ``docker import``.
  Nodes run it with ``-v /usr:/usr:ro``, so they execute whatever is installed on the
  host (docker.io, haproxy, ...). ``/etc/alternatives`` and ``ld.so.cache`` are snapshots
  taken at build time: rebuild (``force=True``) after installing host packages.
  ``docker run --init`` does not work with it (``/sbin`` is a symlink into the read-only
  ``/usr``); run commands under ``/usr/bin/docker-init`` instead (the image's ENTRYPOINT).
* **rootfs** (:func:`build_debootstrap_image`): a self-contained Debian built with
  ``mmdebstrap`` (about 30 s and 390 MB once; the tarball is cached under
  ``DATA_DIR/images``).

Every node image carries the label ``flotilla.node-image.kind=hostroot|rootfs``; the
local provider reads it to decide on the ``/usr`` bind mount and the init process.

:func:`build_workload_image` makes a 2 MB ``busybox:local`` from Debian's busybox-static
for workloads inside clusters (import it into each node's daemon). Static-glibc busybox
``wget`` segfaults (NSS): use ``nc``, or ``nslookup`` for DNS.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import shutil
import struct
import subprocess
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from flotilla.errors import Unavailable

from .engine import Engine, EngineError

log = logging.getLogger(__name__)

KIND_LABEL = "flotilla.node-image.kind"
KIND_HOSTROOT = "hostroot"
KIND_ROOTFS = "rootfs"
DOCKER_INIT = "/usr/bin/docker-init"

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SUITE = "bookworm"
DEBOOTSTRAP_PACKAGES = (
    "docker.io",
    "iproute2",
    "ca-certificates",
    "iptables",
    "procps",
    "iputils-ping",
    "kmod",
    "openssh-server",
    "haproxy",
)

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

# docker CLI runner: (argv, stdin) -> CompletedProcess; raises EngineError on failure.
_Runner = Callable[[Sequence[str], bytes | None], subprocess.CompletedProcess[str]]


def _engine_runner(engine: Engine) -> _Runner:
    def run(argv: Sequence[str], data: bytes | None) -> subprocess.CompletedProcess[str]:
        return engine.run(argv, input=data, timeout=600)

    return run


def _args_runner(docker_args: Sequence[str]) -> _Runner:
    """Runner for ``docker DOCKER_ARGS ...`` (e.g. ``["-H", "tcp://IP:2376", "--tlsverify", ...]``)."""

    def run(argv: Sequence[str], data: bytes | None) -> subprocess.CompletedProcess[str]:
        full = [*docker_args, *argv]
        proc = subprocess.run(
            ["docker", *full],
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=600,
            check=False,
        )
        out = subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
        if proc.returncode != 0:
            raise EngineError(full, proc.returncode, out.stderr)
        return out

    return run


def _image_present(run: _Runner, tag: str) -> bool:
    try:
        run(["image", "inspect", "--format", "{{.Id}}", tag], None)
    except EngineError:
        return False
    return True


def image_kind(engine: Engine, image_ref: str) -> str | None:
    """The ``flotilla.node-image.kind`` label of a local image; None if the label is absent.

    Raises ``EngineError`` when the image does not exist.
    """
    res = engine.run(
        ["image", "inspect", "--format", f'{{{{index .Config.Labels "{KIND_LABEL}"}}}}', image_ref]
    )
    kind = res.stdout.strip()
    return kind if kind and kind != "<no value>" else None


# --------------------------------------------------------------------- tar helpers


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


# --------------------------------------------------------------------- builders


def _with_extras(base: bytes, extras: Mapping[str, Path], workdir: Path) -> Path:
    """Write ``base`` plus the host directories ``extras`` (image path -> host dir, symlinks
    kept as symlinks) as a tar file under ``workdir``; returns its path."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"hostroot-{os.getpid()}-{time.monotonic_ns()}.tar"
    path.write_bytes(base)
    with tarfile.open(path, mode="a", format=tarfile.PAX_FORMAT) as tar:
        for target, source in extras.items():
            tar.add(str(source.resolve()), arcname=target.strip("/"), recursive=True)
    return path


def build_hostroot_image(
    engine: Engine,
    tag: str = "flotilla-node:hostroot",
    *,
    force: bool = False,
    extras: Mapping[str, Path] | None = None,
    labels: Mapping[str, str] | None = None,
) -> str:
    """Import the hostroot node image as ``tag`` (idempotent: kept if present unless ``force``).

    The image's ENTRYPOINT is ``/usr/bin/docker-init --`` and its CMD ``dockerd``; nodes
    need ``-v /usr:/usr:ro`` (label ``flotilla.node-image.kind=hostroot``). ``extras``
    adds host directories at image paths (e.g. the Kubernetes binaries at
    ``/opt/flotilla/kube``), ``labels`` more image labels. Returns ``tag``.
    Raises ``Unavailable`` when the host lacks ``/usr/bin/docker-init`` (docker.io).
    """
    run = _engine_runner(engine)
    if not force and _image_present(run, tag):
        log.debug("node image %s already present", tag)
        return tag
    if not Path(DOCKER_INIT).exists():
        raise Unavailable(f"{DOCKER_INIT} is missing on this host: apt-get install docker.io")
    started = time.monotonic()
    data = hostroot_tarball()
    source, tarball = "-", None
    if extras:
        tarball = _with_extras(data, extras, engine.data_dir / "images")
        source, data = str(tarball), b""
    label_changes = [arg for k, v in (labels or {}).items() for arg in ("--change", f"LABEL {k}={v}")]
    try:
        _import_hostroot(run, tag, source, data if tarball is None else None, label_changes)
    finally:
        if tarball is not None:
            tarball.unlink(missing_ok=True)
    log.info(
        "built node image %s (hostroot, %d kB) in %.2f s", tag, len(data) // 1024, time.monotonic() - started
    )
    return tag


def _import_hostroot(run: _Runner, tag: str, source: str, data: bytes | None, extra: Sequence[str]) -> None:
    run(
        [
            "import",
            *extra,
            "--change",
            f"LABEL {KIND_LABEL}={KIND_HOSTROOT}",
            "--change",
            f'ENTRYPOINT ["{DOCKER_INIT}", "--"]',
            "--change",
            'CMD ["dockerd"]',
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            source,
            tag,
        ],
        data,
    )


def build_debootstrap_image(
    engine: Engine,
    tag: str = "flotilla-node:debootstrap",
    mirror: str = DEFAULT_MIRROR,
    *,
    suite: str = DEFAULT_SUITE,
    packages: Sequence[str] = DEBOOTSTRAP_PACKAGES,
    cache_dir: Path | None = None,
    force: bool = False,
) -> str:
    """Build a self-contained Debian node image with mmdebstrap and import it as ``tag``.

    The tarball is cached as ``rootfs-<suite>-<hash>.tar`` in ``cache_dir`` (default
    ``DATA_DIR/images``; the hash covers suite, mirror and packages), so a rebuild after
    ``docker rmi`` only re-imports. The image has openssh-server and haproxy, but nothing
    starts sshd (a node command would need ``ssh-keygen -A; mkdir /run/sshd``).
    Idempotent: kept if ``tag`` exists unless ``force`` (which also rebuilds the tarball).
    Label ``flotilla.node-image.kind=rootfs``; CMD ``dockerd``. Returns ``tag``.
    Raises ``Unavailable`` when mmdebstrap is missing, ``EngineError``/``CalledProcessError``
    when the build or import fails.
    """
    run = _engine_runner(engine)
    if not force and _image_present(run, tag):
        log.debug("node image %s already present", tag)
        return tag
    key = hashlib.sha256("\0".join([suite, mirror, *sorted(packages)]).encode()).hexdigest()[:12]
    cache_dir = cache_dir or engine.data_dir / "images"
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / f"rootfs-{suite}-{key}.tar"
    if force or not tarball.exists():
        mmdebstrap = shutil.which("mmdebstrap")
        if mmdebstrap is None:
            raise Unavailable("mmdebstrap is not installed: apt-get install mmdebstrap")
        partial = tarball.with_suffix(".partial.tar")
        log.info("building %s rootfs with mmdebstrap from %s (takes about 30 s)", suite, mirror)
        started = time.monotonic()
        subprocess.run(
            [
                mmdebstrap,
                "--variant=essential",
                "--include=" + ",".join(packages),
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--quiet",
                suite,
                str(partial),
                mirror,
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=1800,
        )
        os.replace(partial, tarball)
        log.info("rootfs tarball %s built in %.1f s", tarball, time.monotonic() - started)
    started = time.monotonic()
    run(
        [
            "import",
            "--change",
            f"LABEL {KIND_LABEL}={KIND_ROOTFS}",
            "--change",
            'CMD ["dockerd"]',
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            str(tarball),
            tag,
        ],
        None,
    )
    log.info("imported node image %s (rootfs) in %.1f s", tag, time.monotonic() - started)
    return tag


def build_workload_image(
    target: Engine | Sequence[str], tag: str = "busybox:local", *, force: bool = False
) -> str:
    """Import the busybox workload image as ``tag`` into ``target``; returns ``tag``.

    ``target`` is an :class:`Engine`, or docker CLI global arguments for another daemon
    (e.g. a node's: ``["-H", "tcp://172.29.1.10:2376", "--tlsverify", "--tlscacert", ...]``).
    Idempotent: kept if present unless ``force``. Raises ``Unavailable`` without
    busybox-static, ``EngineError`` when the import fails.
    """
    run = _engine_runner(target) if isinstance(target, Engine) else _args_runner(list(target))
    if not force and _image_present(run, tag):
        return tag
    started = time.monotonic()
    run(["import", "--change", 'CMD ["sh"]', "-", tag], busybox_tarball())
    log.info("imported workload image %s in %.2f s", tag, time.monotonic() - started)
    return tag
