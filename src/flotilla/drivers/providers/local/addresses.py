"""Node addresses on a cluster network of the local provider (see ``providers.addressing``).

Docker's own IPAM would pick addresses too, but only when the container is created; a
COE needs the address earlier (for the IP in the node's certificate), so the provider
promises one (:meth:`AddressBook.reserve`) and creates the container with it as a static
address. Promises live in this process; between processes a collision makes Docker
refuse the second container ("Address already in use"), and the retried step picks again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from flotilla.drivers.providers import addressing
from flotilla.errors import NotFound

from .containers import LABEL_NODE
from .engine_api import EngineApi


def _address_on(container: Mapping[str, Any], network: str) -> str | None:
    net = ((container.get("NetworkSettings") or {}).get("Networks") or {}).get(network) or {}
    address = (net.get("IPAMConfig") or {}).get("IPv4Address") or net.get("IPAddress")
    return str(address) if address else None


class AddressBook:
    """Thread-safe promises of addresses to nodes not created yet."""

    def __init__(self, api: Callable[[], EngineApi]) -> None:
        self._api_of = api
        self._lock = threading.Lock()
        self._promised: dict[tuple[str, str], str] = {}

    @property
    def _api(self) -> EngineApi:
        return self._api_of()

    def _used(self, network: str, net: Mapping[str, Any]) -> set[str]:
        """Addresses of running endpoints, of stopped nodes (their static address), and promised."""
        used = {
            str(c.get("IPv4Address", "")).split("/", 1)[0] for c in (net.get("Containers") or {}).values()
        }
        rows = self._api.get("/containers/json", all=1, filters=json.dumps({"label": [LABEL_NODE]})) or []
        used |= {a for a in (_address_on(c, network) for c in rows) if a}
        return used | {a for (n, _), a in self._promised.items() if n == network}

    def reserve(self, network: str, name: str, role: str) -> str:
        """The address of node ``name`` on ``network``: its own if it exists, else a promise."""
        with self._lock:
            container = self._api.inspect("container", name)
            if container is not None:
                existing = _address_on(container, network)
                if existing:
                    return existing
            if (network, name) in self._promised:
                return self._promised[(network, name)]
            net = self._api.inspect("network", network)
            if net is None:
                raise NotFound(f"node {name}: network {network!r} does not exist in the Docker Engine")
            configs = [
                c
                for c in ((net.get("IPAM") or {}).get("Config") or [])
                if ":" not in str(c.get("Subnet", ""))
            ]
            if not configs:
                raise NotFound(f"node {name}: network {network!r} has no IPv4 subnet")
            subnet = str(configs[0]["Subnet"])
            gateway = str(configs[0].get("Gateway") or "")
            address = addressing.pick(subnet, gateway, self._used(network, net), role)
            self._promised[(network, name)] = address
            return address

    def claim(self, network: str, name: str, address: str) -> None:
        """Record a caller's explicit address for ``name`` so no automatic pick hands it out."""
        with self._lock:
            self._promised[(network, name)] = address

    def release(self, name: str) -> None:
        """Forget promises to ``name`` (the node exists now, or was deleted)."""
        with self._lock:
            for key in [k for k in self._promised if k[1] == name]:
                del self._promised[key]

    def forget_network(self, network: str) -> None:
        with self._lock:
            for key in [k for k in self._promised if k[0] == network]:
                del self._promised[key]
