"""Magnum's error body, built in one place for every 4xx/5xx."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


def error_body(status: int, message: str, *, code: str | None = None) -> dict[str, Any]:
    """``{"errors": [...]}`` with ``title`` = the message up to its first ``.``."""
    if code is None:
        code = "server" if status >= 500 else "client"
    # A message may echo client text: never let it make the error itself unserializable.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    title = message.split(".")[0] if message else ""
    return {
        "errors": [
            {
                "request_id": "",
                "code": code,
                "status": status,
                "title": title,
                "detail": message,
                "links": [],
            }
        ]
    }


def error_response(
    status: int, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, code=code), status_code=status, headers=headers)
