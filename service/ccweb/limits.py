"""Size and media-type limits, enforced before routing, authentication or parsing (a pure ASGI middleware).

    request head over MAX_HEAD_BYTES (every header name and value)  → 431 request_header_too_large
    Authorization over MAX_AUTHORIZATION_BYTES (a 16 KiB token)      → 401 invalid_token (+ WWW-Authenticate)
    body over MAX_BODY_BYTES, declared or streamed                  → 413 request_too_large (+ Connection: close)
    a body whose Content-Type is not JSON (or is missing)           → 415 unsupported_media_type
    a body to a credential route with no Authorization: Bearer      → 401 invalid_token, before the body is read
    a body not whole within BODY_SECONDS of the head                → 408 request_timeout (+ Connection: close)

Every refusal is the contract's JSON error body, except on a route in git's credential format
(``POST /v1/git-credential``, ``text_bodies``): its body may be of any media type, up to a size of its own, and
its refusals are text (``ccweb.textapi``); nor on a route that takes a form (``form_bodies``: the web page's
``POST /auth/logout``), whose body may be of any media type, up to a size of its own. A refused body is not
read; an accepted one is read here (at most MAX_BODY_BYTES) and replayed to the application, so a slow or endless
chunked upload never reaches it.
The credential routes (``POST /v1/credentials`` and the text routes) answer a request that carries no bearer
token at once, as the route itself would (``ccweb.credentials.missing_token``, in the route's ``Wire``), so an
anonymous client cannot have a body buffered; and no body may take longer than ``BODY_SECONDS`` to arrive.

uvicorn bounds none of this itself: its only timer (``timeout_keep_alive``) runs between requests on a kept-alive
connection, never while a head or a body is arriving. A head that trickles in is not seen here either (the
application is called once the head is whole): a proxy in front must cut it (nginx: ``client_header_timeout``).

The server's own limit comes first: uvicorn's h11 parser buffers at most ``h11_max_incomplete_event_size``
bytes of request head (16 KiB by default, which would cut in before the 16 KiB token cap and answer with a
plain-text 400). ``ccweb serve`` must pass ``SERVER_OPTIONS`` so that heads up to H11_MAX_INCOMPLETE_EVENT_SIZE
reach this middleware and get a JSON answer; anything larger still gets uvicorn's plain ``400 Invalid HTTP
request received.`` and a closed connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ccweb.credentials import CREDENTIALS_PATH, JSON_WIRE, bearer_token, missing_token, receive_body, route_path
from ccweb.textapi import TEXT_CONTENT_TYPE, TEXT_WIRE, error_text
from ccweb.tokens import MAX_TOKEN_BYTES

MAX_BODY_BYTES: Final = 8 * 1024
MAX_HEAD_BYTES: Final = 32 * 1024
MAX_AUTHORIZATION_BYTES: Final = len("Bearer ") + MAX_TOKEN_BYTES
H11_MAX_INCOMPLETE_EVENT_SIZE: Final = 64 * 1024
SERVER_OPTIONS: Final[dict[str, Any]] = {"h11_max_incomplete_event_size": H11_MAX_INCOMPLETE_EVENT_SIZE}
BODY_SECONDS: Final = 10.0
"""How long a request's body may take to arrive, in all, once its head has: git's helpers send a few hundred bytes
at once."""

# (status, error, detail) for each refusal; also what the OpenAPI document says about them.
HEAD_TOO_LARGE = (
    431, "request_header_too_large",
    f"The request headers are larger than {MAX_HEAD_BYTES} bytes; send fewer or shorter headers.",
)
TOKEN_TOO_LARGE = (
    401, "invalid_token",
    f"The Authorization header is larger than {MAX_AUTHORIZATION_BYTES} bytes: ccweb accepts bearer tokens of "
    f"up to {MAX_TOKEN_BYTES} bytes; ask your identity provider for a token without the extra claims.",
)


def body_too_large(limit: int) -> tuple[int, str, str]:
    return (413, "request_too_large",
            f"The request body is larger than {limit} bytes; send only protocol, host and path.")


BODY_TOO_LARGE = body_too_large(MAX_BODY_BYTES)


def body_too_slow(seconds: float) -> tuple[int, str, str]:
    return (408, "request_timeout",
            f"The request body did not arrive within {seconds:g} seconds; send it whole, at once, and try again.")


BODY_TOO_SLOW = body_too_slow(BODY_SECONDS)
NOT_JSON = (
    415, "unsupported_media_type",
    "The request body must be JSON, sent with 'Content-Type: application/json'.",
)


def is_json(content_type: str) -> bool:
    """True for ``application/json`` and ``application/<anything>+json``, with or without parameters."""
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or (subtype.endswith("+json") and len(subtype) > 5))


class RequestLimits:
    """Refuse oversized heads, tokens and bodies and non-JSON bodies with the contract's JSON error body."""

    def __init__(self, app: ASGIApp, *, max_body: int = MAX_BODY_BYTES, max_head: int = MAX_HEAD_BYTES,
                 max_authorization: int = MAX_AUTHORIZATION_BYTES,
                 text_bodies: Mapping[str, int] | None = None, bearer_routes: Collection[str] | None = None,
                 body_seconds: float = BODY_SECONDS, form_bodies: Mapping[str, int] | None = None) -> None:
        """``text_bodies``: the routes in git's credential format (paths below the root path), each with its body's
        size limit. ``form_bodies``: the routes whose body is a form (any media type), each with its size limit;
        their refusals are JSON. ``bearer_routes``: the routes whose POST needs a bearer token before its body is
        read (default: ``POST /v1/credentials`` and the ``text_bodies`` routes)."""
        self.app = app
        self.max_body = max_body
        self.max_head = max_head
        self.max_authorization = max_authorization
        self.text_bodies = dict(text_bodies or {})
        self.form_bodies = dict(form_bodies or {})
        self.bearer_routes = frozenset(bearer_routes if bearer_routes is not None
                                       else (CREDENTIALS_PATH, *self.text_bodies))
        self.body_seconds = body_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_body, text, form = self.max_body, False, False
        path = route_path(scope)
        limit = self.text_bodies.get(path)
        if limit is not None:
            max_body, text = limit, True
        elif (limit := self.form_bodies.get(path)) is not None:
            max_body, form = limit, True
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if sum(len(name) + len(value) + 4 for name, value in headers) > self.max_head:
            await _refuse(send, *HEAD_TOO_LARGE, close=True, text=text)
            return
        declared: int | None = None
        chunked = False
        content_type: str | None = None
        authorization: bytes | None = None
        for name, value in headers:
            if name == b"authorization":
                if len(value) > self.max_authorization:
                    await _refuse(send, *TOKEN_TOO_LARGE, text=text,
                                  extra=[(b"www-authenticate", b'Bearer error="invalid_token"')])
                    return
                if authorization is None:
                    authorization = value  # the one the route reads (``CredentialsEndpoint``)
            elif name == b"content-length":
                # uvicorn (h11) has already refused a malformed or repeated Content-Length.
                declared = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        if declared is not None and declared > max_body:
            await _refuse(send, *body_too_large(max_body), close=True, text=text)
            return
        if not (chunked or declared):
            await self.app(scope, receive, send)
            return
        if not (text or form) and (content_type is None or not is_json(content_type)):
            await _refuse(send, *NOT_JSON, close=True)
            return
        if (scope["method"] == "POST" and path in self.bearer_routes
                and bearer_token(None if authorization is None else authorization.decode("latin-1")) is None):
            answer = (TEXT_WIRE if text else JSON_WIRE).error(missing_token())  # the route's own 401, to the byte
            answer.headers["connection"] = "close"  # its body is not read
            await answer(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.body_seconds):
                body = await receive_body(receive, max_body)
        except TimeoutError:
            await _refuse(send, *body_too_slow(self.body_seconds), close=True, text=text)
            return
        if body is None:
            return  # the client went away
        if len(body) > max_body:
            await _refuse(send, *body_too_large(max_body), close=True, text=text)
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def _refuse(send: Send, status: int, error: str, detail: str, *, close: bool = False,
                  extra: list[tuple[bytes, bytes]] | None = None, text: bool = False) -> None:
    if text:
        payload, content_type = error_text(error, detail), TEXT_CONTENT_TYPE.encode()
    else:
        payload, content_type = json.dumps({"error": error, "detail": detail}).encode(), b"application/json"
    headers = [(b"content-type", content_type), (b"content-length", str(len(payload)).encode()), *(extra or [])]
    if close:
        headers.append((b"connection", b"close"))  # an unread body must not be taken for the next request
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def document_refusals(schema: dict[str, Any]) -> None:
    """Add these refusals to every operation of an OpenAPI document (``ErrorBody`` must be a component)."""
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            refusals = [HEAD_TOO_LARGE, TOKEN_TOO_LARGE]
            if "requestBody" in operation:
                refusals += [BODY_TOO_LARGE, NOT_JSON, BODY_TOO_SLOW]
            for status, error, _ in refusals:
                if str(status) not in responses:
                    responses[str(status)] = {"description": f"{error}: refused before routing", **body}
