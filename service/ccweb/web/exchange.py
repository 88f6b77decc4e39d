"""The code's exchange at the token endpoint, bounded: what is sent, how often, and what is read back.

    usable_code(code)                 whether a callback's ``code`` may be sent at all (≤ 2048 printable ASCII)
    ExchangeBudget(clock).spend()     whether this process may make one more exchange now (a token bucket)
    ExchangeTransport(verify)         the one transport of every exchange: answers read whole, capped, uncompressed
    token_answer(response)            authlib's hook on the answer: its status, before authlib parses the body

The token endpoint is the one request an anonymous visitor can make the service send, with its client secret,
by pairing ``/auth/login`` with a made-up callback; the code's shape is checked first, then the budget, so that
a flood spends at most ``EXCHANGE_BURST`` requests at once and ``EXCHANGES_PER_MINUTE`` after (the identity
provider throttles a client that asks more, and a throttled client signs no one in). Over the budget the
callback answers 503 at once. The budget is per process: N replicas make N times as many exchanges.

Every exchange goes through one ``ExchangeTransport`` (a pool of connections to the token endpoint rather than a
TLS handshake each) with ccweb's proxy routing (``ccweb.outbound.ProxyRouting``, the proxy variables read when
it is made). An answer is read whole before anything parses it, up to ``MAX_TOKEN_ANSWER_BYTES``, and asked
for uncompressed (a compressed one is refused: 64 KiB of gzip can hold gigabytes).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx

from ccweb.outbound import ProxyRouting
from ccweb.ratelimit import RateLimiter
from ccweb.web.oidc import EXCHANGE_SECONDS, START_AGAIN, SignInFailed, error_code

MAX_CODE_CHARACTERS: Final = 2048
"""The longest authorization code sent to the token endpoint (identity providers' codes are well under 1 KiB)."""
MAX_TOKEN_ANSWER_BYTES: Final = 64 * 1024
"""The token endpoint's answer at most: an ID token is at most ``tokens.MAX_TOKEN_BYTES`` (16 KiB), and an
access and a refresh token beside it."""
EXCHANGES_PER_MINUTE: Final = 300
"""The exchanges a process makes per minute, once ``EXCHANGE_BURST`` is spent."""
EXCHANGE_BURST: Final = 20
BUSY = ("This service is finishing too many sign-ins at once; try again in a moment. " + START_AGAIN)
_BUDGET_KEY: Final = ("web", "token endpoint")


def usable_code(code: str) -> bool:
    """Whether ``code`` may be an authorization code: RFC 6749's ``VSCHAR`` (printable ASCII), not too long."""
    return 0 < len(code) <= MAX_CODE_CHARACTERS and all(" " <= c <= "~" for c in code)


class ExchangeBudget:
    """How many exchanges this process may still make now: ``EXCHANGE_BURST`` at once, refilled at
    ``EXCHANGES_PER_MINUTE``, by ``clock``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._bucket = RateLimiter(EXCHANGES_PER_MINUTE, EXCHANGE_BURST, clock=clock, max_identities=1)

    def spend(self) -> None:
        """Spend one exchange; SignInFailed (503, ``BUSY``) when none is left."""
        if self._bucket.check(_BUDGET_KEY):
            raise SignInFailed(503, BUSY, title="Sign-in is busy", reason="busy")


def _not_a_token_response(detail: str) -> SignInFailed:
    return SignInFailed(502, f"The identity provider answered the sign-in with {detail}; tell the ccweb operators.",
                        reason="token_endpoint")


class ExchangeTransport(httpx.AsyncBaseTransport):
    """The transport of every exchange of a ``SignIn``: see the module. A client that closes does not close it;
    ``close`` does (the app's end)."""

    def __init__(self, *, verify: ssl.SSLContext, env: Mapping[str, str] = os.environ) -> None:
        self._routing = ProxyRouting(verify=verify, limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
                                     env=env, total=EXCHANGE_SECONDS)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Accept-Encoding"] = "identity"
        answer = await self._routing.handle_async_request(request)
        stream = answer.stream
        if not isinstance(stream, httpx.AsyncByteStream):  # pragma: no cover - an async transport's answer
            raise TypeError("the token endpoint's answer is not an async stream")
        body = bytearray()
        try:
            if answer.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
                raise _not_a_token_response("a compressed answer, which it was asked not to send")
            async for chunk in stream:
                body += chunk
                if len(body) > MAX_TOKEN_ANSWER_BYTES:
                    raise _not_a_token_response(f"more than {MAX_TOKEN_ANSWER_BYTES // 1024} KiB")
        finally:
            await stream.aclose()
        return httpx.Response(answer.status_code, headers=answer.headers, content=bytes(body),
                              extensions=answer.extensions, request=request)

    async def aclose(self) -> None:
        """Nothing: a client made for one exchange closes its transport when done, and this one is shared."""

    async def close(self) -> None:
        """Close the connections of every exchange (the app's end)."""
        await self._routing.aclose()


def _answer_code(response: httpx.Response) -> str | None:
    """The ``error`` of a JSON error answer, when it is a plain code."""
    try:
        document = response.json()
    except (ValueError, RecursionError):
        return None
    return error_code(document.get("error")) if isinstance(document, dict) else None


def token_answer(response: httpx.Response) -> httpx.Response:
    """authlib's ``access_token_response`` hook: an answer of any status but 200 is refused here with the sentence
    its status calls for (authlib would read a 429's ``{}`` as a token response without an ID token). A 4xx that
    carries an OAuth error code goes on, for authlib to raise it as ``OAuthError``."""
    status = response.status_code
    if status >= 500:
        raise SignInFailed(502, f"The identity provider failed to finish the sign-in (HTTP {status}); try again "
                                f"shortly. {START_AGAIN}", reason="token_endpoint")
    if status >= 400:
        if _answer_code(response) is not None:
            return response
        raise SignInFailed(400, f"The identity provider refused to finish the sign-in (HTTP {status}). "
                                f"{START_AGAIN}", reason="code_refused")
    if status != 200:
        raise _not_a_token_response(f"HTTP {status}, not a token response")
    return response


def hook_token_answer(client: Any) -> None:
    """authlib's ``compliance_fix`` (``client``: its OAuth client): ``token_answer`` on every token answer."""
    client.register_compliance_hook("access_token_response", token_answer)
