"""Interactive login: authorization code + PKCE or the device flow, with a cache shared by parallel gits.

``token()`` is the last token source: a cached ID token (refreshed silently with the refresh token when it
is within a minute of expiry), else — when a person is at a terminal — a sign-in in the browser (a loopback
redirect to ``http://127.0.0.1:<port>/callback``, state, nonce and S256 PKCE) or with the device
authorization grant (RFC 8628) when there is no browser. The ID token is what the ccweb service receives:
its ``aud`` is the login client id. The helper checks ``iss``, ``aud``/``azp``, ``nonce`` and ``exp`` of
the payload; the service verifies the signature. The identity provider's configuration comes only from the
issuer URL the service's discovery names, never from a URL inside a token. No token, code, verifier or
refresh token is ever printed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import socketserver
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler
from typing import IO, Any, NamedTuple
from urllib.parse import parse_qs, urlencode, urlsplit

from ccweb_helper import discovery
from ccweb_helper.cache import Cache, cache_dir
from ccweb_helper.client import HelperError, ServiceURL, http_json, one_line
from ccweb_helper.discovery import LoginIssuer

EXPIRY_MARGIN = 60  # seconds: a token this close to its expiry is refreshed first
LOGIN_SECONDS = 300  # how long a sign-in may take in the browser or on another device
MAX_TOKEN_CHARS = 64 * 1024
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
EXPIRED = "your login has expired; run `ccweb-helper login`."
CACHE_VERSION = 1


class IdentityProvider(NamedTuple):
    """The endpoints of an issuer, from ``{issuer}/.well-known/openid-configuration``."""

    login: LoginIssuer
    authorization_endpoint: str | None
    token_endpoint: str
    device_endpoint: str | None
    revocation_endpoint: str | None

    @property
    def what(self) -> str:
        return f"the identity provider {self.login.name!r}"


# ---------------------------------------------------------------------------------------------------- decisions


def can_prompt(env: Mapping[str, str]) -> bool:
    """Whether a person is at a terminal to sign in (``CCWEB_LOGIN=never`` says no)."""
    if env.get("CCWEB_LOGIN", "").strip().lower() == "never":
        return False
    with contextlib.suppress(AttributeError, ValueError, OSError):
        if sys.stderr.isatty():
            return True
    if os.name != "posix":
        return False
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def prefers_device(env: Mapping[str, str], platform: str = sys.platform) -> bool:
    """No browser here: over SSH, or on Linux/BSD without a display; a ``BROWSER`` setting always wins."""
    if env.get("BROWSER", "").strip():
        return False
    if env.get("SSH_CONNECTION", "").strip() or env.get("SSH_TTY", "").strip():
        return True
    unix = platform.startswith(("linux", "freebsd", "openbsd", "netbsd", "dragonfly"))
    return unix and not (env.get("DISPLAY", "").strip() or env.get("WAYLAND_DISPLAY", "").strip())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier (86 characters) and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)
    return verifier, _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _same_issuer(a: object, b: str) -> bool:
    return isinstance(a, str) and a.rstrip("/") == b.rstrip("/")


def id_token_claims(id_token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (the service verifies the signature); ValueError when it is not one."""
    parts = id_token.split(".")
    if len(parts) != 3 or len(id_token) > MAX_TOKEN_CHARS:
        raise ValueError("not a JWT")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    if not isinstance(claims, dict):
        raise ValueError("not a JWT")  # noqa: TRY004 (one error type for every malformed token)
    return claims


