"""HTTP to the ccweb service with ``http.client``: bounded timeouts, size-capped answers, one-line errors.

Every failure becomes a ``HelperError`` whose message is a sentence for the person at the terminal. No
message ever contains the token: it travels only in the ``Authorization`` header.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from ccweb_helper.hosts import is_loopback

MAX_RESPONSE_BYTES = 1 << 20
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")
USER_AGENT = "ccweb-helper"


class HelperError(Exception):
    """A failure to explain on stderr: ``message`` is a sentence the user can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Response(NamedTuple):
    status: int
    headers: dict[str, str]
    body: Any


class ServiceURL(NamedTuple):
    url: str
    scheme: str
    host: str
    port: int | None
    prefix: str


def parse_service_url(url: str, source: str) -> ServiceURL:
    """Check a configured service URL: https, or http to a loopback address only."""
    text = url.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise HelperError(
            f"{source} is not a URL: {text!r}; set it to the ccweb service, e.g. https://ccweb.example.com."
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.query:
        raise HelperError(f"{source} must be an https:// URL of the ccweb service, not {text!r}.")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise HelperError(
            f"{source} is {text}: ccweb-helper sends your token only over https (plain http is allowed to "
            "loopback addresses only); use the service's https:// URL."
        )
    return ServiceURL(text, parts.scheme, parts.hostname, port, parts.path)


SERVICE_HINT = "CCWEB_URL or git config ccweb.url"


def request(
    service: ServiceURL, method: str, path: str, *, timeout: float, token: str | None = None,
    body: dict[str, Any] | None = None,
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
                       body=payload, where=service.url, hint=SERVICE_HINT)
    if answer.body is None:
        raise HelperError(
            f"{service.url} answered HTTP {answer.status} with something that is not ccweb's JSON; check that "
            "CCWEB_URL (or git config ccweb.url) names the ccweb service."
        )
    return answer


def http_json(
    url: str, what: str, *, method: str = "GET", timeout: float, headers: dict[str, str] | None = None,
    body: bytes | None = None, where: str | None = None, hint: str = "",
) -> Response:
    """One HTTP exchange: with the ccweb service, an identity provider, a CI platform's token service.

    ``url`` must be https, or http to a loopback address; ``what`` names the party in error sentences
    ("the GitHub Actions token service"), ``where`` its address (default: the URL's origin) and ``hint``
    the setting to check when it cannot be reached. The answer is size-capped; ``body`` of the Response is the
    parsed JSON object, or None when the answer was not a JSON object. No header value (a token) ever
    appears in an error.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise HelperError(f"the address of {what} is not a URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        raise HelperError(f"the address of {what} is not an https:// URL.")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise HelperError(f"{what} is at a plain http:// address; ccweb-helper speaks to it only over https.")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    origin = where or f"{parts.scheme}://{parts.netloc}"
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
    sent = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
    if not all(_HEADER_VALUE.fullmatch(value) for value in sent.values()):
        # Never let http.client see it: its error would quote the value, which is a token.
        connection.close()
        raise HelperError(
            f"a credential to send to {what} holds characters an HTTP header cannot carry (a line break?); "
            "check where it comes from."
        )
    try:
        connection.request(method, target, body=body, headers=sent)
        answer = connection.getresponse()
        raw = answer.read(MAX_RESPONSE_BYTES + 1)
        status = answer.status
        answer_headers = {k.lower(): v for k, v in answer.getheaders()}
    except ssl.SSLCertVerificationError as exc:
        raise HelperError(
            f"the TLS certificate of {what} at {origin} could not be verified ({exc.verify_message}); if your "
            "company uses its own certificate authority, point SSL_CERT_FILE at its bundle."
        ) from None
    except (socket.timeout, TimeoutError):
        raise HelperError(
            f"{what} at {origin} did not answer within {timeout:g} seconds; try again, or raise CCWEB_TIMEOUT."
        ) from None
    except socket.gaierror:
        raise HelperError(
            f"cannot resolve the host name {parts.hostname!r} of {what} ({origin}); check "
            f"{hint + ', and ' if hint else ''}your network or VPN."
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        check = f"; check {hint}, and that it is running" if hint else ""
        raise HelperError(f"cannot reach {what} at {origin} ({reason}){check}.") from None
    finally:
        connection.close()
    if len(raw) > MAX_RESPONSE_BYTES:
        raise HelperError(f"the answer of {what} at {origin} is too large to be one it would send.")
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return Response(status, answer_headers, parsed if isinstance(parsed, dict) else None)


def error_sentence(response: Response) -> str:
    """The service's own explanation of an error response, made safe for one line of a terminal."""
    detail = response.body.get("detail")
    code = response.body.get("error")
    text = detail if isinstance(detail, str) and detail else (
        f"the service refused the request (HTTP {response.status}, {code})"
    )
    retry = response.headers.get("retry-after")
    if response.status in (429, 503) and retry and retry.isdigit():
        text = f"{text.rstrip('.')} (retry after {retry} s)."
    return one_line(text)


def one_line(text: str, limit: int = 600) -> str:
    cleaned = "".join(c if c.isprintable() else " " for c in text).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
