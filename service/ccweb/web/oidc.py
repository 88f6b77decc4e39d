"""The page's OpenID Connect client: authlib's Starlette client, with ccweb's network, clock and token checks.

    Discovery(http, clock).endpoints(issuer)   the issuer's authorization and token endpoints (cached)
    WebClient(...)                             authlib's ``StarletteOAuth2App``: the authorization URL (code, PKCE
                                               S256, state, nonce), the sign-in in progress kept in the session,
                                               the code exchanged; ``parse_id_token`` is ccweb's own

authlib fetches nothing by itself here: no discovery document (the endpoints are given; ``Discovery`` fetches
the document with ``keys.fetch_json`` over the app's outbound client, capped, never redirected, its ``issuer``
checked, its endpoints https or loopback http; one fetch per issuer at a time, however many sign-ins wait on it)
and no key set (``parse_id_token`` hands the ID token to the running policy's ``TokenVerifier``, the API's own).
Its HTTP client, made for each exchange, is httpx with ``trust_env=False`` and bounded timeouts over the
transport it is given (``ccweb.web.exchange.ExchangeTransport``: proxy routing, a capped answer).

authlib logs the PKCE code_verifier at DEBUG level: its logger is held at WARNING (``quiet_authlib``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import authlib.deprecate  # noqa: F401 (its "always" filter first, so that the narrower one below comes before it)
import httpx

from ccweb.config import Issuer
from ccweb.errors import InvalidToken
from ccweb.keys import FETCH_TIMEOUT_SECONDS, KEY_FETCH_SPACING_SECONDS, DocumentError, fetch_json
from ccweb.tokens import TokenVerifier, VerifiedToken
from ccweb_helper.hosts import is_loopback

with warnings.catch_warnings():
    # authlib 1.9.10 asks for the httpx2 package and, without it, uses httpx with a deprecation warning: ccweb's
    # transport (ProxyRouting) is httpx's, so httpx it must be (``WebClient`` checks that it is).
    warnings.filterwarnings("ignore", message="The httpx module is deprecated", category=DeprecationWarning)
    from authlib.integrations.base_client import OAuthError
    from authlib.integrations.starlette_client import StarletteOAuth2App
    from authlib.integrations.starlette_client.integration import StarletteIntegration

__all__ = ["START_AGAIN", "Discovery", "Endpoints", "OAuthError", "SignInFailed", "WebClient", "discovered_endpoints",
           "error_code", "quiet_authlib"]

log = logging.getLogger("ccweb.web")

NAME: Final = "ccweb"
"""The client's name in authlib: the session keys of a sign-in in progress are ``_state_ccweb_<state>``."""
STATE_SECONDS: Final = 600
"""How long a sign-in may take at the identity provider, from ``/auth/login`` to ``/auth/callback``."""
DISCOVERY_SECONDS: Final = 300.0
"""How long an issuer's endpoints are kept before its discovery document is fetched again."""
EXCHANGE_TIMEOUT: Final = httpx.Timeout(5.0)
EXCHANGE_SECONDS: Final = 10.0
"""The bound on exchanging the code at the token endpoint, from the first byte sent to the last received."""
START_AGAIN: Final = "Start again from the page's Sign in."
ERROR_CODE_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")


def error_code(value: object) -> str | None:
    """An OAuth error code as the page may show it (RFC 6749: a short token), or None."""
    return value if isinstance(value, str) and 0 < len(value) <= 64 and set(value) <= ERROR_CODE_CHARACTERS else None


class SignInFailed(Exception):
    """A sign-in that cannot go on: the message page's status, title and sentence (no secret in any)."""

    def __init__(self, status: int, sentence: str, *, title: str = "Sign-in failed", reason: str = "") -> None:
        super().__init__(sentence)
        self.status, self.sentence, self.title, self.reason = status, sentence, title, reason or str(status)


def quiet_authlib() -> None:
    """Hold authlib's loggers at WARNING: at DEBUG it logs the PKCE code_verifier of every sign-in."""
    logging.getLogger("authlib").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class Endpoints:
    """What the issuer's discovery document says about signing in."""

    authorization: str
    token: str
    auth_methods: tuple[str, ...] | None
    """``token_endpoint_auth_methods_supported``; None when the document does not say (client_secret_basic)."""


def _endpoint(document: Mapping[str, Any], name: str, where: str, issuer: str) -> str:
    """``name``'s URL in the discovery document: https, and on loopback (then plain http too) only when ``issuer``
    itself is (the ``ccweb dev`` sandbox, tests). An identity provider elsewhere that named ``127.0.0.1`` would
    have every replica post the code exchange, client credentials included, to its own pod's listeners."""
    value = document.get(name)
    if not isinstance(value, str) or not value.isascii() or not value.isprintable() or " " in value:
        raise DocumentError(f"{where} names no {name} that is a URL of printable ASCII characters")
    try:
        parts = urlsplit(value)
        loopback = is_loopback(parts.hostname or "")
    except ValueError:
        raise DocumentError(f"{where} names a {name} that is not a URL") from None
    issuer_on_loopback = is_loopback(urlsplit(issuer).hostname or "")
    plain_allowed = parts.scheme == "http" and loopback and issuer_on_loopback
    if not parts.hostname or parts.fragment or (parts.scheme != "https" and not plain_allowed):
        raise DocumentError(f"{where} names a {name} that is not an https URL")
    if loopback and not issuer_on_loopback:
        raise DocumentError(f"{where} names a {name} on loopback, which only an issuer on loopback may")
    return value


