"""The identity provider of a login: its endpoints (from the issuer's OpenID configuration), renewing a login
with its refresh token, and revoking one.

Only the identity provider's ``invalid_grant`` or ``invalid_client`` ends a login; any other failure to renew
(the provider is down, busy or unreachable) is ``NotRenewed``, which says what to keep cached. The provider's
configuration comes only from the issuer URL the service's discovery names, never from a URL inside a token.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlencode

from ccweb_helper.client import HelperError, endpoint_problem, http_json, one_line
from ccweb_helper.discovery import LoginIssuer
from ccweb_helper.login_tokens import check_id_token, id_token_claims, new_entry, same_issuer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, NamedTuple

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


def identity_provider(login: LoginIssuer, seconds: float) -> IdentityProvider:
    """The issuer's OpenID configuration, checked to be that issuer's."""
    what = f"the identity provider {login.name!r}"
    url = login.issuer.rstrip("/") + "/.well-known/openid-configuration"
    answer = http_json(url, what, timeout=seconds)
    body = answer.body
    if answer.status != 200 or body is None:
        raise HelperError(f"{what} did not answer {url} with its OpenID configuration (HTTP {answer.status}).")
    if not same_issuer(body.get("issuer"), login.issuer):
        raise HelperError(f"the OpenID configuration at {url} is for another issuer; check the ccweb configuration.")

    def endpoint(name: str) -> str | None:  # shown to the person, opened in a browser, posted to: checked
        value = body.get(name)
        if not isinstance(value, str) or not value:
            return None
        problem = endpoint_problem(value)
        if problem is not None:
            raise HelperError(f"the {name} in the OpenID configuration of {what} {problem}; check the identity "
                              "provider's configuration.")
        return value

    token_endpoint = endpoint("token_endpoint")
    if token_endpoint is None:
        raise HelperError(f"the OpenID configuration of {what} names no token endpoint.")
    return IdentityProvider(
        login, endpoint("authorization_endpoint"), token_endpoint, endpoint("device_authorization_endpoint"),
        endpoint("revocation_endpoint"),
    )


def post_form(idp: IdentityProvider, url: str, form: Mapping[str, str], seconds: float) -> tuple[int, dict[str, Any]]:
    answer = http_json(
        url, idp.what, method="POST", timeout=seconds, body=urlencode(form).encode("ascii"),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    return answer.status, answer.body or {}


def oauth_error(body: Mapping[str, Any], status: int) -> str:
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


def refresh(login: LoginIssuer, entry: Mapping[str, Any], seconds: float, *, now: float) -> dict[str, Any] | None:
    """A renewed entry from the refresh token; None when the login is gone (no refresh token, or the identity
    provider says ``invalid_grant`` or ``invalid_client``); NotRenewed when it cannot be renewed just now.
    ``now``: the time the new ID token must not have expired by."""
    refresh_token = entry.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        return None
    try:
        idp = identity_provider(login, seconds)
        status, body = post_form(idp, idp.token_endpoint, {
            "grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": login.client_id,
        }, seconds)
    except HelperError as exc:  # unreachable, too slow, or not answering with its configuration
        raise NotRenewed(exc.message, entry) from None
    if status != 200:
        if status in (400, 401) and body.get("error") in GONE:
            return None
        raise NotRenewed(
            f"{idp.what} could not renew your login ({oauth_error(body, status)}); try again in a moment, or run "
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
        claims = check_id_token(body["id_token"], login, now=now, subject=subject)
    except HelperError as exc:
        raise NotRenewed(exc.message, kept) from None
    service = entry.get("service")  # the renewed login stays with the service it was made for
    return new_entry(login, body["id_token"], claims, kept["refresh_token"],
                     service if isinstance(service, str) else None)


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
        status, _ = post_form(idp, idp.revocation_endpoint, {
            "token": refresh_token, "token_type_hint": "refresh_token", "client_id": client_id,
        }, seconds)
    except HelperError:
        return False
    return status == 200
