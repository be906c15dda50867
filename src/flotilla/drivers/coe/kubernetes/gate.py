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
#: Written when the gate starts: a waiting service then leaves the asking to it.
RUNNING = "api-gate-running"


def path(name: str) -> str:
    return f"${{GATE_DIR:-{GATE_DIR}}}/{name}"


def readyz_code(server: str, ca: str) -> str:
    """The HTTP status of ``server``'s /readyz, ``000`` when it does not answer."""
    return f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 --cacert {ca} {server}/readyz"


#: The gate's polls (curl's ``--rate``), its pause should its curl end, and the seconds
#: between a waiting service's looks at its gate file.
POLL_RATE = "5/s"
POLL_CONNECT = "0.1"
POLL_FILE = "0.25"


def api_gate(server: str, ca: str) -> bytes:
    """The gate service: poll ``server``'s /readyz five times a second, write the files,
    then sleep. One curl makes every poll (``--rate``, its status lines read through a
    FIFO), over one kept-alive connection once the API server answers: a curl process and
    a TLS handshake per poll cost ~20 ms of CPU each, a few CPU-s per node over a create."""
    fifo = path("api-gate.fifo")
    return (
        f'mkdir -p "${{GATE_DIR:-{GATE_DIR}}}" && : > "{path(RUNNING)}"\n'
        "while :; do\n"
        f'    rm -f "{fifo}"; mkfifo "{fifo}"\n'
        f"    curl -s -o /dev/null -w '%{{stderr}}%{{http_code}}\\n' --max-time 2 --rate {POLL_RATE} \\\n"
        f'        --cacert {ca} "{server}/readyz?poll=[1-100000]" 2>"{fifo}" &\n'
        "    pid=$! ready=\n"
        "    while read -r code; do\n"
        f'        [ "$code" != 000 ] && [ ! -f "{path(API_SERVING)}" ] && : > "{path(API_SERVING)}"\n'
        '        [ "$code" = 200 ] && ready=1 && break\n'
        f'    done < "{fifo}"\n'
        '    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null\n'
        '    [ -n "$ready" ] && break\n'
        f"    sleep {POLL_CONNECT}\n"
        "done\n"
        f'rm -f "{fifo}"; : > "{path(API_READY)}"\n'
        "exec sleep infinity\n"
    ).encode()


def wait_for(name: str, server: str, ca: str) -> bytes:
    """Shell that waits for the gate's file ``name``. Where no gate runs (a node booted
    before the gate existed whose services a CA rotation restarts with the new snippets) it
    asks ``server`` itself every 2 s, so the service starts there too. Where one runs it
    does not: five such waiters on a master asking every 2 s cost ~1.5 CPU-s per master
    over an HA create (a TLS handshake is ~20 ms of CPU in a node), on a CPU-bound host."""
    test = "= 200" if name == API_READY else "!= 000"
    return (
        f'n=0; until [ -f "{path(name)}" ]; do\n'
        f'    n=$((n + 1)); [ $((n % 8)) = 0 ] && [ ! -f "{path(RUNNING)}" ] &&\n'
        f'        [ "$({readyz_code(server, ca)})" {test} ] && break\n'
        f"    sleep {POLL_FILE}\n"
        "done\n"
    ).encode()
