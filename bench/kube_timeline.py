"""What happened when inside each node of a Kubernetes cluster just created, relative to
the create request, read from the nodes' files and logs (host and nodes share one clock),
and the CPU each node has used so far (its cgroup, which counts exited processes too:
wait loops, restarted daemons) next to its live processes' own CPU time.

Used by ``bench/lifecycle.py`` right after CREATE_COMPLETE; never asserts anything.
"""

from __future__ import annotations

import datetime as dt
import re

from flotilla.drivers.providers.local import Engine, LocalProvider

#: (label, log file, pattern): the time of the first line matching ``pattern`` (None: the first line).
EVENTS: tuple[tuple[str, str, str | None], ...] = (
    ("etcd", "etcd", None),
    ("apiserver start", "kube-apiserver", None),
    ("apiserver serving", "kube-apiserver", "Serving securely"),
    ("cm start", "kube-controller-manager", None),
    ("cm leader", "kube-controller-manager", "successfully acquired lease"),
    ("sched start", "kube-scheduler", None),
    ("kubelet start", "kubelet", None),
    ("kubelet registered", "kubelet", "Successfully registered node"),
    ("proxy start", "kube-proxy", None),
    ("flanneld start", "flanneld", None),
    ("flannel subnet", "flanneld", "Wrote subnet file"),
)
#: (label, file): its modification time.
FILES: tuple[tuple[str, str], ...] = (
    ("bootstrap marker", "/var/lib/flotilla/bootstrap.env"),
    ("images imported", "/run/flotilla/images"),
    ("cni config", "/etc/cni/net.d/10-flannel.conflist"),
)

_SCRIPT = r"""
L=/var/log/flotilla
for f in {files}; do [ -e "$f" ] && echo "file $f $(stat -c %.9Y "$f")"; done
for f in $L/*.log; do
    [ -f "$f" ] || continue
    n=$(basename "$f" .log)
    echo "first $n $(grep -m1 -E '^[IWEF][0-9]{{4}} |"ts"' "$f")"
    echo "restarts $n $(grep -c 'flotilla-node: .* exited with status' "$f")"
done
{greps}
for c in /sys/fs/cgroup/cpuacct/cpuacct.usage /sys/fs/cgroup/cpu,cpuacct/cpuacct.usage; do
    [ -f "$c" ] && {{ echo "cgroupcpu $(cat "$c")"; break; }}
done
ps -eo times=,comm= | sed 's/^/proc /'
"""

_KLOG = re.compile(r"^[IWEF](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2}\.\d+)")
_TS = re.compile(r'"ts":"([^"]+)"')


def _when(line: str, year: int) -> float | None:
    m = _KLOG.match(line)
    if m:
        mon, day, hh, mm, ss = m.groups()
        sec = float(ss)
        t = dt.datetime(year, int(mon), int(day), int(hh), int(mm), int(sec), tzinfo=dt.UTC)
        return t.timestamp() + sec % 1
    m = _TS.search(line)
    if m:
        return dt.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
    return None


def _script() -> str:
    greps = "\n".join(
        f"echo \"match {i} $(grep -m1 '{pat}' $L/{log}.log 2>/dev/null)\""
        for i, (_, log, pat) in enumerate(EVENTS)
        if pat
    )
    return _SCRIPT.format(files=" ".join(f for _, f in FILES), greps=greps)


def node_timeline(engine: Engine, uuid: str, t0: float) -> str:
    """One block per node: events as seconds after ``t0`` (the create request, epoch)."""
    year = dt.datetime.fromtimestamp(t0, dt.UTC).year
    blocks = []
    total_cpu = 0.0
    for node in sorted(LocalProvider(engine).list_nodes(uuid), key=lambda n: n.name):
        r = engine.run(["exec", node.name, "sh", "-c", _script()], check=False)
        events: dict[str, float] = {}
        restarts: dict[str, int] = {}
        cpu_cg: float | None = None
        procs: dict[str, float] = {}
        firsts: dict[str, str] = {}
        for line in r.stdout.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "file":
                path, _, ts = rest.rpartition(" ")
                label = next(lbl for lbl, f in FILES if f == path)
                events[label] = float(ts)
            elif kind == "first":
                name, _, text = rest.partition(" ")
                firsts[name] = text
            elif kind == "restarts":
                name, _, count = rest.partition(" ")
                if count.strip().isdigit() and int(count) > 0:
                    restarts[name] = int(count)
            elif kind == "match":
                idx, _, text = rest.partition(" ")
                when = _when(text, year)
                if when is not None:
                    events[EVENTS[int(idx)][0]] = when
            elif kind == "cgroupcpu" and rest.strip().isdigit():
                cpu_cg = int(rest) / 1e9
            elif kind == "proc":
                times, _, comm = rest.strip().partition(" ")
                parts = [int(p) for p in re.split(r"[-:]", times) if p.isdigit()]
                secs = 0
                for p in parts:
                    secs = secs * 60 + p
                if len(parts) == 4:  # DD-HH:MM:SS
                    secs = ((parts[0] * 24 + parts[1]) * 60 + parts[2]) * 60 + parts[3]
                procs[comm] = procs.get(comm, 0.0) + secs
        for label, log, pat in EVENTS:
            if pat is None and log in firsts:
                when = _when(firsts[log], year)
                if when is not None:
                    events.setdefault(label, when)
        order = sorted(events.items(), key=lambda kv: kv[1])
        line = ", ".join(f"{label} {t - t0:.1f}" for label, t in order)
        cpu = f"cpu {cpu_cg:.1f} s" if cpu_cg is not None else "cpu ?"
        live = sum(procs.values())
        if cpu_cg is not None:
            total_cpu += cpu_cg
            cpu += f" (live processes {live:.0f} s, exited ~{max(cpu_cg - live, 0):.0f} s)"
        top = ", ".join(f"{c} {s:.0f}" for c, s in sorted(procs.items(), key=lambda x: -x[1])[:6] if s >= 1)
        rs = f"; restarts: {restarts}" if restarts else ""
        blocks.append(f"  {node.name}: {cpu}: {top}{rs}\n    {line}")
    return (
        f"timeline per node (s after the create request; cpu since node start, all nodes {total_cpu:.0f} s):\n"
        + "\n".join(blocks)
    )