def check_id_token(
    id_token: object, login: LoginIssuer, *, now: float, nonce: str | None = None, subject: str | None = None,
) -> dict[str, Any]:
    """The claims of an ID token the identity provider just sent, after the checks a client must make."""
    what = f"the identity provider {login.name!r}"
    if not isinstance(id_token, str) or not id_token.isascii() or any(c.isspace() for c in id_token):
        raise HelperError(f"{what} sent no ID token; check that the login scopes include 'openid'.")
    try:
        claims = id_token_claims(id_token)
    except ValueError:
        raise HelperError(f"{what} sent an ID token that is not a JWT.") from None
    if not _same_issuer(claims.get("iss"), login.issuer):
        raise HelperError(f"{what} sent an ID token of another issuer; the sign-in was not used.")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    if login.client_id not in audiences or claims.get("azp", login.client_id) != login.client_id:
        raise HelperError(f"{what} sent an ID token for another client; the sign-in was not used.")
    if nonce is not None and not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
        raise HelperError(f"{what} sent an ID token for another sign-in (nonce mismatch); it was not used.")
    if subject is not None and claims.get("sub") != subject:
        raise HelperError(f"{what} renewed the login for another account; sign in again with `ccweb-helper login`.")
    expiry = claims.get("exp")
    if isinstance(expiry, bool) or not isinstance(expiry, (int, float)) or expiry <= now:
        raise HelperError(f"{what} sent an ID token that has already expired; check this computer's clock.")
    return claims


def entry_key(login: LoginIssuer) -> str:
    return f"{login.issuer.rstrip('/')} {login.client_id}"


def usable(entry: object, login: LoginIssuer, now: float) -> str | None:
    """The cached ID token of ``entry`` if it belongs to ``login`` and is valid for another minute."""
    if not isinstance(entry, dict):
        return None
    id_token, expiry = entry.get("id_token"), entry.get("expires_at")
    if not (_same_issuer(entry.get("issuer"), login.issuer) and entry.get("client_id") == login.client_id):
        return None
    if not isinstance(id_token, str) or isinstance(expiry, bool) or not isinstance(expiry, (int, float)):
        return None
    return id_token if expiry - EXPIRY_MARGIN > now else None


def logins(document: Mapping[str, Any]) -> dict[str, Any]:
    found = document.get("logins") if document.get("version") == CACHE_VERSION else None
    return dict(found) if isinstance(found, dict) else {}


def new_entry(login: LoginIssuer, id_token: str, claims: Mapping[str, Any], refresh_token: object) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": login.name, "issuer": login.issuer, "client_id": login.client_id, "id_token": id_token,
        "expires_at": int(claims["exp"]),
    }
    if isinstance(refresh_token, str) and refresh_token:
        entry["refresh_token"] = refresh_token
    return entry


# ------------------------------------------------------------------------------------------------ the token source


def token(service: ServiceURL, env: Mapping[str, str], seconds: float, *, stderr: IO[str],
          interactive: bool) -> str | None:
    """A valid ID token for one of the service's login issuers: cached, refreshed, or from a new sign-in.

    None when there is none and ``interactive`` is False (or the service offers no login); HelperError when
    the login has expired and cannot be renewed without a person.
    """
    issuers = discovery.fetch(service, seconds).login
    if not issuers:
        return None
    store = Cache(cache_dir(env))
    for login in issuers:  # the common case needs no lock: files are replaced atomically
        found = usable(logins(store.read()).get(entry_key(login)), login, time.time())
        if found is not None:
            return found
    with locked(store, stderr):
        document = store.read()
        entries = logins(document)
        expired = False
        for login in issuers:
            key = entry_key(login)
            entry = entries.get(key)
            found = usable(entry, login, time.time())
            if found is not None:
                return found  # another process signed in or refreshed while we waited
            if not isinstance(entry, dict):
                continue
            renewed = refresh(login, entry, seconds)
            if renewed is not None:
                entries[key] = renewed
                save(store, entries)
                return str(renewed["id_token"])
            expired = True
            del entries[key]
            save(store, entries)
        if not interactive:
            if expired:
                raise HelperError(EXPIRED)
            return None
        if expired:
            stderr.write("ccweb: your login has expired; signing in again.\n")
        entry = sign_in(issuers[0], env, seconds, stderr=stderr)
        entries[entry_key(issuers[0])] = entry
        save(store, entries)
        return str(entry["id_token"])


