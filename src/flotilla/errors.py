"""A few error categories, mapped to HTTP once, in the API layer.

Messages are written for the person reading them: say what was wrong and what is
accepted. Magnum clients show the text up to the first ``.`` as the title.
"""

from __future__ import annotations


class FlotillaError(Exception):
    """Base class; ``http_status`` is used by the API layer only."""

    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(FlotillaError):
    """Bad input: the request can never succeed as sent."""

    http_status = 400


class Unauthorized(FlotillaError):
    """Missing or bad credentials."""

    http_status = 401


class Forbidden(FlotillaError):
    """The caller may not do this (policy, quota)."""

    http_status = 403


class NotFound(FlotillaError):
    """The resource does not exist, or the caller may not see it."""

    http_status = 404


class Conflict(FlotillaError):
    """The request clashes with the current state (ambiguous name, busy cluster)."""

    http_status = 409


class NotAcceptable(FlotillaError):
    """Microversion problems."""

    http_status = 406


class Unavailable(FlotillaError):
    """A backing service (Docker Engine, Keystone) cannot be reached right now."""

    http_status = 503


class InvalidTransition(Conflict):
    """A status change that the lifecycle table does not allow."""
