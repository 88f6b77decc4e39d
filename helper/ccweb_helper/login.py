"""Interactive login: authorization code + PKCE or the device flow, with a cache shared by parallel gits.

``token()`` is the last token source: a cached ID token (refreshed silently with the refresh token when it
is within a minute of expiry; only the identity provider's ``invalid_grant`` or ``invalid_client`` ends a
login, and while the provider is down the cached token serves until it expires), else — when a person is at
a terminal — a sign-in in the browser (a loopback redirect to ``http://127.0.0.1:<port>/callback``, served
by ``callback``; state, nonce and S256 PKCE) or with the device authorization grant (RFC 8628) when there
is no browser. Either sign-in may take ``LOGIN_SECONDS``. The ID token is what the ccweb service receives:
its ``aud`` is the login client id. The helper checks ``iss``, ``aud``/``azp``, ``nonce`` and ``exp`` of
the payload; the service verifies the signature. The identity provider's configuration comes only from the
issuer URL the service's discovery names, never from a URL inside a token. No token, code, verifier or
refresh token is ever printed.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from urllib.parse import urlencode

from ccweb_helper import discovery
from ccweb_helper.cache import Cache, cache_dir
from ccweb_helper.ci import is_jwt
from ccweb_helper.client import HelperError, http_json, one_line
from ccweb_helper.discovery import LoginIssuer

# A cached token is the common case and needs none of base64, hashlib, hmac or secrets (imported where used).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
    from typing import IO, Any, NamedTuple

    from ccweb_helper.client import ServiceURL
    from ccweb_helper.discovery import Discovery

EXPIRY_MARGIN = 60  # seconds: a token this close to its expiry is refreshed first
LAST_MARGIN = 5  # seconds: a token is still used this close to its expiry when it cannot be renewed just now
LOGIN_SECONDS = 300  # how long a sign-in may take in the browser or on another device
LOCK_SECONDS = LOGIN_SECONDS + 60  # how long to wait for another helper's sign-in before giving up
LATEST_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z: a later "exp" is not a time
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
EXPIRED = "your login has expired; run `ccweb-helper login`."
DEVICE_EXPIRED = "the sign-in code for {name} expired before it was used{why}; run `ccweb-helper login`."
CACHE_VERSION = 1


if TYPE_CHECKING:

    class _Endpoints(NamedTuple):
        login: LoginIssuer
        authorization_endpoint: str | None
        token_endpoint: str
        device_endpoint: str | None
        revocation_endpoint: str | None

else:  # the same tuple without importing typing at run time
    from collections import namedtuple

    _Endpoints = namedtuple(
        "_Endpoints", "login authorization_endpoint token_endpoint device_endpoint revocation_endpoint"
    )


class IdentityProvider(_Endpoints):
    """The endpoints of an issuer, from ``{issuer}/.well-known/openid-configuration``."""

    __slots__ = ()

    @property
    def what(self) -> str:
        return f"the identity provider {self.login.name!r}"


# ---------------------------------------------------------------------------------------------------- decisions


def can_prompt(env: Mapping[str, str], stderr: IO[str] | None = None) -> bool:
    """Whether a person is at a terminal to sign in: stderr, where the sign-in is explained, is a terminal,
    and neither ``CCWEB_LOGIN=never`` nor git's ``GIT_TERMINAL_PROMPT=0`` (set by ``go mod download``, IDEs
    and scripts that must never wait for a person) says no."""
    if env.get("CCWEB_LOGIN", "").strip().lower() == "never":
        return False
    if env.get("GIT_TERMINAL_PROMPT", "").strip().lower() in ("0", "false", "no", "off"):
        return False
    stream = sys.stderr if stderr is None else stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no stderr at all, or a closed one
        return False


def prefers_device(env: Mapping[str, str], platform: str = sys.platform) -> bool:
    """No browser here: over SSH, or on Linux/BSD without a display; a ``BROWSER`` setting always wins."""
    if env.get("BROWSER", "").strip():
        return False
    if env.get("SSH_CONNECTION", "").strip() or env.get("SSH_TTY", "").strip():
        return True
    unix = platform.startswith(("linux", "freebsd", "openbsd", "netbsd", "dragonfly"))
    return unix and not (env.get("DISPLAY", "").strip() or env.get("WAYLAND_DISPLAY", "").strip())


def _b64url(data: bytes) -> str:
    import base64  # noqa: PLC0415

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier (86 characters) and its S256 challenge."""
    import hashlib  # noqa: PLC0415
    import secrets  # noqa: PLC0415

    verifier = secrets.token_urlsafe(64)
    return verifier, _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _same_issuer(a: object, b: str) -> bool:
    return isinstance(a, str) and a.rstrip("/") == b.rstrip("/")


