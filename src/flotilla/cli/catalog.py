"""The local catalog (``/local/v1``): images, keypairs, flavors and networks.

These stand in for Glance, Nova and Neutron when clusters run on the local provider:
a baymodel's ``--image-id``, ``--keypair-id``, ``--flavor-id`` and
``--external-network-id`` name entries listed here.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from flotilla.cli.output import api_command, connect, message, note, show, table

IMAGE_COLUMNS = ("uuid", "name", "os_distro", "source", "build_method")
KEYPAIR_COLUMNS = ("name", "fingerprint")
FLAVOR_COLUMNS = ("uuid", "name", "vcpus", "ram_mb")
NETWORK_COLUMNS = ("uuid", "name", "external")
PUBLIC_KEY_CANDIDATES = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")


def _cli_error(text: str) -> Exception:
    from flotilla.cli.main import CliError

    return CliError(text)


def _data_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "data_dir", None):
        return Path(args.data_dir).expanduser()
    if os.environ.get("FLOTILLA_DATA_DIR"):
        return Path(os.environ["FLOTILLA_DATA_DIR"]).expanduser()
    from flotilla.datadir import default_data_dir

    return default_data_dir()


# ----------------------------------------------------------------------------- images


@api_command
def cmd_image_create(args: argparse.Namespace) -> int:
    with connect(args) as client:
        image = client.create_image(args.name, args.os_distro, args.source, args.build_method, args.replace)
    show(args, image, exclude=())
    return 0


@api_command
def cmd_image_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        table(args, client.list_images(), IMAGE_COLUMNS)
    return 0


@api_command
def cmd_image_show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        show(args, client.get_image(args.image), exclude=())
    return 0


@api_command
def cmd_image_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        for ident in args.images:
            client.delete_image(ident)
            message(args, f"Request to delete image {ident} has been accepted.")
    return 0


@api_command
def cmd_image_build(args: argparse.Namespace) -> int:
    from flotilla.drivers.providers.local import images
    from flotilla.drivers.providers.local.engine import Engine
    from flotilla.settings import load_settings

    tag = args.tag or f"flotilla-node:{args.name}"
    settings = load_settings(data_dir=args.data_dir)
    with connect(args) as client:
        client.list_images()  # fail early (server down, bad token) before a long build
        engine = Engine.connect(settings.local.docker_host, settings.data_dir)
        note(f"building node image {tag} ({args.method}) on {engine.host} ...")
        if args.method == "hostroot":
            extras, labels = _coe_extras(args)
            built = images.build_hostroot_image(engine, tag, force=args.force, extras=extras, labels=labels)
        else:
            built = images.build_debootstrap_image(engine, tag, args.mirror, force=args.force)
        image = client.create_image(args.name, args.os_distro, built, args.method, replace=True)
    show(args, image, exclude=())
    return 0


def _coe_extras(args: argparse.Namespace) -> tuple[dict[str, Path], dict[str, str]]:
    """What the COE drivers add to a hostroot node image (entry points
    ``flotilla.node_image_extras``; ``--NAME auto|yes|no`` each), e.g. the Kubernetes binaries."""
    from flotilla.drivers.registry import node_image_extras

    dirs: dict[str, Path] = {}
    labels: dict[str, str] = {}
    for name, ep in sorted(node_image_extras().items()):
        choice = getattr(args, f"coe_extras_{name}", "auto")
        if choice == "no":
            continue
        found = ep.load()(choice == "yes")
        if found is not None:
            note(f"adding {found.description}")
            dirs.update(found.dirs)
            labels.update(found.labels)
    return dirs, labels


# ----------------------------------------------------------------------------- keypairs


def _default_public_key(name: str, data_dir: Path) -> tuple[str, str]:
    """``(public key text, where it came from)``: ~/.ssh, else a key pair made in DATA_DIR/keys."""
    ssh = Path.home() / ".ssh"
    candidates = [ssh / n for n in PUBLIC_KEY_CANDIDATES]
    candidates += sorted(p for p in ssh.glob("id_*.pub") if p not in candidates)
    for path in candidates:
        if path.is_file():
            return path.read_text().strip(), str(path)
    keys = data_dir / "keys"
    private, public = keys / name, keys / f"{name}.pub"
    if private.parent != keys or public.parent != keys:  # keypair_name_problem already refuses these
        raise _cli_error(f"Keypair name {name!r} would write outside {keys}.")
    if private.is_file() and public.is_file():
        return public.read_text().strip(), f"{public} (existing key pair)"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(priv)
    text = pub.decode("ascii") + f" flotilla-{name}"
    public.write_text(text + "\n")
    note(f"no ~/.ssh/id_*.pub found: generated an ed25519 key pair {private} (private) and {public}")
    return text, str(public)


@api_command
def cmd_keypair_create(args: argparse.Namespace) -> int:
    from flotilla.idents import keypair_name_problem

    problem = keypair_name_problem(args.name)
    if problem is not None:  # before any file is written: the name becomes DATA_DIR/keys/NAME
        raise _cli_error(problem)
    if args.public_key:
        path = Path(args.public_key).expanduser()
        if not path.is_file():
            raise _cli_error(f"Public key file {path} does not exist.")
        text, origin = path.read_text().strip(), str(path)
    else:
        text, origin = _default_public_key(args.name, _data_dir(args))
    with connect(args) as client:
        keypair = client.create_keypair(args.name, text)
    note(f"keypair {args.name} uses the public key from {origin}")
    show(args, keypair, exclude=())
    return 0


@api_command
def cmd_keypair_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        table(args, client.list_keypairs(), KEYPAIR_COLUMNS)
    return 0


@api_command
def cmd_keypair_show(args: argparse.Namespace) -> int:
    with connect(args) as client:
        show(args, client.get_keypair(args.name), exclude=())
    return 0


@api_command
def cmd_keypair_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        for name in args.names:
            client.delete_keypair(name)
            message(args, f"Request to delete keypair {name} has been accepted.")
    return 0


# ----------------------------------------------------------------------------- flavors, networks


@api_command
def cmd_flavor_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        table(args, client.list_flavors(), FLAVOR_COLUMNS)
    return 0


@api_command
def cmd_flavor_create(args: argparse.Namespace) -> int:
    with connect(args) as client:
        show(args, client.create_flavor(args.name, args.vcpus, args.ram), exclude=())
    return 0


@api_command
def cmd_network_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        table(args, client.list_networks(), NETWORK_COLUMNS)
    return 0


@api_command
def cmd_network_create(args: argparse.Namespace) -> int:
    with connect(args) as client:
        show(args, client.create_network(args.name, external=args.external), exclude=())
    return 0


# ----------------------------------------------------------------------------- registration


def _vcpus(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return int(value) if value.is_integer() else value


def _add_coe_extras_flags(p: argparse.ArgumentParser) -> None:
    """image-build's ``--NAME auto|yes|no``, one per ``flotilla.node_image_extras`` entry
    point (names only: no driver is imported for --help). Deferred to when image-build is
    parsed or its help printed: listing entry points reads every installed package's
    metadata, which no other command needs."""
    from flotilla.drivers.registry import node_image_extras

    for name in sorted(node_image_extras()):
        p.add_argument(
            f"--{name}",
            dest=f"coe_extras_{name}",
            choices=["auto", "yes", "no"],
            default="auto",
            help=f"Put what the {name} COE driver built on this host in the image (hostroot; e.g. the "
            "Kubernetes binaries of scripts/build-kube.sh): auto (default) when it is built.",
        )


def register(sub: Any) -> None:
    p = sub.add_parser(
        "image-create",
        help="Register a node image (admin).",
        description=(
            "Register a node image in the catalog (POST /local/v1/images) so templates can use it as "
            "--image-id. --os-distro becomes the template's cluster_distro (e.g. fedora-atomic); --source is "
            "the Docker image reference the nodes run."
        ),
    )
    p.add_argument("name", metavar="<name>", help="Image name, used as --image-id in templates.")
    p.add_argument("--os-distro", required=True, metavar="<os-distro>", help="e.g. fedora-atomic, ubuntu.")
    p.add_argument("--source", metavar="<ref>", help="Docker image reference (e.g. flotilla-node:hostroot).")
    p.add_argument("--build-method", metavar="<method>", help="How the image was made (informational).")
    p.add_argument("--replace", action="store_true", help="Re-point an existing image of that name.")
    p.set_defaults(func=cmd_image_create)

    p = sub.add_parser("image-list", help="List node images.", description="List node images.")
    p.set_defaults(func=cmd_image_list)
    p = sub.add_parser("image-show", help="Show a node image.", description="Show a node image.")
    p.add_argument("image", metavar="<image>", help="Name or UUID of the image.")
    p.set_defaults(func=cmd_image_show)
    p = sub.add_parser("image-delete", help="Delete node images (admin).", description="Delete node images.")
    p.add_argument("images", metavar="<image>", nargs="+", help="Names or UUIDs of the images.")
    p.set_defaults(func=cmd_image_delete)

    p = sub.add_parser(
        "image-build",
        help="Build a node image locally and register it (admin).",
        description=(
            "Build a node image in the local Docker Engine (the one the server uses for this data dir, or "
            "local.docker_host) and register it with --replace. hostroot (default) takes about a second and "
            "runs the host's own binaries; debootstrap builds a self-contained Debian (needs mmdebstrap)."
        ),
    )
    p.add_argument("name", metavar="<name>", help="Image name to register (e.g. fedora-atomic-latest).")
    p.add_argument("--os-distro", required=True, metavar="<os-distro>", help="e.g. fedora-atomic.")
    p.add_argument(
        "--method", choices=["hostroot", "debootstrap"], default="hostroot", help="Default hostroot."
    )
    p.add_argument("--tag", metavar="<ref>", help="Docker tag to build (default flotilla-node:<name>).")
    p.add_argument(
        "--mirror",
        metavar="<url>",
        default="http://deb.debian.org/debian",
        help="Debian mirror (debootstrap).",
    )
    p.add_argument("--force", action="store_true", help="Rebuild even if the tag exists.")
    p.defer(_add_coe_extras_flags)
    p.set_defaults(func=cmd_image_build)

    p = sub.add_parser(
        "keypair-create",
        help="Register an SSH public key.",
        description=(
            "Register an SSH public key for cluster nodes (use its name as --keypair-id). Without "
            "--public-key the first ~/.ssh/id_*.pub is used; if there is none, an ed25519 key pair is "
            "generated as DATA_DIR/keys/NAME and NAME.pub."
        ),
    )
    p.add_argument("name", metavar="<name>", help="Keypair name.")
    p.add_argument("--public-key", metavar="<file>", help="Public key file (OpenSSH format).")
    p.set_defaults(func=cmd_keypair_create)
    p = sub.add_parser("keypair-list", help="List keypairs.", description="List your project's keypairs.")
    p.set_defaults(func=cmd_keypair_list)
    p = sub.add_parser("keypair-show", help="Show a keypair.", description="Show a keypair.")
    p.add_argument("name", metavar="<name>", help="Keypair name.")
    p.set_defaults(func=cmd_keypair_show)
    p = sub.add_parser("keypair-delete", help="Delete keypairs.", description="Delete keypairs.")
    p.add_argument("names", metavar="<name>", nargs="+", help="Keypair names.")
    p.set_defaults(func=cmd_keypair_delete)

    p = sub.add_parser(
        "flavor-list", help="List flavors.", description="List the node flavors (size presets)."
    )
    p.set_defaults(func=cmd_flavor_list)
    p = sub.add_parser(
        "flavor-create",
        help="Create a flavor (admin).",
        description="Create a node flavor: CPU and memory limits for each node container.",
    )
    p.add_argument("name", metavar="<name>", help="Flavor name (e.g. m1.xlarge).")
    p.add_argument("--vcpus", required=True, type=_vcpus, metavar="<n>", help="CPUs per node (may be 0.5).")
    p.add_argument("--ram", required=True, type=int, metavar="<mb>", help="Memory per node in MB (>= 64).")
    p.set_defaults(func=cmd_flavor_create)

    p = sub.add_parser(
        "network-list", help="List networks.", description="List networks (external ones for templates)."
    )
    p.set_defaults(func=cmd_network_list)
    p = sub.add_parser(
        "network-create",
        help="Register a network (admin).",
        description=(
            "Register a network in the catalog (admin). A non-external one may then be named as a "
            "template's or cluster's --fixed-network (an existing Docker network of that name on the "
            "local provider), by every project: registering it is the decision to share it. Docker's "
            "host, none and bridge are refused."
        ),
    )
    p.add_argument("name", metavar="<name>", help="Network name (letters, digits, '_', '.', '-').")
    p.add_argument("--external", action="store_true", help="An external network (for --external-network-id).")
    p.set_defaults(func=cmd_network_create)
