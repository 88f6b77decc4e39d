"""One HTTP/1.1 request on a new connection, direct or through an HTTP proxy's ``CONNECT`` tunnel.

``exchange`` is what ``client.http_json`` sends every request through (the service, identity providers, CI
token services). One ``Deadline`` bounds all of it: connecting (to the proxy, then its ``CONNECT`` answer), the
TLS handshake, the request and every read of the answer. TLS is always checked against the origin's name, never
the proxy's: through a tunnel the handshake is the origin's, end to end.

The host is given in its one ASCII form (``hosts.ascii_host``), and that one form is what the proxy decision,
the connection, the ``CONNECT`` line, the ``Host`` header and TLS's server name all use. ``exchange`` and
``tunnel`` themselves refuse any other host (``plain_host``) before anything is sent, so nothing a caller passes
can end a request line early.

Which proxy: ``proxy_for`` looks at the environment first and imports ``proxy`` (the rules, shared with the
service) only when a proxy variable is set, so a run without one imports nothing for proxies. A proxy's failure
is a ``ProxyFailure`` whose ``message`` names the proxy (its address, never its user name or password) and the
variable that set it. Its answer to ``CONNECT`` is read in blocks, never past its end (what follows is the
tunnel's), and at most ``MAX_PROXY_ANSWER`` bytes with ``MAX_PROXY_INTERIM`` interim answers: a proxy that sends
more is not answering.

Git starts the helper for every fetch and push, so its start-up is kept short: one request per connection
(``Connection: close``) spoken over ``socket`` directly, since ``http.client`` alone costs more to import
(its ``email`` header parser) than the rest of the helper and the request together; ``ssl`` is imported only
for an https URL; ``typing`` only by type checkers.
"""

from __future__ import annotations

import os

from ccweb_helper.http11 import BadAnswer, Deadline, read_answer

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import ssl
    from collections.abc import Mapping

    from ccweb_helper.proxy import ProxyChoice

# The variables that can set a proxy for an https URL (proxy.PROXY_VARIABLES, without importing it).
PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
MAX_PROXY_ANSWER = 16384  # the proxy's whole answer to CONNECT, interim answers included
MAX_PROXY_INTERIM = 2  # 100 Continue, 103 Early Hints … before the answer to CONNECT
REASONS = {407: "proxy authentication required", 403: "forbidden", 502: "bad gateway: it could not connect",
           503: "service unavailable", 504: "gateway timeout: it could not connect in time"}


