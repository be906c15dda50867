"""Native-client configuration: what ``cluster-config``/``bay-config`` and the dashboard's
bundle hand the user, rendered by the COE driver as files plus environment.

Each COE driver's ``client_config(request)`` returns a :class:`NativeConfig`; callers
write its files, print its environment, and never switch on the COE themselves.
Renderers are pure (no I/O): writing and merging files is the caller's job.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Credentials:
    """A client certificate signed by the cluster CA (``POST /v1/certificates``), its key, the CA."""

    ca_pem: str
    cert_pem: str
    key_pem: str


@dataclass(frozen=True)
class ClientConfigRequest:
    cluster_name: str
    api_address: str
    #: Where the files will be (absolute for the CLI, ``.`` in the dashboard's bundle).
    directory: str
    tls: bool
    #: None with ``tls``: only the environment is wanted (a preview); no files are rendered.
    creds: Credentials | None = None


@dataclass(frozen=True)
class ConfigFile:
    name: str
    text: str
    mode: int = 0o644


@dataclass(frozen=True)
class Merge:
    """A config that can be merged into a shared file (kubeconfig into ``~/.kube/config``)."""

    #: Where it goes unless the user names a file.
    default_target: Path
    #: ``apply(existing_text_or_None) -> new text`` of the target file.
    apply: Callable[[str | None], str]
    #: What was merged, for the user (e.g. ``context flotilla-k8s``).
    what: str


@dataclass(frozen=True)
class NativeConfig:
    files: tuple[ConfigFile, ...] = ()
    #: ``(NAME, value)``; a value of None means "unset NAME".
    env: tuple[tuple[str, str | None], ...] = ()
    merge: Merge | None = None
    #: Said to the user when there is nothing to configure (e.g. an unknown COE).
    note: str = ""
    #: A first command to try once the environment is set (``docker info``, ``kubectl get nodes``).
    try_it: str = ""

    def shell(self, *, csh: bool = False) -> list[str]:
        """The environment as shell lines (``export``/``unset``, or csh's ``setenv``/``unsetenv``)."""
        out: list[str] = []
        for name, value in self.env:
            if value is None:
                out.append(f"unsetenv {name}" if csh else f"unset {name}")
            else:
                out.append(
                    f"setenv {name} {shlex.quote(value)}" if csh else f"export {name}={shlex.quote(value)}"
                )
        return out


def pem(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def pem_files(creds: Credentials) -> tuple[ConfigFile, ...]:
    """``ca.pem``, ``cert.pem``, ``key.pem`` (key 0600), as the Magnum clients write them."""
    return (
        ConfigFile("ca.pem", pem(creds.ca_pem)),
        ConfigFile("cert.pem", pem(creds.cert_pem)),
        ConfigFile("key.pem", pem(creds.key_pem), 0o600),
    )


def docker_config(request: ClientConfigRequest) -> NativeConfig:
    """The Docker CLI's: ``DOCKER_HOST``, and with TLS ``DOCKER_CERT_PATH`` + ``DOCKER_TLS_VERIFY``."""
    env: list[tuple[str, str | None]] = [("DOCKER_HOST", request.api_address)]
    if request.tls:
        env += [("DOCKER_CERT_PATH", request.directory), ("DOCKER_TLS_VERIFY", "1")]
    else:
        env += [("DOCKER_CERT_PATH", None), ("DOCKER_TLS_VERIFY", None)]
    files = pem_files(request.creds) if request.tls and request.creds is not None else ()
    return NativeConfig(files=files, env=tuple(env), try_it="docker info")
