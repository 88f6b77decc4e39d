"""A request id on every response and every log line written while serving it (a pure ASGI middleware).

An incoming ``X-Request-ID`` (from a load balancer, a proxy or the caller) is kept when it is 1 to
``MAX_LENGTH`` characters of ``A-Z a-z 0-9 . _ : + / = -``, starting with a letter or digit; anything else
(too long, a second header, control characters, non-ASCII) is replaced by a new random id and never
echoed nor logged. The id goes back in the response's ``X-Request-ID`` header and, through ``current()``,
onto every log record (``ccweb.logs`` adds it as the ``request_id`` field).
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER: Final = b"x-request-id"
MAX_LENGTH: Final = 128
_ACCEPTED = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,%d}" % (MAX_LENGTH - 1))
_CURRENT: ContextVar[str | None] = ContextVar("ccweb_request_id", default=None)


def current() -> str | None:
    """The id of the request being served in this context, or None outside a request."""
    return _CURRENT.get()


def accept(value: bytes | None) -> str:
    """``value`` if it is a safe request id, else a new one (32 hex digits)."""
    if value is not None and _ACCEPTED.fullmatch(value):
        return value.decode("ascii")
    return os.urandom(16).hex()  # as random as uuid4, without building a UUID


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = [value for name, value in scope["headers"] if name == HEADER]
        request_id = accept(given[0] if len(given) == 1 else None)
        header = (HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(name, value) for name, value in message.get("headers", ()) if name.lower() != HEADER]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        token = _CURRENT.set(request_id)
        await self.app(scope, receive, send_with_id)
        # Reset only on success: after an exception, the server error handler just outside this middleware
        # logs and answers it in this same request task, and its log line and 500 must carry the id too.
        _CURRENT.reset(token)


def response_headers() -> dict[str, str]:
    """``X-Request-ID`` for a response sent outside the middleware (the 500 of an unexpected error)."""
    request_id = current()
    return {"X-Request-ID": request_id} if request_id else {}
