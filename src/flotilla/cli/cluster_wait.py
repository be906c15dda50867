"""``--wait``: poll a cluster every 0.5 s until its operation ends, showing the status
and ``status_reason`` (the step, "3/7 joining workers (2 of 5)") on stderr."""

from __future__ import annotations

import sys
import time
from typing import Any

from flotilla.cli.output import note
from flotilla.client import ApiError, Client, ClusterView

POLL_INTERVAL = 0.5
#: After this long without any sign of progress, a *_COMPLETE status that was already
#: there before the request counts as the result (a no-op update).
SETTLE_SECONDS = 5.0


class Progress:
    """One status line on stderr: rewritten in place on a TTY, else one line per change."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last: tuple[str, str] | None = None
        self.width = 0

    def update(self, name: str, status: str, reason: str | None, elapsed: float) -> None:
        text = f"{name}: {status}" + (f" - {reason}" if reason else "") + f" ({elapsed:.0f}s)"
        if self.tty:
            pad = max(0, self.width - len(text))
            sys.stderr.write("\r" + text + " " * pad)
            sys.stderr.flush()
            self.width = len(text)
        elif self.last != (status, reason or ""):
            print(text, file=sys.stderr, flush=True)
        self.last = (status, reason or "")

    def done(self) -> None:
        if self.tty and self.width:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.width = 0


def wait_for(
    client: Client,
    ident: str,
    view: ClusterView,
    action: str,
    *,
    before: dict[str, Any] | None = None,
) -> int:
    """Poll until ``action`` (create, update, delete) ends; return the exit code."""
    progress = Progress()
    started = time.monotonic()
    seen_progress = False
    name = ident
    try:
        while True:
            elapsed = time.monotonic() - started
            try:
                cluster = client.get_cluster(ident, view)
            except ApiError as exc:
                if exc.status == 404 and action == "delete":
                    progress.done()
                    note(f"{name}: deleted ({elapsed:.0f}s)")
                    return 0
                if exc.status == 404 and action == "create" and elapsed < SETTLE_SECONDS:
                    time.sleep(POLL_INTERVAL)
                    continue
                raise
            name = str(cluster.get("name") or ident)
            status = str(cluster.get("status") or "UNKNOWN")
            reason = cluster.get("status_reason")
            progress.update(name, status, str(reason) if reason else None, elapsed)
            if status.endswith("_IN_PROGRESS"):
                seen_progress = True
            elif status.endswith("_FAILED"):
                stale = before is not None and before.get("status") == status and not seen_progress
                if stale and elapsed < SETTLE_SECONDS:
                    time.sleep(POLL_INTERVAL)
                    continue
                progress.done()
                faults = cluster.get("faults") or cluster.get("bay_faults")
                detail = f"; faults: {faults}" if faults else ""
                note(f"ERROR: {name} is {status}: {reason or 'no reason given'}{detail}")
                return 1
            elif status.endswith("_COMPLETE") and action != "delete":
                changed = before is None or cluster.get("updated_at") != before.get("updated_at")
                if seen_progress or changed or elapsed >= SETTLE_SECONDS:
                    progress.done()
                    if status.startswith("ROLLBACK"):
                        note(f"ERROR: {name} was rolled back: {reason or 'the update failed'}")
                        return 1
                    return 0
            time.sleep(POLL_INTERVAL)
    finally:
        progress.done()
