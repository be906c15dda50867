"""A node's API gate: one poller of the API server per node, whose files tell the node's
other services how far the API server is, so they wait with a shell test instead of each
polling the API (a TLS handshake ten times a second per service: on a 2-core host the
fifteen such loops of a 3+2 cluster cost a good part of a core while the API servers
start, the time every node waits for).

* ``api-serving``: the API server answers HTTP at all (any status, even the 500 of a
  /readyz whose post-start hooks still run): the kubelet may start (it registers through
  the Node authorizer, and would otherwise retry with a growing delay);
* ``api-ready``: /readyz is ok: the RBAC roles exist (kube-proxy, flanneld, and on a master
  the controller-manager, which exits without them, and the scheduler). On a 3-master
  cluster this comes ~25 s after ``api-serving``: the rbac/bootstrap-roles post-start hook is
  the last check to pass (anonymous /readyz answers 403 until the public-info role binding
  exists, then 500), its few hundred sequential requests each an etcd round on starved cores.

The files live on the node's tmpfs (a restarted node waits again); ``$GATE_DIR``
overrides the directory (tests).
"""

from __future__ import annotations

GATE_DIR = "/run/flotilla"
API_SERVING = "api-serving"
API_READY = "api-ready"


def path(name: str) -> str:
    return f"${{GATE_DIR:-{GATE_DIR}}}/{name}"


def readyz_code(server: str, ca: str) -> str:
    """The HTTP status of ``server``'s /readyz, ``000`` when it does not answer."""
    return f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 --cacert {ca} {server}/readyz"


#: Seconds between the gate's polls while the port refuses connections (cheap: no TLS) and
#: once the API server answers (a TLS handshake each, on a host whose cores the starting
#: API servers and etcd saturate), and between a waiting service's looks at its gate file.
POLL_CONNECT = "0.1"
POLL_TLS = "0.4"
POLL_FILE = "0.25"


def api_gate(server: str, ca: str) -> bytes:
    """The gate service: poll ``server``'s /readyz (every 0.1 s until it answers, then every
    0.4 s), write the files, then sleep."""
    return (
        f'mkdir -p "${{GATE_DIR:-{GATE_DIR}}}"\n'
        f"pause={POLL_CONNECT}\n"
        "while :; do\n"
        f"    code=$({readyz_code(server, ca)})\n"
        f'    [ "$code" != 000 ] && : > "{path(API_SERVING)}" && pause={POLL_TLS}\n'
        '    [ "$code" = 200 ] && break\n'
        '    sleep "$pause"\n'
        "done\n"
        f': > "{path(API_READY)}"\n'
        "exec sleep infinity\n"
    ).encode()


def wait_for(name: str, server: str, ca: str) -> bytes:
    """Shell that waits for the gate's file ``name``. Every 2 s it also asks ``server``
    itself, so the service starts even where no gate runs (a node booted before the gate
    existed whose services a CA rotation restarts with the new snippets)."""
    test = "= 200" if name == API_READY else "!= 000"
    return (
        f'n=0; until [ -f "{path(name)}" ]; do\n'
        f'    n=$((n + 1)); [ $((n % 8)) = 0 ] && [ "$({readyz_code(server, ca)})" {test} ] && break\n'
        f"    sleep {POLL_FILE}\n"
        "done\n"
    ).encode()
