"""The interactive login's pure parts: ID tokens, the login cache's entries that hold them, its time limits.

The helper reads an ID token's payload without verifying its signature (the ccweb service verifies it): it
checks ``iss``, ``aud``/``azp``, ``nonce`` and ``exp`` of a token the identity provider just sent, and uses a
cached one only while it belongs to the login, still looks like one JWT and is valid for a margin longer.
The time is always passed in.

A login belongs to the ccweb service it was made for (``audience.service_key``): its cache entry is keyed by
that service, the issuer and the client id, and is used — ID token and refresh token alike — only for requests
to that service. Another service whose discovery names the same issuer and client never receives it; an entry
without a service (written before logins were kept per service) belongs to none.
"""

from __future__ import annotations

import math

from ccweb_helper.audience import payload
from ccweb_helper.ci import is_jwt
from ccweb_helper.client import HelperError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from ccweb_helper.discovery import LoginIssuer

EXPIRY_MARGIN = 60  # seconds: a token this close to its expiry is refreshed first
LAST_MARGIN = 5  # seconds: a token is still used this close to its expiry when it cannot be renewed just now
LOGIN_SECONDS = 300  # how long a sign-in may take in the browser or on another device
LATEST_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z: a later "exp" is not a time
CACHE_VERSION = 1


def same_issuer(a: object, b: str) -> bool:
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
    if not is_jwt(id_token):
        raise ValueError("not a JWT")
    return payload(id_token)


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
    if not same_issuer(claims.get("iss"), login.issuer):
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


def entry_key(login: LoginIssuer, service: str) -> str:
    """Where the login to ``login`` made for ``service`` (an ``audience.service_key``) is kept in the cache."""
    return f"{service} {login.issuer.rstrip('/')} {login.client_id}"


def belongs(entry: object, login: LoginIssuer, service: str) -> bool:
    """Whether a cache entry is the login to ``login`` made for ``service`` (never an entry without one)."""
    return (isinstance(entry, dict) and entry.get("service") == service
            and same_issuer(entry.get("issuer"), login.issuer) and entry.get("client_id") == login.client_id)


def others(entries: Mapping[str, Any], issuers: Sequence[LoginIssuer], service: str) -> list[str]:
    """The services other than ``service`` the person signed in to one of ``issuers`` for, sorted ("" for a
    login cached before logins were kept per service, which belongs to none)."""
    found: set[str] = set()
    for e in entries.values():
        if not isinstance(e, dict) or e.get("service") == service:
            continue
        if any(same_issuer(e.get("issuer"), i.issuer) and e.get("client_id") == i.client_id for i in issuers):
            found.add(e["service"] if isinstance(e.get("service"), str) else "")
    return sorted(found)


def elsewhere(entries: Mapping[str, Any], issuers: Sequence[LoginIssuer], service: str) -> bool:
    """Whether the person signed in to one of ``issuers`` for another service (or for no service: a cache
    written before logins were kept per service), but not for ``service``."""
    return bool(others(entries, issuers, service))


def usable(entry: object, login: LoginIssuer, service: str, now: float, margin: float = EXPIRY_MARGIN) -> str | None:
    """The cached ID token of ``entry`` if it belongs to ``login`` and ``service``, still looks like one JWT (a
    hand-edited cache must not put anything else into a header) and is valid for another ``margin`` seconds."""
    if not isinstance(entry, dict) or not belongs(entry, login, service):
        return None
    id_token, expiry = entry.get("id_token"), epoch(entry.get("expires_at"))
    if not isinstance(id_token, str) or not is_jwt(id_token) or expiry is None:
        return None
    return id_token if expiry - margin > now else None


def logins(document: Mapping[str, Any]) -> dict[str, Any]:
    found = document.get("logins") if document.get("version") == CACHE_VERSION else None
    return dict(found) if isinstance(found, dict) else {}


def new_entry(login: LoginIssuer, id_token: str, claims: Mapping[str, Any], refresh_token: object,
              service: str | None = None) -> dict[str, Any]:
    """A cache entry; ``service`` (an ``audience.service_key``) is set by whoever keeps it for a service."""
    entry: dict[str, Any] = {
        "name": login.name, "issuer": login.issuer, "client_id": login.client_id, "id_token": id_token,
        "expires_at": int(claims["exp"]),
    }
    if service is not None:
        entry["service"] = service
    if isinstance(refresh_token, str) and refresh_token:
        entry["refresh_token"] = refresh_token
    return entry
