"""Sign-in and sign-out of the page: ``/auth/login``, ``/auth/callback``, ``/auth/logout``.

    GET  /auth/login     302 to the issuer's authorization endpoint (code, PKCE S256, state, nonce)
    GET  /auth/callback  the code exchanged, the ID token checked as the API checks any (``WebClient``), the
                         deny list applied, the session begun; 303 to the page
    POST /auth/logout    the form's ``csrf`` equal to the session's, ``Origin`` (when sent) the page's own; the
                         session cleared; 303 to the page

A callback that cannot sign anyone in answers a message page, and the session keeps no sign-in in progress:

    400  no sign-in of this browser has that ``state`` (made up, replayed, too old: login CSRF is refused here),
         the identity provider's error, a code that is none (``exchange.usable_code``) or that it refused,
         claims a cookie or the page cannot hold (too large, not Unicode, nested too deep)
    401  the ID token refused: the verifier's sentence, or not this sign-in's (issuer, aud, azp, nonce)
    403  a deny entry suspends the identity (the suspension's sentence)
    502  the identity provider answered with something that is not a token response (or more than 64 KiB)
    503  the identity provider cannot be reached (discovery document, token endpoint, key set), or this process
         has made its budget of exchanges for now (``ccweb.web.exchange``)

The code, the code_verifier, the tokens and the client secret are never logged nor shown; a sign-in's log line
names the issuer, the subject and the ID token's SHA-256.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ccweb.config import ConfigError
from ccweb.credentials import distributed_sentence, suspension_sentence
from ccweb.display import printable
from ccweb.errors import InvalidToken, UpstreamUnavailable
from ccweb.policy import Distributed, Suspended
from ccweb.reload import RunningPolicy, Snapshot
from ccweb.web import session
from ccweb.web.exchange import ExchangeBudget, ExchangeTransport, hook_token_answer, usable_code
from ccweb.web.oidc import EXCHANGE_SECONDS, START_AGAIN, Discovery, OAuthError, SignInFailed, WebClient, error_code
from ccweb.web.render import base_path, message_page
from ccweb.web.session import SignedIn
from ccweb.webconfig import SecretSource, WebSettings, read_secret, redirect_uri

log = logging.getLogger("ccweb.web")

LOGIN_PATH: Final = "/auth/login"
CALLBACK_PATH: Final = "/auth/callback"
LOGOUT_PATH: Final = "/auth/logout"
MAX_LOGOUT_BODY_BYTES: Final = 1024
"""The sign-out form's body at most (its one field, ``csrf``, is 43 characters)."""
MAX_SESSION_BYTES: Final = 3584
"""The session cookie's value at most, signature included: browsers keep cookies of up to 4096 bytes, name and
attributes included."""
SIGNATURE_BYTES: Final = 40
"""What the cookie's signature and timestamp add to its value (itsdangerous: ``.<6>.<27>``), rounded up."""
NO_STATE = ("This sign-in did not start in this browser, or was finished or abandoned already; nothing was "
            f"signed in. {START_AGAIN}")


def session_bytes(signed: SignedIn) -> int:
    """The size of the session cookie's value that ``signed`` makes, as ``SessionMiddleware`` writes it."""
    return len(base64.b64encode(json.dumps({session.SIGNED_IN: signed.stored()}).encode())) + SIGNATURE_BYTES


def same_origin(origin: str, own: str) -> bool:
    """Whether the ``Origin`` header ``origin`` is the origin of the URL ``own`` (scheme, host, port)."""
    try:
        theirs, ours = urlsplit(origin), urlsplit(own)
        ports = (theirs.port or {"https": 443, "http": 80}.get(theirs.scheme),
                 ours.port or {"https": 443, "http": 80}.get(ours.scheme))
    except ValueError:
        return False
    return (theirs.scheme, theirs.hostname, ports[0]) == (ours.scheme, ours.hostname, ports[1]) and not theirs.path


