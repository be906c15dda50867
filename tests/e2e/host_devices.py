"""The host's disk, for tests that check nodes cannot reach it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def host_disk() -> tuple[str, int, int]:
    """(device path, major, minor) of the block device holding the host's root fs (or,
    when / is not on one, the first disk in /sys/block)."""
    dev = os.stat("/").st_dev
    candidates = [f"{os.major(dev)}:{os.minor(dev)}"] if os.major(dev) else []
    for entry in sorted(Path("/sys/block").iterdir()):
        if not entry.name.startswith(("loop", "ram", "zram")):
            candidates.append((entry / "dev").read_text().strip())
    for majmin in candidates:
        uevent = Path(f"/sys/dev/block/{majmin}/uevent")
        if uevent.exists():
            fields = dict(line.split("=", 1) for line in uevent.read_text().splitlines() if "=" in line)
            major, minor = (int(x) for x in majmin.split(":"))
            return f"/dev/{fields['DEVNAME']}", major, minor
    pytest.skip("this host has no block device to protect")
