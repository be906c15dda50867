"""How providers that own their networks choose node addresses (local and fake share it).

A node's address is the provider's choice, never derived from the node's name: the
lowest free host address of the cluster network from ``.10`` up, skipping the gateway
and every address in use or reserved. Two roles have well-known addresses while free,
because users rely on them: the load balancer ``.5`` and the registry ``.6`` (the
README's ``172.29.1.6:5000``). ``.2``-``.9`` are never handed to masters or workers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from flotilla.errors import FlotillaError

#: Host offsets kept for roles users address directly.
WELL_KNOWN = {"lb": 5, "registry": 6}
#: The first host offset given to masters and workers.
FIRST_NODE_HOST = 10


def pick(subnet: str, gateway: str, used: Iterable[str], role: str) -> str:
    """The address a new node of ``role`` gets in ``subnet``.

    Raises ``FlotillaError`` when the subnet has no free address left.
    """
    net = ipaddress.IPv4Network(subnet, strict=False)
    taken = {str(a).split("/", 1)[0] for a in used if a} | {gateway}
    offset = WELL_KNOWN.get(role)
    if offset is not None and offset < net.num_addresses - 1:
        wanted = str(net.network_address + offset)
        if wanted not in taken:
            return wanted
    for host in range(FIRST_NODE_HOST, net.num_addresses - 1):  # the last one is the broadcast
        candidate = str(net.network_address + host)
        if candidate not in taken:
            return candidate
    raise FlotillaError(f"network {subnet} has no free address left for a {role} node")
