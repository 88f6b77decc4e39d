"""``PageHeaders``: the security headers of every web response (the page, sign-in, static files).

    Content-Security-Policy     default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'
    X-Frame-Options             DENY
    Referrer-Policy             no-referrer
    X-Content-Type-Options      nosniff
    Cross-Origin-Opener-Policy  same-origin
    Cache-Control               no-store, unless the response set its own (the static files)
    Strict-Transport-Security   max-age=31536000, behind https only

A pure ASGI middleware, wrapped around the web routes alone (``ccweb.web``): the API's answers never pass here.
A header the response set itself is left as it is; these are added where it did not.

``form-action 'self'`` lets a form post only to this service; the sign-in starts with a link (a GET that
redirects to the identity provider), which CSP does not restrict, so no identity provider needs listing.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
HSTS = "max-age=31536000"
PAGE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


def scheme_is_https(scope: Scope) -> bool:
    """Whether the request came over https (as uvicorn saw it, or as a trusted proxy said it)."""
    return scope.get("scheme") == "https"


class PageHeaders:
    """Adds ``PAGE_HEADERS`` (and HSTS when ``https(scope)``) to every response that lacks them."""

    def __init__(self, app: ASGIApp, *, https: Callable[[Scope], bool] = scheme_is_https) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = PAGE_HEADERS + (((b"strict-transport-security", HSTS.encode()),) if self.https(scope) else ())

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