def discovered_endpoints(document: Mapping[str, Any], issuer: Issuer, url: str) -> Endpoints:
    """What the discovery document at ``url`` says of signing in at ``issuer``; DocumentError if it cannot say."""
    if document.get("issuer") != issuer.issuer:
        raise DocumentError(f"{url} names a different issuer")
    methods = document.get("token_endpoint_auth_methods_supported")
    return Endpoints(
        _endpoint(document, "authorization_endpoint", url, issuer.issuer),
        _endpoint(document, "token_endpoint", url, issuer.issuer),
        tuple(m for m in methods if isinstance(m, str)) if isinstance(methods, list) else None,
    )


class Discovery:
    """Each issuer's endpoints, from its discovery document, kept ``DISCOVERY_SECONDS``; a failed fetch is tried
    again no sooner than ``KEY_FETCH_SPACING_SECONDS`` later (meanwhile sign-in answers 503 at once). While one
    fetch is under way, every sign-in at that issuer waits on it rather than starting its own."""

    def __init__(self, http: httpx.AsyncClient, clock: Callable[[], float]) -> None:
        self._http, self._clock = http, clock
        self._found: dict[str, tuple[Endpoints, float]] = {}
        self._failed: dict[str, tuple[str, float]] = {}
        self._fetching: dict[str, asyncio.Task[Endpoints]] = {}

    async def endpoints(self, issuer: Issuer) -> Endpoints:
        """The endpoints of ``issuer``; SignInFailed (503: unreachable, 502: a document ccweb cannot use)."""
        now = self._clock()
        found = self._found.get(issuer.issuer)
        if found is not None and 0 <= now - found[1] < DISCOVERY_SECONDS:
            return found[0]
        failed = self._failed.get(issuer.issuer)
        if failed is not None and 0 <= now - failed[1] < KEY_FETCH_SPACING_SECONDS:
            raise _unreachable(issuer, failed[0])
        fetching = self._fetching.get(issuer.issuer)
        if fetching is None:
            fetching = self._fetching[issuer.issuer] = asyncio.create_task(self._fetch(issuer, now))
            fetching.add_done_callback(lambda done: self._fetched(issuer.issuer, done))
        # shielded: a sign-in whose browser went away does not cancel the fetch the others wait on
        return await asyncio.shield(fetching)

    def _fetched(self, key: str, done: asyncio.Task[Endpoints]) -> None:
        if self._fetching.get(key) is done:
            del self._fetching[key]
        if not done.cancelled():
            done.exception()  # retrieved: a failure no one waited for any more is not logged as lost

    async def _fetch(self, issuer: Issuer, now: float) -> Endpoints:
        url = issuer.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            async with asyncio.timeout(FETCH_TIMEOUT_SECONDS):
                endpoints = discovered_endpoints(await fetch_json(self._http, url), issuer, url)
        except (DocumentError, TimeoutError) as exc:
            problem = str(exc) if isinstance(exc, DocumentError) else f"no answer within {FETCH_TIMEOUT_SECONDS:g} s"
            log.warning("sign-in at issuer %s: its discovery document: %s", issuer.name, problem)
            self._failed[issuer.issuer] = (problem, now)
            raise _unreachable(issuer, problem) from None
        self._failed.pop(issuer.issuer, None)
        self._found[issuer.issuer] = (endpoints, now)
        return endpoints


def _unreachable(issuer: Issuer, problem: str) -> SignInFailed:
    return SignInFailed(503, f"ccweb cannot reach the identity provider {issuer.issuer} to sign you in ({problem}); "
                             "try again shortly, and tell the ccweb operators if it persists.",
                        reason="discovery")


def auth_method(secret: str | None, supported: tuple[str, ...] | None) -> str:
    """How the client proves itself at the token endpoint: ``none`` (a public client: PKCE alone), else
    ``client_secret_basic`` unless the issuer supports only ``client_secret_post``."""
    if secret is None:
        return "none"
    if supported is not None and "client_secret_basic" not in supported and "client_secret_post" in supported:
        return "client_secret_post"
    return "client_secret_basic"


