"""Identifiers: uuid detection and the guide's random names (``pi-13-model``)."""

from __future__ import annotations

import random
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
