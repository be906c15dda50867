"""One step's work over several nodes at once, with progress (shared by COE drivers)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from flotilla.drivers.base import StepContext


def run_parallel(items: Sequence[str], work: Callable[[str], object], ctx: StepContext, what: str) -> None:
    """Run ``work`` for every item in parallel; raise one error naming every failed item."""
    if not items:
        return
    done = 0
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        futures = {pool.submit(work, item): item for item in items}
        for fut, item in futures.items():
            try:
                fut.result()
                done += 1
                ctx.progress(f"{what} ({done} of {len(items)})")
            except Exception as exc:
                errors.append(f"{item}: {exc}")
    if errors:
        raise RuntimeError("; ".join(errors))