@contextlib.contextmanager
def locked(store: Cache, stderr: IO[str]) -> Iterator[None]:
    def waiting() -> None:
        stderr.write("ccweb: waiting for another ccweb-helper to finish signing in…\n")
        stderr.flush()

    stack = contextlib.ExitStack()
    try:
        stack.enter_context(store.lock(on_wait=waiting))
    except OSError as exc:
        raise HelperError(
            f"cannot use the login cache in {store.directory} ({exc.strerror or exc}); set CCWEB_CACHE_DIR to a "
            "directory of your own."
        ) from None
    with stack:
        yield


def save(store: Cache, entries: Mapping[str, Any]) -> None:
    try:
        store.write({"version": CACHE_VERSION, "logins": dict(entries)})
    except OSError as exc:
        raise HelperError(
            f"cannot write the login cache {store.path} ({exc.strerror or exc}); set CCWEB_CACHE_DIR to a "
            "directory of your own."
        ) from None


# ---------------------------------------------------------------------------------------- the identity provider


def identity_provider(login: LoginIssuer, seconds: float) -> IdentityProvider:
    """The issuer's OpenID configuration, checked to be that issuer's."""
    what = f"the identity provider {login.name!r}"
    url = login.issuer.rstrip("/") + "/.well-known/openid-configuration"
    answer = http_json(url, what, timeout=seconds)
    body = answer.body
    if answer.status != 200 or body is None:
        raise HelperError(f"{what} did not answer {url} with its OpenID configuration (HTTP {answer.status}).")
    if not _same_issuer(body.get("issuer"), login.issuer):
        raise HelperError(f"the OpenID configuration at {url} is for another issuer; check the ccweb configuration.")

    def endpoint(name: str) -> str | None:
        value = body.get(name)
        return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None

    token_endpoint = endpoint("token_endpoint")
    if token_endpoint is None:
        raise HelperError(f"the OpenID configuration of {what} names no token endpoint.")
    return IdentityProvider(
        login, endpoint("authorization_endpoint"), token_endpoint, endpoint("device_authorization_endpoint"),
        endpoint("revocation_endpoint"),
    )


