"""HTTP/1.1 to the ccweb service and its peers: one deadline per exchange, size-capped answers, one-line errors.

Every failure becomes a ``HelperError`` whose message is a sentence for the person at the terminal. No
message ever contains the token: it travels only in the ``Authorization`` header. The timeout bounds the whole
exchange (connection, TLS handshake, request, answer), however slowly the peer sends; the answer is read by
``http11``; its JSON is parsed by ``parse_json`` only, which refuses what is nested too deeply; whatever a peer
said is shown through ``one_line``, which escapes control characters.

The connection itself (direct, or through a proxy named by ``HTTPS_PROXY``, ``ALL_PROXY``…; TLS) is
``transport``'s, imported with the first request; ``typing`` is imported only by type checkers.
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import urlsplit

from ccweb_helper.hosts import ascii_host, is_loopback
from ccweb_helper.http11 import MAX_RESPONSE_BYTES, BadAnswer, Deadline, digits

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, NamedTuple

MAX_JSON_DEPTH = 32  # arrays and objects within each other; the deepest answer the helper reads has 3
USER_AGENT = "ccweb-helper"


class HelperError(Exception):
    """A failure to explain on stderr: ``message`` is a sentence the user can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


if TYPE_CHECKING:

    class Response(NamedTuple):
        status: int
        headers: dict[str, str]  # names in lower case
        body: Any  # the JSON object, or None

    class ServiceURL(NamedTuple):
        url: str
        scheme: str
        host: str
        port: int | None
        prefix: str

else:  # the same tuples without importing typing at run time
    from collections import namedtuple

    Response = namedtuple("Response", "status headers body")
    ServiceURL = namedtuple("ServiceURL", "url scheme host port prefix")


USERINFO = ("{source} must be an https:// URL of the ccweb service without a user name or password (not shown "
            "here); set it to the service's address alone, e.g. https://ccweb.example.com.")
_ALONE = "set it to the service's address alone, e.g. https://ccweb.example.com."


def checked_service_url(url: str, source: str) -> str:
    """``url`` without the spaces around it, once it is fit to name a ccweb service; HelperError, naming
    ``source`` and never repeating the URL (it may hold a password), when it is not.

    Refused: a space or control character anywhere (``urlsplit`` silently drops a tab, CR or LF, so
    ``https:/<TAB>/user:password@host`` would pass for a URL whose "path" holds the password); a user name or
    password, even an empty one (any ``@`` before the path, or one ``urlsplit`` finds); a query or fragment
    (requests would go to the service's root, and the fragment would be shown in messages); what ``urlsplit``
    cannot read (a bad port, an unclosed ``[``). Every service URL passes through here: ``parse_service_url``
    and ``sources.without_userinfo``.
    """
    text = url.strip()
    if any(c.isspace() or not c.isprintable() for c in text):
        raise HelperError(f"{source} holds a space, line break or other control character (not shown here); {_ALONE}")
    authority = text.split("://", 1)[-1]
    for end in "/?#":
        authority = authority.split(end, 1)[0]
    if "@" in authority:
        raise HelperError(USERINFO.format(source=source))
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a port that is not one)
    except ValueError:
        raise HelperError(f"{source} is not a URL (not shown here); {_ALONE}") from None
    if parts.username is not None or parts.password is not None:
        raise HelperError(USERINFO.format(source=source))
    if "?" in text or "#" in text:
        raise HelperError(f"{source} must be the ccweb service's address without a query (?) or fragment (#); "
                          f"{_ALONE}")
    return text


def parse_service_url(url: str, source: str) -> ServiceURL:
    """Check a configured service URL (``checked_service_url``): https, or http to a loopback address only.
    No refusal repeats the URL."""
    text = checked_service_url(url, source).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HelperError(f"{source} must be an https:// URL of the ccweb service (not shown here); {_ALONE}")
    if parts.scheme == "http" and not loopback(parts.hostname):
        raise HelperError(
            f"{source} is a plain http:// address: ccweb-helper sends your token only over https (plain http is "
            "allowed to loopback addresses only); use the service's https:// URL."
        )
    return ServiceURL(text, parts.scheme, parts.hostname, parts.port, parts.path)


MAX_ENDPOINT_CHARACTERS = 2048


def endpoint_problem(url: str) -> str | None:
    """Why ``url``, an endpoint an identity provider's OpenID configuration names, is not one to use or show,
    as the end of a sentence ("is not …"); None when it is fine (pure).

    It must be printable ASCII without spaces (so it can be shown on a terminal as it is: no escape sequence),
    at most ``MAX_ENDPOINT_CHARACTERS`` long, https (http only to a loopback address), with a host and without
    a user name, password or fragment. A query is allowed, as OpenID Connect Discovery allows it.
    """
    if not (url.isascii() and url.isprintable()) or " " in url:
        return "is not printable ASCII without spaces"
    if len(url) > MAX_ENDPOINT_CHARACTERS:
        return f"is longer than {MAX_ENDPOINT_CHARACTERS} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not one)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an https:// URL"
    if parts.scheme == "http" and not loopback(parts.hostname):
        return "is plain http:// to a host other than loopback"
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        return "holds a user name or password"
    if "#" in url:
        return "has a fragment (#)"
    return None