def epoch(value: object) -> float | None:
    """``value`` as seconds since 1970 when it is a time a calendar can show; None for anything else
    (a string, a bool, NaN, infinity, 1e300)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) and not 0 <= value <= LATEST_EPOCH:  # float() of a huge int would overflow
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and 0 <= seconds <= LATEST_EPOCH else None


def id_token_claims(id_token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (the service verifies the signature); ValueError when it is not one."""
    import base64  # noqa: PLC0415

    if not is_jwt(id_token):
        raise ValueError("not a JWT")
    parts = id_token.split(".")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    if not isinstance(claims, dict):
        raise ValueError("not a JWT")  # noqa: TRY004 (one error type for every malformed token)
    return claims


def check_id_token(
    id_token: object, login: LoginIssuer, *, now: float, nonce: str | None = None, subject: str | None = None,
) -> dict[str, Any]:
    """The claims of an ID token the identity provider just sent, after the checks a client must make."""
    import hmac  # noqa: PLC0415

    what = f"the identity provider {login.name!r}"
    if not isinstance(id_token, str) or not id_token:
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
    if isinstance(expiry, bool) or not isinstance(expiry, (int, float)):
        raise HelperError(f"{what} sent an ID token without an expiry time (exp); the sign-in was not used.")
    if epoch(expiry) is None:
        raise HelperError(f"{what} sent an ID token whose expiry (exp) is not a time; the sign-in was not used.")
    if expiry <= now:
        raise HelperError(f"{what} sent an ID token that has already expired; check this computer's clock.")
    return claims


def entry_key(login: LoginIssuer) -> str:
    return f"{login.issuer.rstrip('/')} {login.client_id}"


def usable(entry: object, login: LoginIssuer, now: float, margin: float = EXPIRY_MARGIN) -> str | None:
    """The cached ID token of ``entry`` if it belongs to ``login``, still looks like one JWT (a hand-edited
    cache must not put anything else into a header) and is valid for another ``margin`` seconds."""
    if not isinstance(entry, dict):
        return None
    id_token, expiry = entry.get("id_token"), epoch(entry.get("expires_at"))
    if not (_same_issuer(entry.get("issuer"), login.issuer) and entry.get("client_id") == login.client_id):
        return None
    if not isinstance(id_token, str) or not is_jwt(id_token) or expiry is None:
        return None
    return id_token if expiry - margin > now else None


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
          interactive: bool, cached_discovery: bool = False, memory: MutableMapping[str, Discovery] | None = None,
          clock: Callable[[], float] = time.time) -> str | None:
    """A valid ID token for one of the service's login issuers: cached, refreshed, or from a new sign-in.

    None when there is none and ``interactive`` is False (or the service offers no login); HelperError when
    the login has expired and cannot be renewed without a person, or cannot be renewed just now.
    ``cached_discovery``, ``memory`` and ``clock`` are ``discovery.fetch``'s: where the service's document
    may come from.
    """
    remember = env if cached_discovery else None
    issuers = discovery.fetch(service, seconds, remember, memory=memory, clock=clock).login
    if not issuers:
        return None
    return token_for(issuers, Cache(cache_dir(env)), env, seconds, stderr=stderr, interactive=interactive)