class ProxyFailure(Exception):
    """The proxy, not the origin, failed; ``message`` is the sentence to show (without the password)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def plain_host(hostname: str) -> bool:
    """Whether ``hostname`` can stand in a request line as it is: ASCII letters, digits, ``.``, ``-`` and ``_``
    (a DNS name, an IPv4 address), or an IPv6 address without brackets (hexadecimal digits, ``:`` and ``.``;
    no zone). Nothing else: no space, CR, LF, ``%``, ``@``, ``/``, ``[`` or non-ASCII character."""
    if ":" in hostname:
        return all(c in "0123456789abcdefABCDEF:." for c in hostname)
    return bool(hostname) and hostname.isascii() and all(c.isalnum() or c in ".-_" for c in hostname)


def proxy_for(scheme: str, hostname: str, port: int | None, env: Mapping[str, str]) -> ProxyChoice | None:
    """``proxy.choose`` for this request (``hostname`` in its ASCII form), importing it only when a proxy variable
    is set (for https); ProxyFailure, naming the variable, for a proxy setting that cannot be used."""
    if scheme != "https" or not any(env.get(name) for name in PROXY_VARIABLES):
        return None
    from ccweb_helper.proxy import ProxySettingError, choose  # noqa: PLC0415 (only when a proxy is set)

    try:
        return choose(scheme, hostname, port, env)
    except ProxySettingError as exc:
        raise ProxyFailure(str(exc)) from None


def exchange(
    scheme: str, hostname: str, port: int | None, *, method: str, target: str, headers: dict[str, str],
    body: bytes | None, deadline: Deadline, proxy: ProxyChoice | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection: (status, headers with lower-case names, at most
    ``MAX_RESPONSE_BYTES + 1`` bytes of the body). ``deadline`` bounds the whole exchange: the connection,
    the TLS handshake, the request and every read of the answer share it. With ``proxy``, the connection is a
    ``CONNECT`` tunnel through it (``ProxyFailure`` when the proxy fails). ``hostname`` is the host's ASCII form
    (``hosts.ascii_host``), used as it is for the connection, the ``Host`` header, ``CONNECT`` and TLS's server
    name. OSError (``socket.gaierror``, ``ssl.SSLError``, TimeoutError …) or BadAnswer when it fails; ValueError,
    before anything is sent, for a host that is not ``plain_host`` or a target with a space or control character.
    """
    if not plain_host(hostname):
        raise ValueError("not a host name")  # would break the request line, or name another host
    if any(c <= " " or c == "\x7f" for c in target):
        raise BadAnswer("InvalidURL")  # would break the request line
    default_port = 443 if scheme == "https" else 80
    # Resolved as bytes: a str makes getaddrinfo import the idna codec even for an ASCII name.
    address = hostname.encode("ascii")
    host = b"[" + address + b"]" if b":" in address else address
    authority = (host + b":%d" % (port or default_port)).decode("ascii")  # what CONNECT asks for
    if port is not None and port != default_port:
        host += b":%d" % port
    head = [f"{method} {target} HTTP/1.1", "Host: " + host.decode("ascii"), "Accept-Encoding: identity"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        head.append(f"Content-Length: {len(body or b'')}")
    head.append("Connection: close")
    message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")

    def opened() -> socket.socket:
        if proxy is None:
            return connect(address, port or default_port, deadline)
        return tunnel(proxy, authority, hostname, deadline)

    sock = opened()
    try:
        if scheme == "https":
            import ssl  # noqa: PLC0415 (only for https)

            context, lazy = tls_context()
            try:
                sock.settimeout(deadline.left())  # the handshake, as a whole
                sock = context.wrap_socket(sock, server_hostname=hostname)  # the origin's name, even through a proxy
            except ssl.SSLCertVerificationError:
                if not lazy:
                    raise
                # Not in the hashed directory (a bundle edited by hand?): once more, with every authority loaded.
                sock.close()
                sock = opened()
                sock.settimeout(deadline.left())
                sock = tls_context(every_authority=True)[0].wrap_socket(sock, server_hostname=hostname)
        sock.settimeout(deadline.left())  # sendall: the whole request
        sock.sendall(message)
        with deadline.reader(sock) as reader:
            return read_answer(reader, method)
    finally:
        sock.close()


def tunnel(proxy: ProxyChoice, authority: str, hostname: str, deadline: Deadline) -> socket.socket:
    """A connection to ``authority`` (``host:port``) through ``proxy``'s ``CONNECT``, within ``deadline``;
    ``ProxyFailure`` naming the proxy and its variable when the proxy cannot be reached, refuses, or does not
    answer like an HTTP proxy. ValueError, before anything is sent, for an authority that is not a
    ``plain_host`` (bracketed when IPv6) and a port."""
    import socket  # noqa: PLC0415

    host, colon, port = authority.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if not (colon and port.isascii() and port.isdigit() and plain_host(host[1:-1] if bracketed else host)
            and bracketed == (":" in host)):
        raise ValueError("not a host and port")  # would break the CONNECT line

    at = f"the proxy {proxy.url} ({proxy.variable})"
    within = f"within {deadline.seconds:g} seconds"
    try:
        sock = connect(proxy.host.encode("ascii"), proxy.port, deadline)
    except (OSError, UnicodeError) as exc:
        if isinstance(exc, (socket.timeout, TimeoutError)):
            reason = f"no connection {within}"
        elif isinstance(exc, socket.gaierror):
            reason = "its host name does not resolve"
        else:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ProxyFailure(f"cannot reach the proxy {proxy.url} set by {proxy.variable} ({reason}); check "
                           f"{proxy.variable}, or add {hostname} to NO_PROXY if it is reachable directly.") from None
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", "User-Agent: ccweb-helper"]
    if proxy.authorization is not None:
        lines.append("Proxy-Authorization: " + proxy.authorization)
    try:
        sock.settimeout(deadline.left())
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        status = connect_answer(sock, deadline)
    except BadAnswer as exc:
        sock.close()
        raise ProxyFailure(f"{at} did not answer like an HTTP proxy ({exc.kind}); check {proxy.variable}.") from None
    except (socket.timeout, TimeoutError):
        sock.close()
        raise ProxyFailure(f"{at} did not answer {within}; try again, check {proxy.variable}, or raise "
                           "CCWEB_TIMEOUT.") from None
    except OSError as exc:
        sock.close()
        reason = exc.strerror or type(exc).__name__
        raise ProxyFailure(f"{at} did not answer like an HTTP proxy ({reason}); check {proxy.variable}.") from None
    if 200 <= status < 300:
        return sock
    sock.close()
    raise ProxyFailure(refusal(proxy, authority, status))


def refusal(proxy: ProxyChoice, authority: str, status: int) -> str:
    """The sentence for a proxy that answered ``status`` to ``CONNECT authority`` (pure)."""
    reason = REASONS.get(status)
    said = f"HTTP {status}, {reason}" if reason else f"HTTP {status}"
    text = f"the proxy {proxy.url} ({proxy.variable}) refused to connect to {authority} ({said}); "
    if status == 407 and proxy.authorization is not None:
        return text + f"check the user name and password in {proxy.variable}."
    if status == 407:
        return text + (f"put your proxy user name and password in {proxy.variable} (http://user:password@host:port, "
                       "percent-encoded).")
    if status in (502, 503, 504):
        return text + f"check that {authority.rsplit(':', 1)[0]} is reachable from the proxy, or try again later."
    return text + f"ask the proxy's administrators to allow it, or check {proxy.variable}."


def connect_answer(sock: socket.socket, deadline: Deadline) -> int:
    """The status of the proxy's answer to ``CONNECT`` on ``sock``, read within ``deadline`` and never past the
    empty line that ends it (what follows is the tunnel's); at most ``MAX_PROXY_INTERIM`` interim (1xx) answers
    before it and ``MAX_PROXY_ANSWER`` bytes in all. BadAnswer for anything else (``http11`` reads it)."""
    import io  # noqa: PLC0415 (loaded already: http11 needs it)

    answer = bytearray()
    for _ in range(MAX_PROXY_INTERIM + 1):
        start = len(answer)
        if not _head_into(answer, sock, deadline) or not _interim(bytes(answer[start:])):
            break  # the final answer, or the end of the connection: read_answer says what it is
    else:
        raise BadAnswer("TooManyInterimAnswers")
    return read_answer(io.BytesIO(bytes(answer)), "CONNECT")[0]


def _head_into(answer: bytearray, sock: socket.socket, deadline: Deadline) -> bool:
    """Add to ``answer`` one head (a status line, headers, the empty line) read from ``sock``: what the socket
    holds is looked at first (``MSG_PEEK``) and only the head taken from it. False when the connection ended
    before the empty line; BadAnswer past ``MAX_PROXY_ANSWER`` bytes."""
    import socket  # noqa: PLC0415

    ending = False  # whether what was read ends with "\n" and then only "\r": an empty line may be ending
    while True:
        sock.settimeout(deadline.left())
        seen = sock.recv(min(4096, MAX_PROXY_ANSWER + 1 - len(answer)), socket.MSG_PEEK)
        if not seen:
            return False
        window = b"\n" + seen if ending else seen
        end = _empty_line_end(window)
        wanted = len(seen) if end < 0 else end - (len(window) - len(seen))
        chunk = sock.recv(wanted)  # what was seen is there: recv takes it at once
        answer += chunk
        if len(answer) > MAX_PROXY_ANSWER:
            raise BadAnswer("AnswerTooLarge")
        if end >= 0 and len(chunk) == wanted:
            return True
        last = chunk.rfind(b"\n")
        ending = not chunk[last + 1:].strip(b"\r") if last >= 0 else ending and not chunk.strip(b"\r")


def _empty_line_end(data: bytes) -> int:
    """Where the first empty line after a ``\n`` of ``data`` ends (a ``\n``, only ``\r`` before it), or -1."""
    position = data.find(b"\n")
    while position >= 0:
        following = data.find(b"\n", position + 1)
        if following < 0:
            return -1
        if not data[position + 1:following].strip(b"\r"):
            return following + 1
        position = following
    return -1


def _interim(head: bytes) -> bool:
    """Whether ``head`` is an interim (1xx) answer, as ``http11`` reads a status line."""
    version, _, rest = head.split(b"\n", 1)[0].decode("latin-1").rstrip("\r").partition(" ")
    code = rest.strip().partition(" ")[0]
    return version.startswith("HTTP/") and len(code) == 3 and code.isascii() and code.isdigit() and code[0] == "1"


def connect(address: bytes, port: int, deadline: Deadline) -> socket.socket:
    """A connection to the first of ``address``'s addresses that takes one, within what is left of ``deadline``
    (``socket.create_connection`` would give each address the whole time again)."""
    import socket  # noqa: PLC0415

    error: OSError = OSError("no address")
    for family, kind, proto, _, peer in socket.getaddrinfo(address, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.left())
            sock.connect(peer)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error


def tls_context(every_authority: bool = False) -> tuple[ssl.SSLContext, bool]:
    """The verifying TLS context, and whether it finds the certificate authorities lazily.

    Loading the system's whole CA bundle is slow with OpenSSL 3, at every git call (bench/helper measures
    it; bench/README.md). Where the system also keeps its authorities as a hashed directory (Debian, Ubuntu,
    Alpine: ``update-ca-certificates`` keeps the two in step), OpenSSL reads from it only the authority a
    server's chain names. ``SSL_CERT_FILE`` (a company's bundle) always loads that bundle, as does
    ``every_authority``.
    """
    import ssl  # noqa: PLC0415

    if not every_authority and not os.environ.get("SSL_CERT_FILE"):
        directory = ssl.get_default_verify_paths().capath
        if directory and hashed(directory):
            return ssl.create_default_context(capath=directory), True
    return ssl.create_default_context(), False


def hashed(directory: str) -> bool:
    """Whether ``directory`` holds certificates under OpenSSL's hashed names (``5ad8a5d6.0``)."""
    try:
        with os.scandir(directory) as entries:
            return any(len(name) == 10 and name.endswith(".0") and all(c in "0123456789abcdef" for c in name[:8])
                       for name in (entry.name for entry in entries))
    except OSError:
        return False