class SignIn:
    """The three sign-in routes' endpoints, for the running policy's ``web:`` settings (read on each request)."""

    def __init__(self, running: RunningPolicy, *, http: httpx.AsyncClient, clock: Callable[[], float]) -> None:
        self.running, self.clock = running, clock
        self.discovery = Discovery(http, clock)
        self.budget = ExchangeBudget(clock)
        self._secrets: dict[SecretSource, str] = {}
        self._transport: ExchangeTransport | None = None

    async def aclose(self) -> None:
        """Close the exchanges' connections (the app's end)."""
        if self._transport is not None:
            await self._transport.close()

    def _page(self, request: Request, failed: SignInFailed) -> Response:
        return message_page(request, status=failed.status, title=failed.title, sentence=failed.sentence)

    def _home(self, request: Request) -> Response:
        return RedirectResponse(f"{base_path(request)}/", status_code=303)

    def _client_secret(self, web: WebSettings) -> str | None:
        source = web.client_secret
        if source is None:
            return None
        if source not in self._secrets:  # read once (``ccweb serve`` has read it at start, to refuse a bad one)
            try:
                self._secrets[source] = read_secret(source, "web.client_secret").decode("utf-8")
            except (ConfigError, UnicodeDecodeError) as exc:
                problem = "; ".join(exc.messages) if isinstance(exc, ConfigError) else "it is not UTF-8 text"
                log.error("sign-in: web.client_secret cannot be used: %s", problem)  # noqa: TRY400 (no traceback)
                raise SignInFailed(503, "Sign-in is not available: this service cannot read its client secret; "
                                        "tell the ccweb operators.", reason="client_secret") from None
        return self._secrets[source]

    async def _client(self, request: Request, snapshot: Snapshot) -> tuple[WebSettings, WebClient] | Response:
        """The sign-in's client for ``snapshot``'s ``web:``; a message page where there is no sign-in."""
        web = snapshot.config.web
        if web.issuer is None or web.client_id is None:
            return message_page(request, status=404, title="No sign-in here",
                                sentence="This ccweb has no single sign-on configured; the page still shows how to "
                                         "set up your machine.")
        if "session" not in request.scope:
            return message_page(request, status=503, title="Sign-in is not available",
                                sentence="Sign-in needs the session secret, which this service did not read when it "
                                         "started; tell the ccweb operators (a restart reads it).")
        if self._transport is None:  # as ccweb.outbound's clients trust
            self._transport = ExchangeTransport(verify=httpx.create_ssl_context(trust_env=True))
        issuer = snapshot.config.issuer_named(web.issuer)
        endpoints = await self.discovery.endpoints(issuer)
        return web, WebClient(client_id=web.client_id, client_secret=self._client_secret(web), scopes=web.scopes,
                              endpoints=endpoints, issuer=issuer.name, verifier=snapshot.verifier,
                              transport=self._transport, compliance_fix=hook_token_answer, clock=self.clock)

    async def login(self, request: Request) -> Response:
        """``GET /auth/login``: off to the identity provider."""
        try:
            found = await self._client(request, self.running.current)
            if isinstance(found, Response):
                return found
            web, client = found
            answer: Response = await client.authorize_redirect(request, redirect_uri(web))
        except SignInFailed as failed:
            return self._page(request, failed)
        return answer

    async def callback(self, request: Request) -> Response:
        """``GET /auth/callback``: back from the identity provider."""
        snapshot = self.running.current  # one policy for the token, the deny list and the session
        try:
            found = await self._client(request, snapshot)
            if isinstance(found, Response):
                return found
            web, client = found
            signed = await self._finish(request, snapshot, web, client)
        except SignInFailed as failed:
            log.info("sign-in refused (%s): %s", failed.reason, printable(failed.sentence))
            return self._page(request, failed)
        session.begin(request, signed)  # a new session: nothing of the browser's before survives
        return self._home(request)

    async def _finish(self, request: Request, snapshot: Snapshot, web: WebSettings, client: WebClient) -> SignedIn:
        params = request.query_params
        state = params.get("state") or ""
        sign_in = await client.framework.get_state_data(request.session, state) if state else None
        if state:
            await client.framework.clear_state_data(request.session, state)  # used once, whatever comes next
        if sign_in is None or not isinstance(sign_in.get("nonce"), str):
            raise SignInFailed(400, NO_STATE, reason="state")
        if "error" in params:
            code = error_code(params.get("error"))
            raise SignInFailed(400, "The identity provider did not sign you in"
                                    + (f" ({code})" if code else "") + f". {START_AGAIN}", reason="idp_error")
        code = params.get("code")
        if not code:
            raise SignInFailed(400, f"The identity provider came back without a code. {START_AGAIN}", reason="code")
        if not usable_code(code):
            raise SignInFailed(400, "The identity provider came back with a code that cannot be one (longer than "
                                    f"2048 characters, or not printable ASCII). {START_AGAIN}", reason="code")
        self.budget.spend()
        token = await self._exchange(client, sign_in, code)
        try:
            verified = await client.parse_id_token(token, sign_in["nonce"])
        except InvalidToken as exc:
            raise SignInFailed(401, exc.detail, reason=exc.reason) from None
        except UpstreamUnavailable as exc:
            raise SignInFailed(503, exc.detail, reason=exc.reason) from None
        decision = snapshot.policy.decide(verified.issuer.name, verified.claims, None)
        if isinstance(decision, Suspended):
            session.end(request, None)  # whoever was signed in before in this browser too
            raise SignInFailed(403, suspension_sentence(decision.identity, verified, decision.entry.reason),
                               title="Access suspended", reason="suspended")
        if isinstance(decision, Distributed):  # a deny entry that cannot be told refuses, as the API does
            session.end(request, None)
            raise SignInFailed(403, distributed_sentence(decision, verified), title="Access refused",
                               reason="distributed_claim")
        now = self.clock()
        expires_at = min(verified.expires_at, now + web.session_max_seconds)
        if expires_at <= now:
            raise SignInFailed(401, "The OIDC token was refused: it has expired; sign in again.", reason="expired")
        kept = snapshot.policy.kept_claims(verified.issuer.name, verified.claims)
        if (problem := session.unholdable(kept)) is not None:
            raise SignInFailed(400, f"Your sign-in carries claims this page cannot hold ({problem}); ask the ccweb "
                                    "operators, who can see which claims the page keeps.", reason="claims")
        signed = SignedIn(issuer=verified.issuer.name, subject=verified.subject, claims=kept,
                          expires_at=expires_at, signed_in_at=now,
                          claims_digest=snapshot.policy.kept_claims_digest(verified.issuer.name),
                          csrf=secrets.token_urlsafe(32))
        size = session_bytes(signed)
        if size > MAX_SESSION_BYTES:
            raise SignInFailed(400, f"Your sign-in carries more than a browser keeps in a cookie ({size} bytes of "
                                    f"claims the policy reads, at most {MAX_SESSION_BYTES}); ask the ccweb operators, "
                                    "who can see which claims the rules read.", reason="too_large")
        log.info("signed in on the page: issuer %s, subject %s, token %s", verified.issuer.name,
                 printable(verified.subject), verified.sha256,
                 extra={"fields": {"issuer": verified.issuer.name, "subject": verified.subject,
                                   "token_sha256": verified.sha256}})
        return signed

    async def _exchange(self, client: WebClient, sign_in: dict[str, Any], code: str) -> dict[str, Any]:
        """The token endpoint's answer to ``code`` (and the sign-in's code_verifier and redirect URI); its status
        is judged first (``exchange.token_answer``), and anything its body makes authlib raise is a 502."""
        try:
            async with asyncio.timeout(EXCHANGE_SECONDS):
                token: object = await client.fetch_access_token(
                    redirect_uri=sign_in.get("redirect_uri"), code=code, code_verifier=sign_in.get("code_verifier"),
                    grant_type="authorization_code")
        except SignInFailed:
            raise
        except (TimeoutError, httpx.TimeoutException):
            raise SignInFailed(503, f"The identity provider did not answer within {EXCHANGE_SECONDS:g} seconds; "
                                    f"try again shortly. {START_AGAIN}", reason="token_endpoint") from None
        except httpx.HTTPError as exc:
            log.warning("sign-in: the token endpoint cannot be reached: %s", type(exc).__name__)
            raise SignInFailed(503, "ccweb cannot reach the identity provider to finish the sign-in; try again "
                                    "shortly, and tell the ccweb operators if it persists.",
                               reason="token_endpoint") from None
        except OAuthError as exc:
            error = error_code(exc.error)
            raise SignInFailed(400, "The identity provider refused to finish the sign-in"
                                    + (f" ({error})" if error else "") + f". {START_AGAIN}",
                               reason="code_refused") from None
        except Exception as exc:  # noqa: BLE001 (a body authlib cannot read: ValueError, OverflowError, RecursionError…)
            log.warning("sign-in: the token endpoint's answer cannot be used: %s", type(exc).__name__)
            token = None
        if not isinstance(token, dict):
            raise SignInFailed(502, "The identity provider answered the sign-in with something that is not a "
                                    "token response; tell the ccweb operators.", reason="token_endpoint")
        return token

    async def logout(self, request: Request) -> Response:
        """``POST /auth/logout`` (a GET is told to use the button)."""
        if request.method != "POST":
            answer = message_page(request, status=405, title="Sign out with the button",
                                  sentence="Signing out takes the page's Sign out button.")
            answer.headers["Allow"] = "POST"
            return answer
        own = self.running.current.config.web.public_url or str(request.base_url)
        origin = request.headers.get("origin")  # "null" from the page itself: browsers send that under no-referrer
        if origin is not None and origin != "null" and not same_origin(origin, own):
            return message_page(request, status=403, title="Not signed out",
                                sentence="That sign-out came from another site; nothing changed.")
        signed = session.signed_in(request, self.clock())
        if signed is None:
            return self._home(request)  # no one to sign out: the session (and cookie) stays as it is
        if not hmac.compare_digest(_form_field(await request.body(), "csrf").encode(), signed.csrf.encode()):
            return message_page(request, status=403, title="Not signed out",
                                sentence="That sign-out did not come from this page; you are still signed in. "
                                         "Use the page's Sign out button.")
        log.info("signed out on the page: issuer %s, subject %s", signed.issuer, printable(signed.subject))
        session.end(request, session.SIGNED_OUT)
        return self._home(request)


def _form_field(body: bytes, name: str) -> str:
    """The field ``name`` of a form's body (``application/x-www-form-urlencoded``), "" when it has none."""
    try:
        fields = parse_qsl(body[:MAX_LOGOUT_BODY_BYTES].decode("utf-8", "replace"), max_num_fields=8)
    except ValueError:  # more fields than any form of the page has
        return ""
    return next((value for key, value in fields if key == name), "")

