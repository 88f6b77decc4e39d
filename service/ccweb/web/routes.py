"""The web face's routes, each wrapped alone, added to the app by ``install_web``.

    install_web(app, running, http=…, clock=…, session_secret=…)   adds these routes to the app's router:

    GET, HEAD  /                 the page (``ccweb.web.page``)
    GET        /auth/login       sign-in starts (``ccweb.web.signin``)
    GET        /auth/callback    sign-in ends
    POST       /auth/logout      sign-out
    GET, HEAD  /static/{name}    the stylesheet, script and icon (``ccweb.web.static``)

Each route is wrapped, alone, in ``PageHeaders`` (``ccweb.web.headers``) and, but for the static files, in the
session (``WebSession``: Starlette's ``SessionMiddleware``); nothing is added to the whole app, so the API's
requests never pass through either. None of these routes is in the OpenAPI document. Every answer of these
paths is the page's, with its headers: another method is a 405 message page naming the ones allowed
(``Allow``), and an unexpected error a 500 message page (logged once, with its traceback, as the API's are).

The session cookie is ``__Host-ccweb`` (``Secure``) when ``web.public_url`` is https, else ``ccweb``;
``HttpOnly``, ``SameSite=Lax``, ``Path=/``; its ``Max-Age`` is ``web.session_max_seconds``, and the session
inside ends at the ID token's expiry, or when the running policy no longer vouches for it (``session.recheck``,
before each route). It is signed with a key derived from ``session_secret`` for this purpose alone
(``session_key``): another application given the same secret cannot make a cookie ccweb takes. Without
``session_secret`` there is no session: the page shows set-up for everyone, and a policy whose ``web:``
configures sign-in is refused.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.datastructures import Secret
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, request_response
from starlette.types import ASGIApp, Receive, Scope, Send

from ccweb.config import ConfigError
from ccweb.reload import RunningPolicy
from ccweb.responses import unexpected_error
from ccweb.web import session
from ccweb.web.headers import PageHeaders
from ccweb.web.oidc import quiet_authlib
from ccweb.web.page import home
from ccweb.web.render import message_page
from ccweb.web.signin import CALLBACK_PATH, LOGIN_PATH, LOGOUT_PATH, MAX_LOGOUT_BODY_BYTES, SignIn
from ccweb.web.static import static_file
from ccweb.webconfig import WebSettings

__all__ = ["LOGOUT_PATH", "MAX_LOGOUT_BODY_BYTES", "WebContext", "install_web"]

SESSION_COOKIE = "ccweb"
SECURE_SESSION_COOKIE = "__Host-ccweb"
"""The cookie's name behind https: ``__Host-`` makes browsers refuse it unless ``Secure``, ``Path=/`` and set by
this very host (no sibling domain can plant or overwrite it)."""
SESSION_KEY_PURPOSE = b"ccweb web session v1"

Endpoint = Callable[[Request], Awaitable[Response]]


def session_key(secret: bytes) -> bytes:
    """The key that signs the session cookie: HMAC-SHA256 of ``SESSION_KEY_PURPOSE`` under ``web.session_secret``.
    An application given the same secret (a Starlette app's ``SessionMiddleware`` signs with it as it is) signs
    with another key."""
    return hmac.new(secret, SESSION_KEY_PURPOSE, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class WebContext:
    """What the page is given (``ccweb.web.page.PageContext``): the running policy and the clock."""

    running: RunningPolicy
    clock: Callable[[], float]


def behind_https(web: WebSettings) -> bool:
    """Whether people reach the page over https (``web.public_url`` says so)."""
    return web.public_url is not None and web.public_url.startswith("https://")


class WebSession:
    """Starlette's ``SessionMiddleware`` around one route, set as the running policy's ``web:`` says (cookie name and
    ``Secure`` by ``behind_https``, ``Max-Age`` by ``session_max_seconds``), so that a reload that changes those
    takes effect at once; a session the running policy no longer vouches for ends before the route runs
    (``session.recheck``). Without a secret, the route runs with no session."""

    def __init__(self, app: ASGIApp, *, running: RunningPolicy, secret: bytes | None) -> None:
        self.app, self.running = app, running
        # every byte of the derived key kept (latin-1), none shown (Secret's repr)
        self._secret = None if secret is None else Secret(session_key(secret).decode("latin-1"))
        self._made: dict[tuple[bool, int], SessionMiddleware] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._secret is None:
            await self.app(scope, receive, send)
            return
        web = self.running.current.config.web
        key = (behind_https(web), web.session_max_seconds)
        middleware = self._made.get(key)
        if middleware is None:
            https, max_age = key
            middleware = self._made[key] = SessionMiddleware(
                self._rechecked, self._secret, session_cookie=SECURE_SESSION_COOKIE if https else SESSION_COOKIE,
                max_age=max_age, path="/", same_site="lax", https_only=https,
            )
        await middleware(scope, receive, send)

    async def _rechecked(self, scope: Scope, receive: Receive, send: Send) -> None:
        session.recheck(HTTPConnection(scope), self.running.current.policy)
        await self.app(scope, receive, send)


class Answering:
    """``endpoint`` as an ASGI app for ``methods`` (GET brings HEAD): any other method is a 405 message page with
    ``Allow``, and an error the endpoint did not expect a 500 message page (logged as ``ccweb.responses`` logs
    the API's). An ASGI app, not a function, so that its ``Route`` hands it every method."""

    def __init__(self, endpoint: Endpoint, methods: tuple[str, ...]) -> None:
        self.endpoint = endpoint
        self.allowed = tuple(m for method in methods for m in ((method, "HEAD") if method == "GET" else (method,)))
        self._app = request_response(self._answer)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        if request.method not in self.allowed:
            refused = message_page(request, status=405, title="Not here",
                                   sentence=f"This address answers {', '.join(self.allowed[:-1])} and "
                                            f"{self.allowed[-1]} only; use the page's own links and buttons.")
            refused.headers["Allow"] = ", ".join(self.allowed)
            return refused
        try:
            return await self.endpoint(request)
        except Exception as exc:  # noqa: BLE001 (anything: the person gets the page's 500, the log the traceback)
            unexpected_error(exc)
            return message_page(request, status=500, title="Something went wrong",
                                sentence="ccweb failed unexpectedly; the operators can find why in its log.")


def web_routes(running: RunningPolicy, *, sign_in: SignIn, clock: Callable[[], float],
               session_secret: bytes | None) -> list[BaseRoute]:
    """The web face's routes, each wrapped in what it needs."""

    def https(scope: Scope) -> bool:
        return behind_https(running.current.config.web) or scope.get("scheme") == "https"

    headers = Middleware(PageHeaders, https=https)
    with_session = [headers, Middleware(WebSession, running=running, secret=session_secret)]
    page: Endpoint = functools.partial(home, ctx=WebContext(running, clock))

    def route(path: str, name: str, endpoint: Endpoint, *methods: str, middleware: list[Middleware]) -> Route:
        return Route(path, Answering(endpoint, methods), name=name, include_in_schema=False, middleware=middleware)

    return [
        route("/", "page", page, "GET", middleware=with_session),
        route(LOGIN_PATH, "login", sign_in.login, "GET", middleware=with_session),
        route(CALLBACK_PATH, "callback", sign_in.callback, "GET", middleware=with_session),
        route(LOGOUT_PATH, "logout", sign_in.logout, "GET", "POST", middleware=with_session),
        route("/static/{name}", "static_file", static_file, "GET", middleware=[headers]),
    ]


def install_web(app: FastAPI, running: RunningPolicy, *, http: httpx.AsyncClient, clock: Callable[[], float],
                session_secret: bytes | None) -> None:
    """Add the web face's routes to ``app`` (after the API's: they cost the API's requests nothing), and the
    closing of the sign-in's connections to the app's lifespan. ConfigError when the policy configures sign-in
    and there is no ``session_secret`` to sign its cookie with."""
    web = running.current.config.web
    if web.sign_in and session_secret is None:
        raise ConfigError(["web.session_secret: sign-in (web.issuer) needs the session secret, and it was not read"])
    if web.sign_in or session_secret is not None:
        quiet_authlib()
    sign_in = SignIn(running, http=http, clock=clock)
    app.router.routes.extend(web_routes(running, sign_in=sign_in, clock=clock, session_secret=session_secret))
    lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def with_sign_in(started: Any) -> AsyncIterator[Any]:
        async with lifespan(started) as state:
            try:
                yield state
            finally:
                await sign_in.aclose()

    app.router.lifespan_context = with_sign_in