def _post_form(idp: IdentityProvider, url: str, form: Mapping[str, str], seconds: float) -> tuple[int, dict[str, Any]]:
    answer = http_json(
        url, idp.what, method="POST", timeout=seconds, body=urlencode(form).encode("ascii"),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    return answer.status, answer.body or {}


def _oauth_error(body: Mapping[str, Any], status: int) -> str:
    error = body.get("error")
    text = error if isinstance(error, str) and error else f"HTTP {status}"
    description = body.get("error_description")
    if isinstance(description, str) and description:
        text += f": {description}"
    return one_line(text, 200)


def refresh(login: LoginIssuer, entry: Mapping[str, Any], seconds: float) -> dict[str, Any] | None:
    """A renewed entry from the refresh token; None when the login cannot be renewed without a person."""
    refresh_token = entry.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        return None
    idp = identity_provider(login, seconds)
    status, body = _post_form(idp, idp.token_endpoint, {
        "grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": login.client_id,
    }, seconds)
    if status != 200:
        if 400 <= status < 500:
            return None  # invalid_grant and kin: the refresh token is expired, revoked or already used
        raise HelperError(f"{idp.what} could not renew your login ({_oauth_error(body, status)}); try again.")
    if "id_token" not in body:
        return None
    old = entry.get("id_token")
    subject = None
    with contextlib.suppress(ValueError):
        subject = id_token_claims(old).get("sub") if isinstance(old, str) else None
    claims = check_id_token(body["id_token"], login, now=time.time(), subject=subject)
    return new_entry(login, body["id_token"], claims, body.get("refresh_token") or refresh_token)


def revoke(entry: Mapping[str, Any], seconds: float) -> bool:
    """Best effort: revoke the entry's refresh token where the issuer advertises a revocation endpoint."""
    refresh_token, issuer, client_id = (entry.get(k) for k in ("refresh_token", "issuer", "client_id"))
    if not (isinstance(refresh_token, str) and isinstance(issuer, str) and isinstance(client_id, str)):
        return False
    name = entry.get("name")
    login = LoginIssuer(name if isinstance(name, str) else issuer, issuer, client_id, ())
    try:
        idp = identity_provider(login, seconds)
        if idp.revocation_endpoint is None:
            return False
        status, _ = _post_form(idp, idp.revocation_endpoint, {
            "token": refresh_token, "token_type_hint": "refresh_token", "client_id": client_id,
        }, seconds)
    except HelperError:
        return False
    return status == 200


# ------------------------------------------------------------------------------------------------------ sign-in


def sign_in(login: LoginIssuer, env: Mapping[str, str], seconds: float, *, stderr: IO[str],
            mode: str = "auto") -> dict[str, Any]:
    """Sign in interactively (``mode``: auto, browser or device) and return the cache entry."""
    idp = identity_provider(login, seconds)
    browser, device = idp.authorization_endpoint, idp.device_endpoint
    if browser is None and device is None:
        raise HelperError(f"{idp.what} offers neither browser nor device sign-in to ccweb-helper.")
    nonce: str | None = None
    id_token: object = None
    refresh_token: object = None
    wants_device = mode == "device" or (mode == "auto" and prefers_device(env))
    if wants_device and device is None and mode == "device":
        stderr.write(f"ccweb: {idp.what} offers no device sign-in; using the browser instead.\n")
    if browser is not None and (device is None or not wants_device):
        answer = _browser_flow(idp, browser, seconds, stderr, fallback=mode == "auto" and device is not None)
        if answer is not None:
            id_token, refresh_token, nonce = answer
    if nonce is None and device is not None:  # chosen, the only one, or no browser could be started
        id_token, refresh_token = _device_flow(idp, device, seconds, stderr)
    claims = check_id_token(id_token, login, now=time.time(), nonce=nonce)
    who = claims.get("email") or claims.get("sub")
    stderr.write(f"ccweb: signed in to {login.name} as {one_line(str(who), 200)}.\n")
    stderr.flush()
    return new_entry(login, str(id_token), claims, refresh_token)


def _tokens(idp: IdentityProvider, status: int, body: Mapping[str, Any]) -> tuple[object, object]:
    if status != 200:
        raise HelperError(f"{idp.what} refused the sign-in ({_oauth_error(body, status)}).")
    return body.get("id_token"), body.get("refresh_token")


def _device_flow(idp: IdentityProvider, endpoint: str, seconds: float, stderr: IO[str]) -> tuple[object, object]:
    status, body = _post_form(idp, endpoint, {
        "client_id": idp.login.client_id, "scope": " ".join(idp.login.scopes),
    }, seconds)
    device_code, user_code, uri = (body.get(k) for k in ("device_code", "user_code", "verification_uri"))
    if status != 200 or not (isinstance(device_code, str) and device_code and user_code and uri):
        raise HelperError(f"{idp.what} refused to start a device sign-in ({_oauth_error(body, status)}).")
    interval = body.get("interval")
    wait = float(interval) if isinstance(interval, (int, float)) and 0 < interval <= 60 else 5.0
    expires = body.get("expires_in")
    deadline = time.monotonic() + (float(expires) if isinstance(expires, (int, float)) and expires > 0 else 600.0)
    stderr.write(
        f"ccweb: to sign in to {idp.login.name}, open {one_line(str(uri), 500)} on any device and enter the code "
        f"{one_line(str(user_code), 40)}\n"
    )
    complete = body.get("verification_uri_complete")
    if isinstance(complete, str) and complete.startswith(("https://", "http://")):
        stderr.write(f"       (or open {one_line(complete, 600)})\n")
    stderr.flush()
    while time.monotonic() < deadline:
        time.sleep(wait)
        status, body = _post_form(idp, idp.token_endpoint, {
            "grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": idp.login.client_id,
        }, seconds)
        error = body.get("error")
        if status == 200:
            return _tokens(idp, status, body)
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            wait += 5
            continue
        if error == "access_denied":
            raise HelperError(f"the sign-in at {idp.login.name} was declined.")
        if error == "expired_token":
            break
        return _tokens(idp, status, body)
    raise HelperError(f"the sign-in code for {idp.login.name} expired before it was used; run `ccweb-helper login`.")


class _CallbackServer(socketserver.TCPServer):
    """The loopback redirect target: remembers the first answer that carries this sign-in's state."""

    allow_reuse_address = False
    timeout = 0.25

    def __init__(self, state: str) -> None:
        super().__init__(("127.0.0.1", 0), _CallbackHandler)
        self.state = state
        self.result: dict[str, str] | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])


