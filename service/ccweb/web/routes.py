"""The web face's routes, each wrapped alone, added to the app by ``install_web``.

    install_web(app, running, http=…, clock=…, session_secret=…)   adds these routes to the app's router:

    GET, HEAD  /                 the page (``ccweb.web.page``)
    GET        /auth/login       sign-in starts (``ccweb.web.signin``)
    GET        /auth/callback    sign-in ends
    POST       /auth/logout      sign-out
    GET, HEAD  /static/{name}    the stylesheet, script and icon (``ccweb.web.static``)

Each route is wrapped, alone, in ``PageHeaders`` (``ccweb.web.headers``) and, but for the static files, in the
session (``WebSession``: Starlette's ``SessionMiddleware``); nothing is added to the whole app, so the API's
requests never pass through either. None of these routes is in the OpenAPI document.

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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.datastructures import Secret
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ccweb.config import ConfigError
from ccweb.reload import RunningPolicy
from ccweb.web import session
from ccweb.web.headers import PageHeaders
from ccweb.web.oidc import quiet_authlib
from ccweb.web.page import home
from ccweb.web.signin import CALLBACK_PATH, LOGIN_PATH, LOGOUT_PATH, MAX_LOGOUT_BODY_BYTES, SignIn
from ccweb.web.static import static_file
from ccweb.webconfig import WebSettings

__all__ = ["LOGOUT_PATH", "MAX_LOGOUT_BODY_BYTES", "WebContext", "install_web"]

SESSION_COOKIE = "ccweb"
SECURE_SESSION_COOKIE = "__Host-ccweb"
"""The cookie's name behind https: ``__Host-`` makes browsers refuse it unless ``Secure``, ``Path=/`` and set by
this very host (no sibling domain can plant or overwrite it)."""
SESSION_KEY_PURPOSE = b"ccweb web session v1"


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


def web_routes(running: RunningPolicy, *, sign_in: SignIn, clock: Callable[[], float],
               session_secret: bytes | None) -> list[BaseRoute]:
    """The web face's routes, each wrapped in what it needs."""

    def https(scope: Scope) -> bool:
        return behind_https(running.current.config.web) or scope.get("scheme") == "https"

    headers = Middleware(PageHeaders, https=https)
    with_session = [headers, Middleware(WebSession, running=running, secret=session_secret)]
    page = functools.partial(home, ctx=WebContext(running, clock))
    return [
        Route("/", page, methods=["GET"], name="page", include_in_schema=False, middleware=with_session),
        Route(LOGIN_PATH, sign_in.login, methods=["GET"], include_in_schema=False, middleware=with_session),
        Route(CALLBACK_PATH, sign_in.callback, methods=["GET"], include_in_schema=False, middleware=with_session),
        Route(LOGOUT_PATH, sign_in.logout, methods=["GET", "POST"], include_in_schema=False, middleware=with_session),
        Route("/static/{name}", static_file, methods=["GET"], include_in_schema=False, middleware=[headers]),
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
