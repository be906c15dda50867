"""The load generators of ``bench/api.py``: Debian's ``wrk`` (preferred) or a Python fallback.

``wrk`` is a C client with one event loop per thread; one thread is enough here and keeps
the client's CPU small next to the server's on a 2-core machine. Each point runs ``wrk``
with a generated Lua script that sets the method, headers and body (creates get a fresh
name per request) and prints one JSON line of totals and latency percentiles at the end.

The fallback (``--python-client`` or no ``wrk`` on PATH) drives the same points from
threads with ``http.client``; it costs the server CPU on a small machine, and the bench
says when it is used.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

WRK = shutil.which("wrk")


@dataclass(frozen=True)
class Point:
    """One request kind: ``paths`` are used in turn; ``body`` has ``@N@`` replaced per request."""

    name: str
    method: str
    paths: tuple[str, ...]
    token: str
    expect: int
    body: str | None = None


@dataclass
class Outcome:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    client_cpu_s: float = 0.0
    detail: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _lua_str(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid Lua string literal for this input


def lua_script(point: Point, close: bool) -> str:
    headers = {
        "X-Auth-Token": point.token,
        "OpenStack-API-Version": "container-infra latest",
        "Accept": "application/json",
    }
    if point.body is not None:
        headers["Content-Type"] = "application/json"
    if close:
        headers["Connection"] = "close"
    hdr = ", ".join(f"[{_lua_str(k)}] = {_lua_str(v)}" for k, v in headers.items())
    paths = ", ".join(_lua_str(p) for p in point.paths)
    body = _lua_str(point.body) if point.body is not None else "nil"
    return f"""
local paths = {{{paths}}}
local headers = {{{hdr}}}
local body = {body}
local method = {_lua_str(point.method)}
local n = 0
local prepared = {{}}

init = function(args)
  -- here, not at load time: wrk.format adds the Host header only once wrk.host is known
  for i, p in ipairs(paths) do prepared[i] = wrk.format(method, p, headers, body) end
end

request = function()
  n = n + 1
  if body ~= nil and string.find(body, "@N@", 1, true) then
    local b = string.gsub(body, "@N@", tostring(n) .. "-" .. tostring(math.random(1, 1000000000)))
    return wrk.format(method, paths[(n % #paths) + 1], headers, b)
  end
  return prepared[(n % #paths) + 1]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50": %d, "p99": %d, "max": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def run_wrk(url: str, point: Point, *, connections: int, seconds: float, close: bool) -> Outcome:
    assert WRK is not None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua_script(point, close))
        script = f.name
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(
            [WRK, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", script, url],
            capture_output=True, text=True, check=False, timeout=seconds + 60,
        )  # fmt: skip
    finally:
        os.unlink(script)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result (exit {proc.returncode}): {proc.stdout}\n{proc.stderr}")
    data = json.loads(line.removeprefix("WRKJSON "))
    detail = {k: int(data[k]) for k in ("connect", "read", "write", "status", "timeout") if data[k]}
    return Outcome(
        requests=int(data["requests"]),
        errors=sum(detail.values()),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50"] / 1000,
        p99_ms=data["p99"] / 1000,
        max_ms=data["max"] / 1000,
        client_cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        detail=detail,
    )


def run_python(url: str, point: Point, *, connections: int, seconds: float, close: bool) -> Outcome:
    """The fallback: ``connections`` threads, one ``http.client`` connection each."""
    host_port = url.split("://", 1)[1].rstrip("/")
    host, port = host_port.rsplit(":", 1)
    headers = {
        "X-Auth-Token": point.token,
        "OpenStack-API-Version": "container-infra latest",
        "Accept": "application/json",
    }
    if point.body is not None:
        headers["Content-Type"] = "application/json"
    if close:
        headers["Connection"] = "close"
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    cpu0 = time.process_time()

    def worker(k: int) -> None:
        conn: http.client.HTTPConnection | None = None
        n = k * 1_000_000
        while time.monotonic() < stop_at:
            n += 1
            path = point.paths[n % len(point.paths)]
            body = point.body.replace("@N@", str(n)) if point.body else None
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, int(port), timeout=10)
                conn.request(point.method, path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                kind = None if r.status == point.expect else "status"
                if close or r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                kind = "read"
                if conn is not None:
                    conn.close()
                conn = None
            dt = time.perf_counter() - t0
            with lock:
                if kind is None:
                    latencies.append(dt)
                else:
                    errors[kind] = errors.get(kind, 0) + 1
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(connections)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000

    return Outcome(
        requests=len(ordered) + sum(errors.values()),
        errors=sum(errors.values()),
        seconds=elapsed,
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        max_ms=ordered[-1] * 1000 if ordered else float("nan"),
        client_cpu_s=time.process_time() - cpu0,
        detail=errors,
    )


def process_cpu_seconds(root_pid: int) -> float:
    """utime + stime of ``root_pid`` and every live descendant (API workers), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        pid, ppid = int(entry.name), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        stats[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total
