"""``bay-config`` / ``cluster-config``: write client credentials, print shell exports.

Like python-magnumclient: read the cluster and its template; when TLS is on, make a
key and CSR (``CN=admin, O=system:masters``), fetch the cluster CA and get the CSR
signed. Docker COEs (swarm, swarm-mode, docker) get ``ca.pem``, ``cert.pem`` and
``key.pem`` in ``--dir`` and the ``DOCKER_*`` exports; Kubernetes gets ``DIR/config``,
a kubeconfig with the certificates embedded, and ``KUBECONFIG``. Only the export lines
go to stdout, so ``eval $(flotilla cluster-config NAME --dir D)`` works.
"""

from __future__ import annotations

import argparse
import base64
import os
import shlex
from pathlib import Path
from typing import Any

import yaml

from flotilla.cli.output import api_command, connect, note

DOCKER_COES = ("swarm", "swarm-mode", "docker")
READY = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "ROLLBACK_COMPLETE")


def _cli_error(text: str) -> Exception:
    from flotilla.cli.main import CliError

    return CliError(text)


def _csh() -> bool:
    return "csh" in os.environ.get("SHELL", "")


def _export(name: str, value: str) -> str:
    return f"setenv {name} {shlex.quote(value)}" if _csh() else f"export {name}={shlex.quote(value)}"


def _unset(name: str) -> str:
    return f"unsetenv {name}" if _csh() else f"unset {name}"


def _b64(pem: str) -> str:
    return base64.b64encode(_pem(pem).encode("ascii")).decode("ascii")


def _pem(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def kubeconfig(name: str, server: str, tls: dict[str, str] | None) -> str:
    """A kubeconfig whose cluster, user and context are all named ``name``."""
    cluster: dict[str, Any] = {"server": server}
    user: dict[str, Any] = {}
    if tls is not None:
        cluster["certificate-authority-data"] = _b64(tls["ca"])
        user = {"client-certificate-data": _b64(tls["cert"]), "client-key-data": _b64(tls["key"])}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@api_command
def cmd_config(args: argparse.Namespace) -> int:
    from flotilla.certs.authority import generate_csr

    bay = args.view == "bays"
    noun = "bay" if bay else "cluster"
    cfg_dir = Path(os.path.abspath(os.path.expanduser(args.dir)))
    with connect(args) as client:
        cluster = client.get_cluster(args.cluster, args.view)
        name = str(cluster.get("name") or cluster["uuid"])
        status = cluster.get("status")
        if status not in READY:
            raise _cli_error(
                f"{noun} {name} is in status {status}: its configuration is available once it is "
                "CREATE_COMPLETE or UPDATE_COMPLETE."
            )
        if bay:
            template = client.get_template(str(cluster["baymodel_id"]), "baymodels")
        else:
            template = client.get_template(str(cluster["cluster_template_id"]), "clustertemplates")
        coe = str(template.get("coe"))
        use_tls = not template.get("tls_disabled")
        address = cluster.get("api_address")
        if not address:
            raise _cli_error(f"{noun} {name} has no API address (api_address is empty).")
        names: list[str] = []
        if coe == "kubernetes":
            names.append("config")
            if use_tls and args.output_certs:
                names += ["ca.pem", "cert.pem", "key.pem"]
        elif use_tls:
            names += ["ca.pem", "cert.pem", "key.pem"]
        for fname in names:
            if (cfg_dir / fname).exists() and not args.force:
                raise _cli_error(f"File {cfg_dir / fname} exists, aborting (use --force to overwrite).")
        tls: dict[str, str] | None = None
        if use_tls:
            csr, key = generate_csr()
            ca = client.get_ca(str(cluster["uuid"]))["pem"]
            cert = client.sign_csr(str(cluster["uuid"]), csr)["pem"]
            tls = {"ca": str(ca), "cert": str(cert), "key": key}
    cfg_dir.mkdir(parents=True, exist_ok=True)
    if tls is not None and ("key.pem" in names):
        _write(cfg_dir / "ca.pem", _pem(tls["ca"]), 0o644)
        _write(cfg_dir / "cert.pem", _pem(tls["cert"]), 0o644)
        _write(cfg_dir / "key.pem", _pem(tls["key"]), 0o600)
        note(f"wrote ca.pem, cert.pem and key.pem to {cfg_dir}")
    if coe == "kubernetes":
        path = cfg_dir / "config"
        _write(path, kubeconfig(name, str(address), tls), 0o600)
        note(f"wrote {path}")
        print(_export("KUBECONFIG", str(path)))
    elif coe in DOCKER_COES:
        print(_export("DOCKER_HOST", str(address)))
        if use_tls:
            print(_export("DOCKER_CERT_PATH", str(cfg_dir)))
            print(_export("DOCKER_TLS_VERIFY", "1"))
        else:
            print(_unset("DOCKER_CERT_PATH"))
            print(_unset("DOCKER_TLS_VERIFY"))
    else:
        note(f"no client configuration for COE {coe}; API address: {address}")
    return 0


def register_config(sub: Any, command: str, view: str) -> None:
    noun = "bay" if view == "bays" else "cluster"
    p = sub.add_parser(
        command,
        help=f"Configure docker/kubectl to reach a {noun} (eval the output).",
        description=(
            f"Write the credentials for a {noun} and print shell exports: "
            f"eval $(flotilla {command} NAME --dir DIR). Docker COEs get DIR/ca.pem, cert.pem and key.pem "
            "(when TLS is on) and DOCKER_HOST, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY; Kubernetes gets "
            "DIR/config (certificates embedded) and KUBECONFIG. Only the exports go to stdout."
        ),
    )
    p.add_argument("cluster", metavar=f"<{noun}>", help=f"ID or name of the {noun}.")
    p.add_argument(
        "--dir", metavar="<dir>", default=".", help="Directory for the files (default: the current one)."
    )
    p.add_argument("--force", action="store_true", help="Overwrite existing files.")
    p.add_argument(
        "--output-certs",
        action="store_true",
        help="Kubernetes: also write ca.pem, cert.pem and key.pem (docker COEs always get them).",
    )
    p.set_defaults(func=cmd_config, view=view)
