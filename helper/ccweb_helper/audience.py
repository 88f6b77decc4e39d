"""Which service a token is for, as far as its audience says: read from the token without verifying it.

A ccweb service is known by its address (``service_key``): scheme, lower-case host, the port unless it is the
scheme's default, and the path without a trailing slash (``https://ccweb.example.com``). A login is kept for
that address, and an audience that is an address (a URL: a scheme and ``://``) names the one service that may
receive a token of that audience:

- the helper asks a CI platform for a URL audience only on behalf of the service at that address
  (``ci``): another service that publishes the company's address as its CI audience gets nothing;
- a token whose audiences are all addresses, none of them the service's, is not sent to the service
  (``refuse_foreign``): ``CCWEB_TOKEN`` or ``CCWEB_TOKEN_FILE`` made for one service stays with it.

A plain name (``ccweb``) names no address, so every service that publishes it can be sent such a token; that is
why the documentation recommends the service's URL as its CI audience. Only the payload is read here (the
service verifies the signature), within ``MAX_TOKEN_CHARS``, through ``client.parse_json``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ccweb_helper.client import HelperError, one_line, parse_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ccweb_helper.client import ServiceURL

MAX_TOKEN_CHARS = 64 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
_STANDARD_ALPHABET = str.maketrans("-_", "+/")
FOREIGN_TOKEN = ("{source} holds a token issued for another service's address ({audiences}), not for the ccweb "
                 "service at {service}, so it was not sent.")


def _key(scheme: str, host: str, port: int | None, path: str) -> str:
    host = host.lower()
    if ":" in host:
        host = f"[{host}]"
    shown_port = "" if port in (None, DEFAULT_PORTS.get(scheme)) else f":{port}"
    return f"{scheme}://{host}{shown_port}{path.rstrip('/')}"


def service_key(service: ServiceURL) -> str:
    """The service's address as one string: scheme, lower-case host, the port unless it is the scheme's
    default, and the path without a trailing slash (``https://ccweb.example.com``)."""
    return _key(service.scheme.lower(), service.host, service.port, service.prefix)


def is_url(audience: str) -> bool:
    """Whether an audience is an address (``https://…``, ``api://…``): a scheme, then ``://``."""
    scheme, separator, _ = audience.strip().partition("://")
    return (bool(separator) and scheme[:1].isalpha() and scheme.isascii()
            and all(c.isalnum() or c in "+.-" for c in scheme))


def names(audience: str, service: str) -> bool:
    """Whether the URL ``audience`` is the address of ``service`` (a ``service_key``), written any way
    ``service_key`` reads alike (case of scheme and host, a default port, a trailing slash)."""
    try:
        parts = urlsplit(audience.strip())
        port = parts.port
    except ValueError:  # a port that is not a number, a bracket out of place
        return False
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc or "?" in audience or "#" in audience:
        return False
    return _key(scheme, parts.hostname, port, parts.path) == service


def payload(token: str) -> dict[str, Any]:
    """The claims of a compact JWT, unverified (the service verifies the signature); ValueError when
    ``token`` is not one or its payload is not a JSON object."""
    import binascii  # noqa: PLC0415 (only when a token is read: a fraction of what base64 costs to import)

    parts = token.split(".")
    body = parts[1] if len(parts) == 3 and len(token) <= MAX_TOKEN_CHARS else ""
    if not (body.isascii() and body.replace("-", "").replace("_", "").isalnum()):
        raise ValueError("not a JWT")
    try:
        raw = binascii.a2b_base64(body.translate(_STANDARD_ALPHABET) + "=" * (-len(body) % 4))
    except binascii.Error:
        raise ValueError("not a JWT") from None
    claims = parse_json(raw)  # ValueError when it is not JSON, or nested too deeply
    if not isinstance(claims, dict):
        raise ValueError("not a JWT")  # noqa: TRY004 (one error type for every malformed token)
    return claims


def foreign(token: str, service: str) -> list[str] | None:
    """The token's audiences when every one is an address and none is ``service``'s (a token made for another
    service); None when it may be sent: an audience is a plain name or this service's address, or the token
    says nothing readable (the service refuses what it cannot verify)."""
    try:
        audience = payload(token).get("aud")
    except ValueError:
        return None
    found = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    audiences = [a for a in found if isinstance(a, str)]
    if not audiences or not all(is_url(a) for a in audiences) or any(names(a, service) for a in audiences):
        return None
    return audiences


def refuse_foreign(token: str, service: str, source: str) -> str:
    """``token``, or HelperError when it was made for other services' addresses only (``foreign``); the
    sentence names ``source`` and the audiences, shown escaped, never the token."""
    audiences = foreign(token, service)
    if audiences is not None:
        shown = one_line(", ".join(repr(a) for a in audiences), 300)
        raise HelperError(FOREIGN_TOKEN.format(source=source, audiences=shown, service=service))
    return token
