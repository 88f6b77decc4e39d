"""What the service tells the helper (``GET /.well-known/ccweb``): the audience CI tokens must carry, its extra
git endpoints, and the issuers that allow interactive login. Fetched at most once per process."""

from __future__ import annotations

from ccweb_helper.client import HelperError, request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple

    from ccweb_helper.client import ServiceURL

    class LoginIssuer(NamedTuple):
        """An issuer people sign in to interactively: its URL, the public client id and the scopes to ask for."""

        name: str
        issuer: str
        client_id: str
        scopes: tuple[str, ...]

    class Discovery(NamedTuple):
        audience: str
        git_endpoints: tuple[str, ...]  # host[:port], lower case
        login: tuple[LoginIssuer, ...]

else:  # the same tuples without importing typing at run time
    from collections import namedtuple

    LoginIssuer = namedtuple("LoginIssuer", "name issuer client_id scopes")
    Discovery = namedtuple("Discovery", "audience git_endpoints login")


_fetched: dict[str, Discovery] = {}


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def cached() -> tuple[Discovery, ...]:
    """What this process has already been told, without asking again (for hints that must not do I/O)."""
    return tuple(_fetched.values())


def fetch(service: ServiceURL, seconds: float) -> Discovery:
    """The service's discovery document; HelperError when it cannot be had or is not ccweb's."""
    known = _fetched.get(service.url)
    if known is not None:
        return known
    found = request(service, "GET", "/.well-known/ccweb", timeout=seconds)
    body = found.body
    endpoints = body.get("git_endpoints") if found.status == 200 else None
    if not isinstance(endpoints, list):
        raise HelperError(
            f"{service.url}/.well-known/ccweb did not list git endpoints (HTTP {found.status}); check that "
            "CCWEB_URL (or git config ccweb.url) names the ccweb service."
        )
    login = []
    offered = body.get("login")
    for item in offered if isinstance(offered, list) else []:
        if not isinstance(item, dict):
            continue
        name, issuer, client_id = (item.get(k) for k in ("name", "issuer", "client_id"))
        if isinstance(name, str) and isinstance(issuer, str) and isinstance(client_id, str) and issuer and client_id:
            login.append(LoginIssuer(name, issuer.rstrip("/"), client_id, _strings(item.get("scopes")) or ("openid",)))
    audience = body.get("audience")
    discovered = Discovery(
        audience=audience if isinstance(audience, str) else "",
        git_endpoints=tuple(
            str(e.get("host", "")).lower() for e in endpoints if isinstance(e, dict) and e.get("host")
        ),
        login=tuple(login),
    )
    _fetched[service.url] = discovered
    return discovered