class _Integration(StarletteIntegration):  # type: ignore[misc]
    """authlib's keeping of a sign-in in progress in the session, by ccweb's clock, and checked for its age
    (authlib's own ``get_state_data`` takes any age)."""

    expires_in = STATE_SECONDS

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(NAME)
        self._clock = clock

    async def get_state_data(self, session: dict[str, Any] | None, state: str) -> dict[str, Any] | None:
        held = None if session is None else session.get(f"_state_{NAME}_{state}")
        if not isinstance(held, dict) or not isinstance(held.get("exp"), int | float):
            return None
        data = held.get("data")
        return data if isinstance(data, dict) and self._clock() < held["exp"] else None

    async def set_state_data(self, session: dict[str, Any] | None, state: str, data: Any) -> None:
        if session is None:
            raise RuntimeError("the web routes have no session: sign-in needs web.session_secret")
        for key in [key for key in session if key.startswith(f"_state_{NAME}_")]:
            del session[key]  # one sign-in at a time per browser: the cookie stays small
        session[f"_state_{NAME}_{state}"] = {"data": data, "exp": self._clock() + STATE_SECONDS}

    async def clear_state_data(self, session: dict[str, Any] | None, state: str) -> None:
        if session is not None:
            session.pop(f"_state_{NAME}_{state}", None)


class WebClient(StarletteOAuth2App):  # type: ignore[misc]
    """authlib's Starlette client for one sign-in (made for each request: it holds nothing between them), the ID
    token checked by ``verifier`` — the running policy's — for the issuer named ``issuer``; the code exchanged
    over ``transport``, its answer seen first by ``compliance_fix``'s hooks."""

    def __init__(self, *, client_id: str, client_secret: str | None, scopes: list[str], endpoints: Endpoints,
                 issuer: str, verifier: TokenVerifier, transport: httpx.AsyncBaseTransport,
                 compliance_fix: Callable[[Any], None], clock: Callable[[], float]) -> None:
        super().__init__(
            _Integration(clock), name=NAME, client_id=client_id, client_secret=client_secret,
            authorize_url=endpoints.authorization, access_token_url=endpoints.token, compliance_fix=compliance_fix,
            client_kwargs={
                "scope": " ".join(scopes), "code_challenge_method": "S256",
                "token_endpoint_auth_method": auth_method(client_secret, endpoints.auth_methods),
                "timeout": EXCHANGE_TIMEOUT, "trust_env": False, "follow_redirects": False,
            },
        )
        if not issubclass(self.client_cls, httpx.AsyncClient):
            raise TypeError("authlib's OAuth client is not an httpx client here: ccweb cannot route it")
        self._issuer, self._verifier, self._transport = issuer, verifier, transport

    def _get_oauth_client(self, **metadata: Any) -> Any:
        """authlib's HTTP client for one exchange, over the transport given (which outlives it)."""
        return super()._get_oauth_client(transport=self._transport, **metadata)

    async def load_server_metadata(self) -> dict[str, Any]:
        return {}  # the endpoints are given: nothing to fetch

    async def fetch_jwk_set(self, force: bool = False) -> dict[str, Any]:
        raise RuntimeError("ccweb verifies ID tokens with its own TokenVerifier: authlib fetches no key set")

    async def save_authorize_data(self, request: Any, **kwargs: Any) -> None:
        kwargs.pop("url", None)  # the authorization URL: nothing the callback needs, and hundreds of bytes
        await super().save_authorize_data(request, **kwargs)

    async def parse_id_token(self, token: Mapping[str, Any], nonce: object, claims_options: object = None,
                             claims_cls: object = None, leeway: int = 120) -> VerifiedToken:
        """The token response's ID token, verified by ccweb's ``TokenVerifier`` (InvalidToken, or
        UpstreamUnavailable when the issuer's keys cannot be had) and then as this sign-in's: from the web
        issuer, issued to this client (``aud`` holds it; ``azp``, when present, is it) for this browser's sign-in
        (``nonce``); a token for several audiences must name this client its ``azp`` (OpenID Connect Core
        3.1.3.7). ``claims_options``, ``claims_cls`` and ``leeway`` (authlib's) are not used."""
        id_token = token.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise SignInFailed(502, "The identity provider finished the sign-in without an ID token; tell the ccweb "
                                    "operators (the client needs the openid scope).", reason="no_id_token")
        verified = await self._verifier.verify(id_token)
        claims = verified.claims
        if verified.issuer.name != self._issuer:
            raise _refused("issuer", f"it is from the issuer {verified.issuer.name!r}, not {self._issuer!r} where "
                                     "this sign-in started")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.client_id not in audiences:
            raise _refused("audience", f"it was not issued to this page's client {self.client_id!r} (its aud)")
        azp = claims.get("azp")
        if azp is not None and azp != self.client_id:
            raise _refused("authorized_party", f"it was issued to another client than this page's "
                                               f"{self.client_id!r} (its azp)")
        if azp is None and len(audiences) > 1:
            raise _refused("authorized_party", "it was issued to several audiences and names none of them as the "
                                               "client it was issued to (it has no azp)")
        got = claims.get("nonce")
        if not (isinstance(got, str) and isinstance(nonce, str)
                and hmac.compare_digest(got.encode(), nonce.encode())):
            raise _refused("nonce", "its nonce is not the one of this browser's sign-in")
        return verified


def _refused(reason: str, detail: str) -> InvalidToken:
    return InvalidToken(f"The OIDC token was refused: {detail}.", reason=reason)
