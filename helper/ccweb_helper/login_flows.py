"""Signing in interactively: the authorization code flow with PKCE in a browser, or the device authorization
grant (RFC 8628) where there is no browser.

The browser sign-in redirects to ``http://127.0.0.1:<port>/callback``, served by ``callback``, with state,
nonce and an S256 PKCE challenge; with ``reauthenticate`` it asks the identity provider to have the person sign
in again even in a live session (``prompt=login``; the device grant has no such parameter). Either sign-in may
take ``LOGIN_SECONDS``. No token, code or verifier is ever printed.
"""

from __future__ import annotations

import math
import sys
import time
from urllib.parse import urlencode

from ccweb_helper.client import MAX_ENDPOINT_CHARACTERS, HelperError, one_line
from ccweb_helper.login_idp import IdentityProvider, identity_provider, oauth_error, post_form
from ccweb_helper.login_tokens import LOGIN_SECONDS, check_id_token, new_entry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import IO, Any

    from ccweb_helper.discovery import LoginIssuer

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_EXPIRED = "the sign-in code for {name} expired before it was used{why}; run `ccweb-helper login`."


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



def sign_in(login: LoginIssuer, env: Mapping[str, str], seconds: float, *, stderr: IO[str],
            mode: str = "auto", clock: Callable[[], float] = time.time, reauthenticate: bool = False) -> dict[str, Any]:
    """Sign in interactively (``mode``: auto, browser or device) and return the cache entry; ``clock`` tells
    the time the new ID token must not have expired by; ``reauthenticate`` sends ``prompt=login`` in a
    browser sign-in, so that a live session at the identity provider does not complete it unasked."""
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
                               port=redirect_port(env), reauthenticate=reauthenticate)
        if answer is not None:
            id_token, refresh_token, nonce = answer
    if nonce is None and device is not None:  # chosen, the only one, or no browser could be started
        id_token, refresh_token = _device_flow(idp, device, seconds, stderr)
    claims = check_id_token(id_token, login, now=clock(), nonce=nonce)
    who = claims.get("email") or claims.get("sub")
    stderr.write(f"ccweb: signed in to {login.name} as {one_line(str(who), 200)}.\n")
    stderr.flush()
    return new_entry(login, str(id_token), claims, refresh_token)


def _tokens(idp: IdentityProvider, status: int, body: Mapping[str, Any]) -> tuple[object, object]:
    if status != 200:
        raise HelperError(f"{idp.what} refused the sign-in ({oauth_error(body, status)}).")
    return body.get("id_token"), body.get("refresh_token")


def _device_flow(idp: IdentityProvider, endpoint: str, seconds: float, stderr: IO[str]) -> tuple[object, object]:
    status, body = post_form(idp, endpoint, {
        "client_id": idp.login.client_id, "scope": " ".join(idp.login.scopes),
    }, seconds)
    device_code, user_code, uri = (body.get(k) for k in ("device_code", "user_code", "verification_uri"))
    if status != 200 or not (isinstance(device_code, str) and device_code and user_code and uri):
        raise HelperError(f"{idp.what} refused to start a device sign-in ({oauth_error(body, status)}).")
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
            status, body = post_form(idp, idp.token_endpoint, {
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
            problem = f"{idp.what} answered {oauth_error(body, status)}"
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
                  fallback: bool, port: int = 0, reauthenticate: bool = False) -> tuple[object, object, str] | None:
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
            **({"prompt": "login"} if reauthenticate else {}),
        })
        url = endpoint + ("&" if "?" in endpoint else "?") + query
        stderr.write(
            f"ccweb: sign in to {idp.login.name} in your browser; if none opens, open this address:\n"
            f"{one_line(url, 4 * MAX_ENDPOINT_CHARACTERS)}\n"
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
        raise HelperError(f"{idp.what} did not sign you in ({oauth_error(result, 400)}).")
    status, body = post_form(idp, idp.token_endpoint, {
        "grant_type": "authorization_code", "code": result["code"], "redirect_uri": redirect_uri,
        "client_id": idp.login.client_id, "code_verifier": verifier,
    }, seconds)
    id_token, refresh_token = _tokens(idp, status, body)
    return id_token, refresh_token, nonce
