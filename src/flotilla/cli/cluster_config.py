"""``bay-config`` / ``cluster-config``: write client credentials, print shell exports.

Like python-magnumclient: read the cluster and its template; when TLS is on, make a
key and CSR (``CN=admin, O=system:masters``), fetch the cluster CA and get the CSR
signed through ``POST /v1/certificates``. What to write and export is the COE
driver's (``client_config``: docker COEs get ``ca.pem``/``cert.pem``/``key.pem`` and
``DOCKER_*``; Kubernetes ``DIR/config``, a kubeconfig with the certificates inlined,
and ``KUBECONFIG``). Only the export lines go to stdout, so
``eval $(flotilla cluster-config NAME --dir D)`` works. ``--merge`` merges a
kubeconfig into ``~/.kube/config`` instead (as kind and k3d do).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from flotilla.cli.output import api_command, connect, note
from flotilla.drivers.coe.native import ClientConfigRequest, ConfigFile, Credentials, NativeConfig, pem_files

READY = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "ROLLBACK_COMPLETE")


def _cli_error(text: str) -> Exception:
    from flotilla.cli.main import CliError

    return CliError(text)


def _csh() -> bool:
    return "csh" in os.environ.get("SHELL", "")


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def render(coe: str, request: ClientConfigRequest) -> NativeConfig:
    """The one place the COE picks the renderer: the installed driver serving ``coe``."""
    from flotilla.drivers.registry import installed_coe_driver

    driver = installed_coe_driver(coe)
    if driver is None:
        return NativeConfig(note=f"no client configuration for COE {coe}; API address: {request.api_address}")
    return driver.client_config(request)


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
        request = ClientConfigRequest(name, str(address), str(cfg_dir), use_tls)
        preview = render(coe, request)
        if args.kubeconfig and not args.merge:
            raise _cli_error("--kubeconfig names the file --merge writes; add --merge.")
        if args.merge and preview.merge is None and not preview.note:
            raise _cli_error(
                f"--merge: {noun} {name} (COE {coe}) has no kubeconfig to merge; leave --merge out."
            )
        creds: Credentials | None = None
        if use_tls:
            csr, key = generate_csr()
            ca = client.get_ca(str(cluster["uuid"]))["pem"]
            cert = client.sign_csr(str(cluster["uuid"]), csr)["pem"]
            creds = Credentials(str(ca), str(cert), key)
    config = render(coe, ClientConfigRequest(name, str(address), str(cfg_dir), use_tls, creds))
    if config.note:
        note(config.note)
        return 0
    if args.merge and config.merge is not None:
        target = Path(os.path.expanduser(args.kubeconfig)) if args.kubeconfig else config.merge.default_target
        try:
            existing: str | None = target.read_text()
        except FileNotFoundError:
            existing = None
        text = config.merge.apply(existing)
        target.parent.mkdir(parents=True, exist_ok=True)
        _write(target, text, 0o600)
        note(f"merged {config.merge.what} into {target} and made it the current context")
        return 0
    files = list(config.files)
    if args.output_certs and creds is not None:
        files += [f for f in pem_files(creds) if f.name not in {g.name for g in files}]
    _write_files(cfg_dir, files, force=args.force)
    for line in config.shell(csh=_csh()):
        print(line)
    return 0


def _write_files(cfg_dir: Path, files: list[ConfigFile], *, force: bool) -> None:
    for f in files:
        if (cfg_dir / f.name).exists() and not force:
            raise _cli_error(f"File {cfg_dir / f.name} exists, aborting (use --force to overwrite).")
    if not files:
        return
    cfg_dir.mkdir(parents=True, exist_ok=True)
    for f in files:
        _write(cfg_dir / f.name, f.text, f.mode)
    note(f"wrote {', '.join(f.name for f in files)} to {cfg_dir}")


def register_config(sub: Any, command: str, view: str) -> None:
    noun = "bay" if view == "bays" else "cluster"
    p = sub.add_parser(
        command,
        help=f"Configure docker/kubectl to reach a {noun} (eval the output).",
        description=(
            f"Write the credentials for a {noun} and print shell exports: "
            f"eval $(flotilla {command} NAME --dir DIR). Docker COEs get DIR/ca.pem, cert.pem and key.pem "
            "(when TLS is on) and DOCKER_HOST, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY; Kubernetes gets "
            "DIR/config (certificates embedded) and KUBECONFIG, or with --merge a context in ~/.kube/config. "
            "Only the exports go to stdout."
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
    p.add_argument(
        "--merge",
        action="store_true",
        help=(
            "Kubernetes: merge the cluster into your kubeconfig (the first file in $KUBECONFIG, else "
            "~/.kube/config, or --kubeconfig) as context flotilla-NAME and make it current, instead of "
            "writing DIR/config; prints no exports."
        ),
    )
    p.add_argument("--kubeconfig", metavar="<file>", help="With --merge: the kubeconfig to merge into.")
    p.set_defaults(func=cmd_config, view=view)
