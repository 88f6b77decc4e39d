"""Interactive login for the sandbox's development issuer: the flows ``ccweb-helper login`` and the web page speak.

Two clients: the public ``ccweb-cli`` (authorization code with PKCE, the device authorization grant of
RFC 8628, refresh tokens with rotation) and the confidential ``ccweb-web`` (authorization code with PKCE and
a client secret, sent as HTTP Basic or in the form). Both: PKCE S256 only, a loopback ``http`` redirect only;
the ID token's ``aud`` is the client the code was issued to. Instead of a password, one sign-in page lets you
pick a demo user. Loopback only, in memory, for trying ccweb without a real identity provider.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ccweb_helper.hosts import is_loopback

CLIENT_ID = "ccweb-cli"
WEB_CLIENT_ID = "ccweb-web"
CODE_TTL = 120
DEVICE_TTL = 600
DEVICE_INTERVAL = 1
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True)
class Client:
    """A registered client. ``secret``: a confidential client's (None: a public client, known by its id alone);
    ``offline``: may use the device grant and is given refresh tokens (a command-line client)."""

    client_id: str
    purpose: str  # what the sign-in page says it signs you in to
    secret: str | None = None
    offline: bool = False


def sandbox_clients(web_client_secret: str) -> dict[str, Client]:
    """The sandbox's two clients: ``ccweb-cli`` (public, for ``ccweb-helper login``) and ``ccweb-web``
    (confidential, for the web page's sign-in)."""
    return {
        CLIENT_ID: Client(CLIENT_ID, "ccweb-helper", offline=True),
        WEB_CLIENT_ID: Client(WEB_CLIENT_ID, "the ccweb web page", secret=web_client_secret),
    }


@dataclass
class _Grant:
    user: str
    client_id: str
    nonce: str | None = None
    redirect_uri: str = ""
    challenge: str = ""
    expires: float = 0.0


@dataclass
class _Device:
    user_code: str
    expires: float
    user: str | None = None
    denied: bool = False
    last_poll: float = 0.0


@dataclass
class _Store:
    codes: dict[str, _Grant] = field(default_factory=dict)
    devices: dict[str, _Device] = field(default_factory=dict)
    refresh: dict[str, tuple[str, str]] = field(default_factory=dict)  # refresh token -> (user, client id)
    lock: threading.Lock = field(default_factory=threading.Lock)


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (capped), without a multipart parser."""
    body = await request.body()
    if len(body) > 64 * 1024:
        return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={"Cache-Control": "no-store"})


def _invalid_client(description: str) -> JSONResponse:
    answer = _oauth_error("invalid_client", description, 401)
    answer.headers["WWW-Authenticate"] = 'Basic realm="ccweb sandbox"'
    return answer


def _basic(header: str) -> tuple[str, tuple[str, ...]] | None:
    """(client id, the secret as it may be meant) from an ``Authorization: Basic`` value. RFC 6749 2.3.1 has
    each part form-urlencoded first; many clients (authlib's among them) do not: the secret is either."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:
        return None
    client_id, colon, secret = decoded.partition(":")
    return (unquote_plus(client_id), (secret, unquote_plus(secret))) if colon else None


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _loopback_redirect(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (validates the port)
    except ValueError:
        return False
    return parts.scheme == "http" and bool(parts.hostname) and is_loopback(parts.hostname or "") and not parts.fragment


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:40em;margin:3em auto'><h1>{html.escape(title)}</h1>"
        f"{body}</body></html>",
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


class DevLogin:
    """The login endpoints of the development issuer; ``mint(user, audience, nonce)`` signs the ID tokens."""

    def __init__(self, issuer_url: str, users: dict[str, dict[str, Any]],
                 mint: Callable[[str, str, str | None], str], clients: dict[str, Client], *,
                 id_token_ttl: int = 3600) -> None:
        self.issuer_url = issuer_url
        self.users = users
        self.mint = mint
        self.clients = clients
        self.id_token_ttl = id_token_ttl
        self.store = _Store()

    def metadata(self) -> dict[str, Any]:
        base = self.issuer_url
        return {
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "device_authorization_endpoint": f"{base}/device/code",
            "revocation_endpoint": f"{base}/revoke",
            "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile", "groups", "offline_access"],
        }

    def routes(self) -> list[Route]:
        return [
            Route("/authorize", self.authorize, methods=["GET", "POST"]),
            Route("/device/code", self.device_code, methods=["POST"]),
            Route("/device", self.device_page, methods=["GET", "POST"]),
            Route("/token", self.token, methods=["POST"]),
            Route("/revoke", self.revoke, methods=["POST"]),
        ]

    def _user_buttons(self, hidden: dict[str, str]) -> str:
        fields = "".join(
            f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v)}'>" for k, v in hidden.items()
        )
        buttons = "".join(
            f"<button name='user' value='{html.escape(user)}' style='margin:.3em'>{html.escape(user)} "
            f"({html.escape(', '.join(info['groups']) or 'no groups')})</button>"
            for user, info in self.users.items()
        )
        return f"{fields}<p>Sign in as a demo user:</p><p>{buttons}</p>"

    async def authorize(self, request: Request) -> Response:
        params: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            params = await _form(request)
        redirect_uri = params.get("redirect_uri", "")
        client = self.clients.get(params.get("client_id", ""))
        if client is None or not _loopback_redirect(redirect_uri):
            return _page("Sign-in refused", "<p>Unknown client, or a redirect that is not to a loopback address.</p>")
        state = params.get("state", "")

        def back(**answer: str) -> Response:
            separator = "&" if "?" in redirect_uri else "?"
            return RedirectResponse(f"{redirect_uri}{separator}{urlencode({**answer, 'state': state})}", 303)

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if params.get("code_challenge_method") != "S256" or len(params.get("code_challenge", "")) < 43:
            return back(error="invalid_request", error_description="PKCE with S256 is required")
        user = params.get("user", "")
        if request.method == "GET" or user not in self.users:
            keep = {k: params.get(k, "") for k in ("client_id", "redirect_uri", "response_type", "state",
                                                    "nonce", "code_challenge", "code_challenge_method", "scope")}
            return _page("ccweb sandbox sign-in", f"<p>Signing in to {html.escape(client.purpose)}.</p>"
                                                  f"<form method='post'>{self._user_buttons(keep)}</form>")
        code = secrets.token_urlsafe(32)
        with self.store.lock:
            self.store.codes[code] = _Grant(user, client.client_id, params.get("nonce") or None, redirect_uri,
                                            params["code_challenge"], time.time() + CODE_TTL)
        return back(code=code)

    async def device_code(self, request: Request) -> Response:
        form = await _form(request)
        client = self.clients.get(form.get("client_id", ""))
        if client is None:
            return _oauth_error("invalid_client", "unknown client", 401)
        if not client.offline:
            return _oauth_error("unauthorized_client", "this client may not use the device grant")
        device = secrets.token_urlsafe(32)
        user_code = "-".join("".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(4)) for _ in range(2))
        with self.store.lock:
            self.store.devices[device] = _Device(user_code, time.time() + DEVICE_TTL)
        verification = f"{self.issuer_url}/device"
        return JSONResponse({
            "device_code": device, "user_code": user_code, "verification_uri": verification,
            "verification_uri_complete": f"{verification}?{urlencode({'user_code': user_code})}",
            "expires_in": DEVICE_TTL, "interval": DEVICE_INTERVAL,
        }, headers={"Cache-Control": "no-store"})

    async def device_page(self, request: Request) -> Response:
        params: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            params = await _form(request)
        user_code = params.get("user_code", "").strip().upper()
        user = params.get("user", "")
        with self.store.lock:
            device = next((d for d in self.store.devices.values()
                           if d.user_code == user_code and d.expires > time.time()), None)
            if device is not None and request.method == "POST" and user in self.users:
                device.user = user
                return _page("Signed in", f"<p>Signed in as {html.escape(user)}. Return to your terminal.</p>")
        prompt = "" if device is not None or not user_code else "<p>That code is unknown or has expired.</p>"
        code_field = (f"<label>Code shown in your terminal: <input name='user_code' "
                      f"value='{html.escape(user_code)}'></label>")
        return _page("ccweb sandbox device sign-in",
                     f"{prompt}<form method='post'>{code_field}{self._user_buttons({})}</form>")

    def _tokens(self, client: Client, user: str, nonce: str | None) -> JSONResponse:
        answer: dict[str, Any] = {
            "access_token": secrets.token_urlsafe(32), "token_type": "Bearer", "expires_in": self.id_token_ttl,
            "id_token": self.mint(user, client.client_id, nonce), "scope": "openid email profile groups",
        }
        if client.offline:
            refresh = secrets.token_urlsafe(32)
            with self.store.lock:
                self.store.refresh[refresh] = (user, client.client_id)
            answer.update(refresh_token=refresh, scope="openid email profile groups offline_access")
        return JSONResponse(answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _authenticate(self, request: Request, form: dict[str, str]) -> Client | JSONResponse:
        """The client a token request comes from: a confidential one by its secret (HTTP Basic, or
        ``client_secret`` in the form; never both), compared in constant time; a public one by its id alone."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        presented: tuple[str, ...] = () if secret is None else (secret,)
        header = request.headers.get("authorization")
        if header is not None:
            basic = _basic(header)
            if basic is None or secret is not None or client_id not in (None, basic[0]):
                return _invalid_client("client authentication failed")
            client_id, presented = basic
        client = self.clients.get(client_id or "")
        if client is None:
            return _invalid_client("unknown client")
        if client.secret is None:
            return client if not presented else _invalid_client("a public client has no secret")
        expected = client.secret.encode()
        if not any(hmac.compare_digest(candidate.encode(), expected) for candidate in presented):
            return _invalid_client("client authentication failed")
        return client

    async def token(self, request: Request) -> Response:
        form = await _form(request)
        client = self._authenticate(request, form)
        if isinstance(client, JSONResponse):
            return client
        grant_type = form.get("grant_type", "")
        if grant_type in (DEVICE_GRANT, "refresh_token") and not client.offline:
            return _oauth_error("unauthorized_client", f"this client may not use {grant_type!r}")
        now = time.time()
        with self.store.lock:
            if grant_type == "authorization_code":
                grant = self.store.codes.pop(form.get("code", ""), None)
                if (grant is None or grant.expires < now or grant.redirect_uri != form.get("redirect_uri")
                        or grant.client_id != client.client_id):
                    return _oauth_error("invalid_grant", "the code is unknown, used or expired")
                if _s256(form.get("code_verifier", "")) != grant.challenge:
                    return _oauth_error("invalid_grant", "PKCE verification failed")
                user, nonce = grant.user, grant.nonce
            elif grant_type == DEVICE_GRANT:
                key = form.get("device_code", "")
                device = self.store.devices.get(key)
                if device is None or device.expires < now:
                    return _oauth_error("expired_token", "the device code has expired")
                if device.user is None:
                    too_fast = now - device.last_poll < DEVICE_INTERVAL * 0.8
                    device.last_poll = now
                    return _oauth_error("slow_down" if too_fast else "authorization_pending", "waiting for sign-in")
                del self.store.devices[key]
                user, nonce = device.user, None
            elif grant_type == "refresh_token":
                found = self.store.refresh.pop(form.get("refresh_token", ""), None)
                if found is None or found[1] != client.client_id:
                    return _oauth_error("invalid_grant", "the refresh token is unknown or was used")
                user, nonce = found[0], None
            else:
                return _oauth_error("unsupported_grant_type", f"{grant_type!r} is not supported")
        return self._tokens(client, user, nonce)

    async def revoke(self, request: Request) -> Response:
        form = await _form(request)
        with self.store.lock:
            self.store.refresh.pop(form.get("token", ""), None)
        return Response(status_code=200)
