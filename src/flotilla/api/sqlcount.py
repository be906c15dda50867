"""Debug headers on every response, when ``debug_sql_count`` is on (bench and tests only):
``X-Flotilla-Sql-Statements`` (statements the request ran) and ``X-Flotilla-Pid`` (the
API process that answered, to see ``--api-workers`` share the load).

Pure ASGI, outermost: the counter opened here is seen by the request's threadpool calls
(the context is copied into them), so authentication is counted too.
"""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flotilla.db import statements

HEADER = b"x-flotilla-sql-statements"
PID_HEADER = b"x-flotilla-pid"


class SqlCountMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.pid = str(os.getpid()).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with statements.counting() as box:

            async def send_wrapper(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = dict(message)
                    message["headers"] = [
                        *message.get("headers", []),
                        (HEADER, str(box[0]).encode()),
                        (PID_HEADER, self.pid),
                    ]
                await send(message)

            await self.app(scope, receive, send_wrapper)
