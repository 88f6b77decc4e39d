"""HTTP/1.1 to the ccweb service and its peers: bounded timeouts, size-capped answers, one-line errors.

Every failure becomes a ``HelperError`` whose message is a sentence for the person at the terminal. No
message ever contains the token: it travels only in the ``Authorization`` header.

Git starts the helper for every fetch and push, so its start-up is kept short: one request per connection
(``Connection: close``) spoken over ``socket`` directly, since ``http.client`` alone costs more to import
(its ``email`` header parser) than the rest of the helper and the request together; ``ssl`` is imported only
for an https URL; ``typing`` only by type checkers.
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import urlsplit

from ccweb_helper.hosts import is_loopback

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from io import BufferedReader
    from typing import Any, NamedTuple

MAX_RESPONSE_BYTES = 1 << 20
MAX_LINE_BYTES = 65536  # a status or header line, or a chunk size, as http.client allows
MAX_HEADERS = 100
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
    sent = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
    if not all(_header_value(value) for value in sent.values()):
        # Refused before anything is sent, and never quoted: the value is a token.
        raise HelperError(
            f"a credential to send to {what} holds characters an HTTP header cannot carry (a line break?); "
            "check where it comes from."
        )
    import socket  # noqa: PLC0415 (the interpreter starts faster without it: store and erase never need it)

    try:
        status, answer_headers, raw = _exchange(
            parts.scheme, parts.hostname, port, method=method, target=target, headers=sent, body=body, timeout=timeout
        )
    except BadAnswer as exc:
        check = f"; check {hint}, and that it is running" if hint else ""
        raise HelperError(f"cannot reach {what} at {origin} ({exc.kind}){check}.") from None
    except (socket.gaierror, UnicodeError):  # UnicodeError: a name that cannot be an international domain name
        raise HelperError(
            f"cannot resolve the host name {parts.hostname!r} of {what} ({origin}); check "
            f"{hint + ', and ' if hint else ''}your network or VPN."
        ) from None
    except OSError as exc:
        ssl = sys.modules.get("ssl")  # loaded for https URLs only
        if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
            raise HelperError(
                f"the TLS certificate of {what} at {origin} could not be verified ({exc.verify_message}); if "
                "your company uses its own certificate authority, point SSL_CERT_FILE at its bundle."
            ) from None
        if isinstance(exc, (socket.timeout, TimeoutError)):
            raise HelperError(
                f"{what} at {origin} did not answer within {timeout:g} seconds; try again, or raise CCWEB_TIMEOUT."
            ) from None
        reason = exc.strerror or type(exc).__name__
        check = f"; check {hint}, and that it is running" if hint else ""
        raise HelperError(f"cannot reach {what} at {origin} ({reason}){check}.") from None
    if len(raw) > MAX_RESPONSE_BYTES:
        raise HelperError(f"the answer of {what} at {origin} is too large to be one it would send.")
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return Response(status, answer_headers, parsed if isinstance(parsed, dict) else None)


def _header_value(value: str) -> bool:
    """Whether ``value`` is only printable ASCII (``[\\x20-\\x7e]*``), so it cannot end the header early."""
    return value.isascii() and value.isprintable()


class BadAnswer(Exception):
    """The peer did not speak HTTP/1.1; ``kind`` names what was wrong (never any of the data)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _exchange(
    scheme: str, hostname: str, port: int | None, *, method: str, target: str, headers: dict[str, str],
    body: bytes | None, timeout: float,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection: (status, headers with lower-case names, at most
    ``MAX_RESPONSE_BYTES + 1`` bytes of the body). ``timeout`` bounds the connection and each read, as
    ``http.client`` does. OSError (``socket.gaierror``, ``ssl.SSLError``, timeouts …), UnicodeError or
    BadAnswer when it fails."""
    import socket  # noqa: PLC0415

    if any(c <= " " or c == "\x7f" for c in target):
        raise BadAnswer("InvalidURL")  # would break the request line
    default_port = 443 if scheme == "https" else 80
    # Resolved as bytes: a str makes getaddrinfo import the idna codec even for an ASCII name.
    address = hostname.encode("ascii") if hostname.isascii() else hostname.encode("idna")
    host = b"[" + address + b"]" if b":" in address else address
    if port is not None and port != default_port:
        host += b":%d" % port
    head = [f"{method} {target} HTTP/1.1", "Host: " + host.decode("ascii"), "Accept-Encoding: identity"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        head.append(f"Content-Length: {len(body or b'')}")
    head.append("Connection: close")
    message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
    sock = socket.create_connection((address, port or default_port), timeout=timeout)  # type: ignore[arg-type]
    try:
        if scheme == "https":
            import ssl  # noqa: PLC0415 (only for https)

            context, lazy = tls_context()
            try:
                sock = context.wrap_socket(sock, server_hostname=hostname)
            except ssl.SSLCertVerificationError:
                if not lazy:
                    raise
                # Not in the hashed directory (a bundle edited by hand?): once more, with every authority loaded.
                sock.close()
                sock = socket.create_connection((address, port or default_port), timeout=timeout)  # type: ignore[arg-type]
                sock = tls_context(every_authority=True)[0].wrap_socket(sock, server_hostname=hostname)
        sock.sendall(message)
        with sock.makefile("rb") as reader:
            status, answer_headers = _head(reader)
            while 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
                status, answer_headers = _head(reader)
            return status, answer_headers, _body(reader, method, status, answer_headers)
    finally:
        sock.close()


def tls_context(every_authority: bool = False) -> tuple[ssl.SSLContext, bool]:
    """The verifying TLS context, and whether it finds the certificate authorities lazily.

    Loading the system's whole CA bundle is slow with OpenSSL 3, at every git call (bench/helper measures
    it; bench/README.md). Where the system also
    keeps its authorities as a hashed directory (Debian, Ubuntu, Alpine: ``update-ca-certificates`` keeps the
    two in step), OpenSSL reads from it only the authority a server's chain names. ``SSL_CERT_FILE`` (a
    company's bundle) always loads that bundle, as does ``every_authority``.
    """
    import ssl  # noqa: PLC0415

    if not every_authority and not os.environ.get("SSL_CERT_FILE"):
        directory = ssl.get_default_verify_paths().capath
        if directory and _hashed(directory):
            return ssl.create_default_context(capath=directory), True
    return ssl.create_default_context(), False


def _hashed(directory: str) -> bool:
    """Whether ``directory`` holds certificates under OpenSSL's hashed names (``5ad8a5d6.0``)."""
    try:
        with os.scandir(directory) as entries:
            return any(len(name) == 10 and name.endswith(".0") and all(c in "0123456789abcdef" for c in name[:8])
                       for name in (entry.name for entry in entries))
    except OSError:
        return False


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes superscripts such as '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def _line(reader: BufferedReader) -> bytes:
    line = reader.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES:
        raise BadAnswer("LineTooLong")
    return line


