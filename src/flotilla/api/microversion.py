"""``OpenStack-API-Version: container-infra X.Y`` negotiation (reference §2.3)."""

from __future__ import annotations

from dataclasses import dataclass

SERVICE = "container-infra"
MIN_VERSION = (1, 1)
MAX_VERSION = (1, 10)
HEADER = "OpenStack-API-Version"


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, minor: int) -> bool:
        return (self.major, self.minor) >= (1, minor)


MIN = Version(*MIN_VERSION)
MAX = Version(*MAX_VERSION)


class Malformed(Exception):
    """The header cannot be parsed: 406 with an empty title, no version headers."""


class Unsupported(Exception):
    """Parsed, but outside [MIN, MAX]: 406 with Magnum's microversion body."""


def negotiate(header: str | None) -> Version:
    """The version to serve for a request header value.

    Absent → the minimum (1.1); ``latest`` → the maximum.
    Raises :class:`Malformed` or :class:`Unsupported`.
    """
    if header is None or not header.strip():
        return MIN
    parts = header.split()
    if len(parts) != 2 or parts[0] != SERVICE:
        raise Malformed(header)
    value = parts[1]
    if value.lower() == "latest":
        return MAX
    major_s, dot, minor_s = value.partition(".")
    if not dot or not major_s.isdigit() or not minor_s.isdigit():
        raise Malformed(header)
    version = Version(int(major_s), int(minor_s))
    if version.major != 1 or not MIN <= version <= MAX:
        raise Unsupported(str(version))
    return version


def response_headers(version: Version) -> dict[str, str]:
    return {
        "OpenStack-API-Minimum-Version": f"{SERVICE} {MIN}",
        "OpenStack-API-Maximum-Version": f"{SERVICE} {MAX}",
        HEADER: f"{SERVICE} {version}",
        "Vary": HEADER,
    }


def unsupported_body() -> dict[str, object]:
    return {
        "errors": [
            {
                "code": "magnum.microversion-unsupported",
                "title": "Requested microversion is unsupported",
                "min_version": str(MIN),
                "max_version": str(MAX),
                "links": [
                    {"rel": "help", "href": "http://docs.openstack.org/api-guide/compute/microversions.html"}
                ],
            }
        ]
    }