def token_for(issuers: Sequence[LoginIssuer], store: Cache, env: Mapping[str, str], seconds: float, *,
              stderr: IO[str], interactive: bool) -> str | None:
    """``token`` for these issuers and this cache.

    Only the identity provider's ``invalid_grant`` or ``invalid_client`` ends a login; when renewal fails for
    any other reason (the provider is down, busy or unreachable) the refresh token is kept, and the cached ID
    token is used while it is valid at all.
    """
    for login in issuers:  # the common case needs no lock: files are replaced atomically
        found = usable(logins(store.read()).get(entry_key(login)), login, time.time())
        if found is not None:
            return found
    with locked(store, stderr):
        entries = logins(store.read())
        expired = False
        for login in issuers:
            key = entry_key(login)
            entry = entries.get(key)
            found = usable(entry, login, time.time())
            if found is not None:
                return found  # another process signed in or refreshed while we waited
            if not isinstance(entry, dict):
                continue
            try:
                renewed = refresh(login, entry, seconds)
            except NotRenewed as exc:
                if exc.keep != entry:  # a rotated refresh token, without an ID token
                    entries[key] = exc.keep
                    save(store, entries)
                last = usable(exc.keep, login, time.time(), margin=LAST_MARGIN)
                if last is not None:
                    return last
                raise
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
def locked(store: Cache, stderr: IO[str], seconds: float = LOCK_SECONDS) -> Iterator[None]:
    """Hold the login cache's lock; wait at most ``seconds`` for another helper's sign-in to finish."""
    def waiting() -> None:
        stderr.write("ccweb: waiting for another ccweb-helper to finish signing in…\n")
        stderr.flush()

    stack = contextlib.ExitStack()
    try:
        stack.enter_context(store.lock(on_wait=waiting, timeout=seconds))
    except TimeoutError:
        raise HelperError(
            f"another ccweb-helper has held the login cache lock {store.lock_path} for over "
            f"{seconds:.0f} seconds; finish or cancel its sign-in, then try again."
        ) from None
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