def _head(reader: BufferedReader) -> tuple[int, dict[str, str]]:
    line = _line(reader)
    if not line:
        raise BadAnswer("RemoteDisconnected")
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code = rest.strip().partition(" ")[0]
    if not version.startswith("HTTP/") or len(code) != 3 or not _digits(code) or code[0] == "0":
        raise BadAnswer("BadStatusLine")
    headers: dict[str, str] = {}
    name = ""
    for _ in range(MAX_HEADERS + 1):
        text = _line(reader).decode("latin-1").rstrip("\r\n")
        if not text:
            return int(code), headers
        if text[0] in " \t":  # an obsolete folded line continues the previous header
            if name:
                headers[name] = (headers[name] + " " + text.strip()).strip()
            continue
        field, sep, value = text.partition(":")
        if sep:
            name = field.strip().lower()
            headers[name] = value.strip()  # a repeated header: the last one counts
    raise BadAnswer("TooManyHeaders")


def _body(reader: BufferedReader, method: str, status: int, headers: dict[str, str]) -> bytes:
    limit = MAX_RESPONSE_BYTES + 1
    if method == "HEAD" or status in (204, 304):
        return b""
    if headers.get("transfer-encoding", "").replace(" ", "").lower().rsplit(",", 1)[-1] == "chunked":
        return _chunks(reader, limit)
    length = headers.get("content-length", "").strip()
    if _digits(length):
        expected = min(int(length), limit)
        data = reader.read(expected)
        if len(data) < expected:
            raise BadAnswer("IncompleteRead")
        return data
    return reader.read(limit)  # no length: the answer ends when the server closes the connection


def _chunks(reader: BufferedReader, limit: int) -> bytes:
    data = bytearray()
    while True:
        size_text = _line(reader).split(b";", 1)[0].strip()
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            raise BadAnswer("IncompleteRead")
        size = int(size_text, 16)
        if size == 0:
            return bytes(data)  # trailers, if any, are not read: the connection is closed next
        wanted = min(size, limit - len(data))
        chunk = reader.read(wanted)
        if len(chunk) < wanted:
            raise BadAnswer("IncompleteRead")
        data += chunk
        if len(data) >= limit:
            return bytes(data)
        if _line(reader).strip():
            raise BadAnswer("IncompleteRead")


def error_sentence(response: Response) -> str:
    """The service's own explanation of an error response, made safe for one line of a terminal."""
    detail = response.body.get("detail")
    code = response.body.get("error")
    text = detail if isinstance(detail, str) and detail else (
        f"the service refused the request (HTTP {response.status}, {code})"
    )
    retry = response.headers.get("retry-after")
    if response.status in (429, 503) and retry and _digits(retry):
        text = f"{text.rstrip('.')} (retry after {retry} s)."
    return one_line(text)


def one_line(text: str, limit: int = 600) -> str:
    cleaned = "".join(c if c.isprintable() else " " for c in text).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