PAGE = (
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>ccweb</title></head>"
    "<body style=\"font-family:sans-serif;margin:3em\"><h1>{title}</h1><p>{text}</p></body></html>"
)


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/callback":
            self._page(404, "Not found", "This is ccweb-helper's sign-in address.")
            return
        query = {k: v[0] for k, v in parse_qs(parts.query).items() if v}
        state = query.get("state", "")
        if self.server.result is not None or not hmac.compare_digest(state.encode(), self.server.state.encode()):
            self._page(400, "Unexpected sign-in", "This is not the sign-in ccweb-helper is waiting for.")
            return
        self.server.result = query
        if "code" in query:
            self._page(200, "Signed in", "ccweb-helper has your sign-in. You can close this window.")
        else:
            self._page(400, "Sign-in failed", "The identity provider did not sign you in; see your terminal.")

    def _page(self, status: int, title: str, text: str) -> None:
        content = PAGE.format(title=title, text=text).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        """Never log: the request line carries the authorization code."""


@contextlib.contextmanager
def _stdout_is_stderr() -> Iterator[None]:
    """A browser started now inherits stderr as its stdout: git reads the helper's stdout until it closes."""
    if os.name != "posix":
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _open_browser(url: str, outcome: list[bool]) -> None:
    import webbrowser  # noqa: PLC0415 (only for a browser sign-in)

    try:
        outcome.append(webbrowser.open(url))
    except Exception:  # noqa: BLE001 (any failure to start a browser means: use the printed address)
        outcome.append(False)


def _browser_flow(idp: IdentityProvider, endpoint: str, seconds: float, stderr: IO[str], *,
                  fallback: bool) -> tuple[object, object, str] | None:
    """(ID token, refresh token, nonce) from the authorization code flow; None if no browser started and
    ``fallback`` allows the device flow instead."""
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier, challenge = pkce_pair()
    with _CallbackServer(state) as server:
        redirect_uri = f"http://127.0.0.1:{server.port}/callback"
        query = urlencode({
            "response_type": "code", "client_id": idp.login.client_id, "redirect_uri": redirect_uri,
            "scope": " ".join(idp.login.scopes), "state": state, "nonce": nonce,
            "code_challenge": challenge, "code_challenge_method": "S256",
        })
        url = endpoint + ("&" if "?" in endpoint else "?") + query
        stderr.write(
            f"ccweb: sign in to {idp.login.name} in your browser; if none opens, open this address:\n{url}\n"
        )
        stderr.flush()
        outcome: list[bool] = []
        deadline = time.monotonic() + LOGIN_SECONDS
        with _stdout_is_stderr():
            threading.Thread(target=_open_browser, args=(url, outcome), daemon=True).start()
            while server.result is None and time.monotonic() < deadline:
                server.handle_request()
                if fallback and outcome == [False] and server.result is None:
                    stderr.write("ccweb: no browser could be started; signing in with a code instead.\n")
                    return None
        result = server.result
    if result is None:
        raise HelperError(f"the sign-in at {idp.login.name} did not finish within {LOGIN_SECONDS // 60} minutes.")
    if "code" not in result:
        raise HelperError(f"{idp.what} did not sign you in ({_oauth_error(result, 400)}).")
    status, body = _post_form(idp, idp.token_endpoint, {
        "grant_type": "authorization_code", "code": result["code"], "redirect_uri": redirect_uri,
        "client_id": idp.login.client_id, "code_verifier": verifier,
    }, seconds)
    id_token, refresh_token = _tokens(idp, status, body)
    return id_token, refresh_token, nonce
