"""Identifiers: uuid detection and the guide's random names (``pi-13-model``)."""

from __future__ import annotations

import random
import re
import uuid as uuidlib

GREEK = (
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda",
    "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega",
)  # fmt: skip


def is_uuid(text: str) -> bool:
    """True for a canonical or hex-only UUID string."""
    try:
        uuidlib.UUID(text)
    except ValueError:
        return False
    return len(text.replace("-", "")) == 32


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def random_name(suffix: str) -> str:
    """``<greek>-<1..24>-<suffix>``, e.g. ``pi-13-model``."""
    return f"{random.choice(GREEK)}-{random.randint(1, 24)}-{suffix}"


#: Keypair names: they name files (``DATA_DIR/keys/NAME``) and URL path segments.
KEYPAIR_NAME_MAX = 255
KEYPAIR_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


def keypair_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a keypair (a sentence for the user), or None if it can."""
    if not name or len(name) > KEYPAIR_NAME_MAX or not KEYPAIR_NAME_RE.match(name):
        return (
            f"Invalid keypair name {name[:80]!r}: use 1 to {KEYPAIR_NAME_MAX} letters, digits, '-', '_' and "
            "'.', not starting with '.'."
        )
    return None
