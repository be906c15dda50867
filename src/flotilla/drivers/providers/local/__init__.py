"""The local provider: cluster nodes as privileged containers on one Docker Engine.

``LocalProvider.connect(docker_host, data_dir)`` starts (or reuses) the engine;
``images`` builds node images without a registry; ``leaks`` lists leftovers.
"""

from __future__ import annotations

from .engine import Engine, EngineError
from .provider import LocalProvider
from .sweep import leaks

__all__ = ["Engine", "EngineError", "LocalProvider", "leaks"]
