"""Find providers and COE drivers through entry points; only the enabled ones load.

``flotilla.providers`` and ``flotilla.coe_drivers`` are the groups; built-ins are
declared in Flotilla's own pyproject, out-of-tree drivers are separate packages.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from flotilla.drivers.base import CoeDriver, Provider
from flotilla.errors import Invalid

log = logging.getLogger(__name__)


def _load(group: str, names: Iterable[str]) -> dict[str, Any]:
    wanted = list(names)
    found = {ep.name: ep for ep in entry_points(group=group)}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise Invalid(
            f"Unknown {group} {', '.join(missing)}; installed: {', '.join(sorted(found)) or 'none'}."
        )
    return {n: found[n].load() for n in wanted}


class CoeRegistry:
    """The enabled COE drivers, by the ``coe`` values they serve."""

    def __init__(self, drivers: Iterable[CoeDriver]) -> None:
        self._by_coe: dict[str, CoeDriver] = {}
        for d in drivers:
            if not isinstance(d, CoeDriver):
                raise Invalid(f"{d!r} does not implement the CoeDriver protocol")
            for coe in d.coes:
                self._by_coe[coe] = d

    @classmethod
    def from_names(cls, names: Iterable[str]) -> CoeRegistry:
        classes = _load("flotilla.coe_drivers", names)
        return cls(factory() for factory in classes.values())

    def drivers(self) -> list[CoeDriver]:
        """Each enabled driver once, by name."""
        return sorted({id(d): d for d in self._by_coe.values()}.values(), key=lambda d: d.name)

    def coes(self) -> list[str]:
        return sorted(self._by_coe)

    def get(self, coe: str) -> CoeDriver | None:
        return self._by_coe.get(coe)

    def require(self, coe: str, distro: str | None, server_type: str = "vm") -> CoeDriver:
        """The driver for ``coe``; raises Invalid in Magnum's words when none is enabled."""
        driver = self._by_coe.get(coe)
        if driver is None:
            raise Invalid(
                f"Cluster type ({server_type}, {distro or 'Unset'}, {coe}) not supported. "
                f"Enabled COEs here: {', '.join(self.coes()) or 'none'}."
            )
        return driver


def installed_coe_driver(coe: str) -> CoeDriver | None:
    """The installed (not necessarily enabled) driver serving ``coe``, for client-side use
    such as rendering a native-client configuration; None when no installed driver serves it."""
    return next((d for d in installed_coe_drivers() if coe in d.coes), None)


@functools.cache
def installed_coe_drivers() -> tuple[CoeDriver, ...]:
    """Every installed COE driver, enabled or not, loaded once per process (entry points
    change only on reinstall): what a COE accepts in a template and how its clusters are
    described hold whether or not this service runs its clusters. A driver that fails to
    load is left out (logged), as in :func:`installed_coe_driver`."""
    out: list[CoeDriver] = []
    for ep in sorted(entry_points(group="flotilla.coe_drivers"), key=lambda e: e.name):
        try:
            driver = ep.load()()
        except Exception:
            log.warning("COE driver %s failed to load", ep.name, exc_info=True)
            continue
        if isinstance(driver, CoeDriver):
            out.append(driver)
    return tuple(out)


def node_image_extras() -> dict[str, EntryPoint]:
    """The ``flotilla.node_image_extras`` entry points by name (not loaded: listing them
    costs no driver import; ``.load()`` gives a :data:`~flotilla.drivers.base.NodeImageExtras`)."""
    return {ep.name: ep for ep in entry_points(group="flotilla.node_image_extras")}


def load_provider_factories(names: Iterable[str]) -> dict[str, Callable[..., Provider]]:
    """Provider classes by name (constructed by the conductor with their settings)."""
    return _load("flotilla.providers", names)


def unmet_requirements(drivers: Iterable[CoeDriver], provider: Provider) -> list[str]:
    """One sentence per driver whose ``requires`` is not within the provider's capabilities."""
    caps = provider.capabilities()
    out = []
    for d in drivers:
        missing = sorted(d.requires - caps)
        if missing:
            out.append(
                f"COE driver {d.name} requires {', '.join(missing)}, which provider {provider.name} does not "
                f"offer (it offers {', '.join(sorted(caps)) or 'nothing'}); disable the driver or use another provider"
            )
    return out
