"""Small helpers shared by the v1 views: timestamps, links, next links."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flotilla.services.pagination import Page


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with a ``+00:00`` offset, or None."""
    return value.isoformat() if value is not None else None


def links(base: str, collection: str, uuid: str) -> list[dict[str, str]]:
    return [
        {"href": f"{base}/v1/{collection}/{uuid}", "rel": "self"},
        {"href": f"{base}/{collection}/{uuid}", "rel": "bookmark"},
    ]


def next_link(base: str, path: str, page: Page[Any], marker: str) -> str:
    query = urlencode(
        {"sort_key": page.sort_key, "sort_dir": page.sort_dir, "limit": page.limit, "marker": marker}
    )
    return f"{base}{path}?{query}"