SERVICE_HINT = "CCWEB_URL or git config ccweb.url"


def loopback(hostname: str) -> bool:
    """``hosts.is_loopback`` of the host's ASCII form (``hosts.ascii_host``), the one the helper connects to:
    ``127.1``, and 127.0.0.1 written with full-width digits and dots, are 127.0.0.1 there. False for a host that
    has no ASCII form."""
    try:
        return is_loopback(ascii_host(hostname))
    except ValueError:
        return False


def request(
    service: ServiceURL, method: str, path: str, *, timeout: float, token: str | None = None,
    body: dict[str, Any] | None = None, env: Mapping[str, str] | None = None,
) -> Response:
    """One exchange with the ccweb service; its answer must be a JSON object."""
    headers = {}
    payload = None
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    answer = http_json(service.url + path, "the ccweb service", method=method, timeout=timeout, headers=headers,
                       body=payload, where=service.url, hint=SERVICE_HINT, env=env)
    if answer.body is None:
        raise HelperError(
            f"{service.url} answered HTTP {answer.status} with something that is not ccweb's JSON; check that "
            "CCWEB_URL (or git config ccweb.url) names the ccweb service."
        )
    return answer


def http_json(
    url: str, what: str, *, method: str = "GET", timeout: float, headers: dict[str, str] | None = None,
    body: bytes | None = None, where: str | None = None, hint: str = "", env: Mapping[str, str] | None = None,
) -> Response:
    """One HTTP exchange: with the ccweb service, an identity provider, a CI platform's token service.

    ``url`` must be https, or http to a loopback address; ``what`` names the party in error sentences
    ("the GitHub Actions token service"), ``where`` its address (default: the URL's origin) and ``hint``
    the setting to check when it cannot be reached. ``timeout`` bounds the whole exchange. The answer is
    size-capped; ``body`` of the Response is the parsed JSON object, or None when the answer was not a JSON
    object (``parse_json``). No header value (a token) ever appears in an error. An https request goes through
    the proxy the environment (``env``, default ``os.environ``) names, as curl would (``proxy.choose``); a
    proxy's failure or an unusable proxy setting is a sentence naming the proxy and its variable.
    """
    if any(c.isspace() or not c.isprintable() for c in url):  # urlsplit would drop a tab, CR or LF unseen
        raise HelperError(f"the address of {what} holds a space or control character.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise HelperError(f"the address of {what} is not a URL.") from None
    if "@" in parts.netloc:  # an empty user name is one too, though urlsplit makes it falsy
        raise HelperError(f"the address of {what} holds a user name or password (not shown here).")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HelperError(f"the address of {what} is not an https:// URL.")
    from ccweb_helper import transport  # noqa: PLC0415

    origin = where or f"{parts.scheme}://{parts.netloc}"
    try:  # the one form of the host that the proxy decision, the connection, CONNECT and TLS all use
        host = ascii_host(parts.hostname)
    except UnicodeError:  # a name that cannot be an international domain name
        raise _unresolvable(parts.hostname, what, origin, hint) from None
    except ValueError:
        raise HelperError(f"the host {parts.hostname!r} in the address of {what} ends in a number but is not an IP "
                          "address; write an IP address as four numbers (e.g. 192.0.2.10).") from None
    if not transport.plain_host(host):
        raise HelperError(f"the host {parts.hostname!r} in the address of {what} holds characters a host name cannot "
                          "hold.")
    if parts.scheme == "http" and not is_loopback(host):
        raise HelperError(f"{what} is at a plain http:// address; ccweb-helper speaks to it only over https.")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    sent = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
    if not all(_header_value(value) for value in sent.values()):
        # Refused before anything is sent, and never quoted: the value is a token.
        raise HelperError(
            f"a credential to send to {what} holds characters an HTTP header cannot carry (a line break?); "
            "check where it comes from."
        )
    import socket  # noqa: PLC0415 (the interpreter starts faster without it: store and erase never need it)

    try:
        proxy = transport.proxy_for(parts.scheme, host, port, os.environ if env is None else env)
    except transport.ProxyFailure as exc:  # a setting that cannot be used: named, its value not repeated
        raise HelperError(exc.message) from None
    via = f" through the proxy {proxy.url} ({proxy.variable})" if proxy is not None else ""
    try:
        status, answer_headers, raw = transport.exchange(
            parts.scheme, host, port, method=method, target=target, headers=sent, body=body,
            deadline=Deadline(timeout), proxy=proxy)
    except transport.ProxyFailure as exc:
        raise HelperError(exc.message) from None
    except BadAnswer as exc:
        check = f"; check {hint}, and that it is running" if hint else ""
        raise HelperError(f"cannot reach {what} at {origin}{via} ({exc.kind}){check}.") from None
    except socket.gaierror:
        raise _unresolvable(parts.hostname, what, origin, hint) from None
    except OSError as exc:
        ssl = sys.modules.get("ssl")  # loaded for https URLs only
        if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
            raise HelperError(
                f"the TLS certificate of {what} at {origin} could not be verified{via} ({exc.verify_message}); if "
                "your company uses its own certificate authority, point SSL_CERT_FILE at its bundle."
            ) from None
        if isinstance(exc, (socket.timeout, TimeoutError)):
            raise HelperError(
                f"{what} at {origin} did not answer within {timeout:g} seconds{via}; try again, or raise "
                "CCWEB_TIMEOUT."
            ) from None
        reason = exc.strerror or type(exc).__name__
        check = f"; check {hint}, and that it is running" if hint else ""
        if proxy is not None and ssl is not None and isinstance(exc, ssl.SSLError):  # what the tunnel passed on
            raise HelperError(
                f"cannot reach {what} at {origin}{via}: the TLS handshake through it failed ({exc.reason or reason}); "
                f"check that the proxy passes https through unchanged ({proxy.variable}){check}."
            ) from None
        raise HelperError(f"cannot reach {what} at {origin}{via} ({reason}){check}.") from None
    if len(raw) > MAX_RESPONSE_BYTES:
        raise HelperError(f"the answer of {what} at {origin} is too large to be one it would send.")
    try:
        parsed = parse_json(raw) if raw else None
    except ValueError:
        parsed = None
    return Response(status, answer_headers, parsed if isinstance(parsed, dict) else None)


def _unresolvable(hostname: str | None, what: str, origin: str, hint: str) -> HelperError:
    """A name that resolves nowhere: one sentence, whether IDNA or the resolver refused it."""
    return HelperError(f"cannot resolve the host name {hostname!r} of {what} ({origin}); check "
                       f"{hint + ', and ' if hint else ''}your network or VPN.")


def parse_json(text: bytes | str) -> object:
    """JSON that came from the network (or was kept from it); ValueError when it is not JSON, or is nested
    deeper than ``MAX_JSON_DEPTH`` (which would otherwise end in a RecursionError, here or wherever the value
    is walked or written back).

    Every answer the helper reads goes through here, so no answer can end the helper with a traceback.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    opened = text.count(b"[") + text.count(b"{") if isinstance(text, bytes) else text.count("[") + text.count("{")
    if opened > MAX_JSON_DEPTH and not _within_depth(value):  # only then can it be too deep: walk it
        raise ValueError("JSON nested too deeply")
    return value


def _within_depth(value: object) -> bool:
    """Whether ``value`` nests arrays and objects at most ``MAX_JSON_DEPTH`` deep (level by level, no recursion)."""
    level: list[dict[Any, Any] | list[Any]] = [value] if isinstance(value, (dict, list)) else []
    for _ in range(MAX_JSON_DEPTH):
        if not level:
            return True
        level = [item for node in level for item in (node.values() if isinstance(node, dict) else node)
                 if isinstance(item, (dict, list))]
    return not level


def _header_value(value: str) -> bool:
    """Whether ``value`` is only printable ASCII (``[\\x20-\\x7e]*``), so it cannot end the header early."""
    return value.isascii() and value.isprintable()


def error_sentence(response: Response) -> str:
    """The service's own explanation of an error response, made safe for one line of a terminal."""
    detail = response.body.get("detail")
    code = response.body.get("error")
    text = detail if isinstance(detail, str) and detail else (
        f"the service refused the request (HTTP {response.status}, {code})"
    )
    retry = response.headers.get("retry-after")
    if response.status in (429, 503) and retry and digits(retry):
        text = f"{text.rstrip('.')} (retry after {retry} s)."
    return one_line(text)


def one_line(text: str, limit: int = 600) -> str:
    """``text`` (from a server, a token, a file) made safe to show on one line of a terminal: line breaks and
    other spaces become a space, every other character that is not printable is shown escaped (``\\x1b``,
    ``\\u202e``), so no escape sequence or bidirectional control reaches the terminal; at most ``limit``
    characters."""
    cleaned = "".join(
        c if c.isprintable() else " " if c.isspace() else _escaped(ord(c)) for c in text
    ).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _escaped(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