class NotRenewed(HelperError):
    """The login could not be renewed just now, but it is not gone: ``keep`` is the entry to keep cached."""

    def __init__(self, message: str, keep: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.keep = dict(keep)


GONE = ("invalid_grant", "invalid_client")  # expired, revoked or already used; or the client is no more


def refresh(login: LoginIssuer, entry: Mapping[str, Any], seconds: float) -> dict[str, Any] | None:
    """A renewed entry from the refresh token; None when the login is gone (no refresh token, or the identity
    provider says ``invalid_grant`` or ``invalid_client``); NotRenewed when it cannot be renewed just now."""
    refresh_token = entry.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        return None
    try:
        idp = identity_provider(login, seconds)
        status, body = _post_form(idp, idp.token_endpoint, {
            "grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": login.client_id,
        }, seconds)
    except HelperError as exc:  # unreachable, too slow, or not answering with its configuration
        raise NotRenewed(exc.message, entry) from None
    if status != 200:
        if status in (400, 401) and body.get("error") in GONE:
            return None
        raise NotRenewed(
            f"{idp.what} could not renew your login ({_oauth_error(body, status)}); try again in a moment, or run "
            "`ccweb-helper login`.", entry,
        )
    kept = dict(entry)
    rotated = body.get("refresh_token")
    if isinstance(rotated, str) and rotated:
        kept["refresh_token"] = rotated  # the old one may be spent already
    if "id_token" not in body:
        raise NotRenewed(
            f"{idp.what} renewed your login without an ID token; check that the login scopes include 'openid', "
            "or run `ccweb-helper login`.", kept,
        )
    old = entry.get("id_token")
    subject = None
    with contextlib.suppress(ValueError):
        subject = id_token_claims(old).get("sub") if isinstance(old, str) else None
    try:
        claims = check_id_token(body["id_token"], login, now=time.time(), subject=subject)
    except HelperError as exc:
        raise NotRenewed(exc.message, kept) from None
    return new_entry(login, body["id_token"], claims, kept["refresh_token"])


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
        answer = _browser_flow(idp, browser, seconds, stderr, fallback=mode == "auto" and device is not None,
                               port=redirect_port(env))
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
    lifetime = float(expires) if isinstance(expires, (int, float)) and 0 < expires < math.inf else 600.0
    deadline = time.monotonic() + min(lifetime, LOGIN_SECONDS)
    stderr.write(
        f"ccweb: to sign in to {idp.login.name}, open {one_line(str(uri), 500)} on any device and enter the code "
        f"{one_line(str(user_code), 40)}\n"
    )
    complete = body.get("verification_uri_complete")
    if isinstance(complete, str) and complete.startswith(("https://", "http://")):
        stderr.write(f"       (or open {one_line(complete, 600)})\n")
    stderr.flush()
    problem = ""  # the last answer that was no answer: a passing outage must not end the sign-in
    while time.monotonic() < deadline:
        time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
        try:
            status, body = _post_form(idp, idp.token_endpoint, {
                "grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": idp.login.client_id,
            }, seconds)
        except HelperError as exc:  # too slow or unreachable this time; the code stays good
            problem = exc.message.rstrip(".")
            continue
        error = body.get("error")
        if status == 200 and body:
            return _tokens(idp, status, body)
        if error == "authorization_pending":
            continue
        if error == "slow_down" or status == 429:
            wait = min(wait + 5, 60.0)
            continue
        if error == "access_denied":
            raise HelperError(f"the sign-in at {idp.login.name} was declined.")
        if error == "expired_token":
            raise HelperError(DEVICE_EXPIRED.format(name=idp.login.name, why=""))
        if status >= 500 or status == 200 or not (isinstance(error, str) and error):  # not the OAuth server
            problem = f"{idp.what} answered {_oauth_error(body, status)}"
            continue
        return _tokens(idp, status, body)
    why = f" (last: {problem})" if problem else ""
    if lifetime > LOGIN_SECONDS:
        raise HelperError(f"the sign-in at {idp.login.name} did not finish within {LOGIN_SECONDS // 60} minutes{why}.")
    raise HelperError(DEVICE_EXPIRED.format(name=idp.login.name, why=why))


def redirect_port(env: Mapping[str, str]) -> int:
    """``CCWEB_LOGIN_PORT``: a fixed port for the loopback redirect, for identity providers that match
    redirect URIs port and all; 0 (the default) lets the system pick a free one (RFC 8252)."""
    text = env.get("CCWEB_LOGIN_PORT", "").strip()
    if not text:
        return 0
    if not (text.isascii() and text.isdigit() and 1024 <= int(text) <= 65535):
        raise HelperError(f"CCWEB_LOGIN_PORT must be a port number from 1024 to 65535, not {one_line(text, 40)!r}.")
    return int(text)


def _browser_flow(idp: IdentityProvider, endpoint: str, seconds: float, stderr: IO[str], *,
                  fallback: bool, port: int = 0) -> tuple[object, object, str] | None:
    """(ID token, refresh token, nonce) from the authorization code flow; None if no browser started and
    ``fallback`` allows the device flow instead."""
    import secrets  # noqa: PLC0415

    from ccweb_helper import callback  # noqa: PLC0415 (an HTTP server only for a browser sign-in)

    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier, challenge = pkce_pair()
    try:
        server = callback.CallbackServer(state, port)
    except OSError as exc:
        raise HelperError(
            f"cannot listen on 127.0.0.1:{port} for the sign-in's redirect ({exc.strerror or exc}); free that "
            "port or change CCWEB_LOGIN_PORT."
        ) from None
    with server:
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
        deadline = time.monotonic() + LOGIN_SECONDS
        with callback.browser_started(url) as outcome:
            result = server.wait(deadline, give_up=lambda: fallback and outcome == [False])
        if result is None and fallback and outcome == [False]:
            stderr.write("ccweb: no browser could be started; signing in with a code instead.\n")
            return None
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
