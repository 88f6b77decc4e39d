"""The service's outbound HTTP clients (issuer discovery and key sets, STS), and the proxy each request takes.

Every client the service makes for a request of its own comes from ``outbound_client``: httpx with
``trust_env=False`` and a ``ProxyRouting`` transport, which asks ``ccweb_helper.proxy.choose`` — the rules the
helper follows too, curl's — which proxy a request's origin takes: ``https_proxy``/``HTTPS_PROXY``, then
``all_proxy``/``ALL_PROXY``; ``no_proxy``/``NO_PROXY`` as curl reads it; loopback and plain http never proxied.
https goes through the proxy in a ``CONNECT`` tunnel, TLS checked against the origin's name (never the
proxy's), with ``Proxy-Authorization`` from the proxy URL's user and password (a value whose ``repr`` hides it:
no log line, exception or dump of the client's objects shows it).

A hostile or broken proxy cannot hold a request: one exchange through a proxy — the ``CONNECT``, TLS, the request
and the whole answer — ends after the client's connect and read timeouts added up (``ReadTimeout``), however the
proxy dribbles its bytes, and a proxy that answers ``CONNECT`` with more than ``MAX_INTERIM_ANSWERS`` interim
(1xx) answers is refused at once (``RemoteProtocolError``) rather than read until then. The host a request is
decided on is the ASCII (IDNA) one httpx connects to and names in ``CONNECT``, never its Unicode spelling.

The environment is read once, when a client is made (as botocore reads it), and each origin's choice is kept:
a request pays a dictionary lookup. ``check_proxy_environment`` refuses, at start-up, a proxy variable that
cannot be used (``ccweb serve`` says so in one sentence); a request that meets one anyway fails as an
unreachable upstream does. A request through a proxy that fails is logged with the proxy (never its password)
and the variable that chose it: the upstream's own error (``last_error`` in ``/readyz``, STS's retryable
error) names only the kind of failure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import httpcore
import httpx

from ccweb.display import printable
from ccweb_helper.proxy import ProxyChoice, ProxySettingError, choose, parse_proxy, proxy_variable

log = logging.getLogger("ccweb.outbound")

__all__ = ["ProxyRouting", "ProxySettingError", "check_proxy_environment", "outbound_client", "proxy_environment"]

PROXY_VARIABLES = frozenset({"https_proxy", "all_proxy", "no_proxy", "http_proxy"})
"""The variables (in either case) that steer the outbound proxy; only these are kept from the environment."""
MAX_ROUTES = 1024
"""Origins whose choice a transport keeps; past that it forgets them all and decides afresh (a bound, not a
working set: a service talks to a handful of issuers and one STS endpoint)."""
MAX_INTERIM_ANSWERS = 2
"""Interim (1xx) answers a proxy may send to ``CONNECT`` before its real one; no proxy sends more than one."""
MAX_EXCHANGE_SECONDS = 30.0
"""The bound on one exchange through a proxy when the client's timeouts do not set one."""


def proxy_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The proxy variables of ``env`` (as spelled there), and nothing else."""
    return {name: value for name, value in env.items() if name.lower() in PROXY_VARIABLES}


def check_proxy_environment(env: Mapping[str, str]) -> None:
    """Raise ``ProxySettingError`` (a sentence naming the variable, never a password) if a proxy variable that
    https requests would use cannot be used, whatever NO_PROXY bypasses."""
    found = proxy_variable("https", env)
    if found is not None:
        parse_proxy(found[1], found[0])


class ProxyRouting(httpx.AsyncBaseTransport):
    """A transport that sends each request directly or through the proxy ``choose`` names for its origin: one
    connection pool for direct requests and one per proxy, each with ``verify`` and ``limits``. One exchange
    through a proxy takes at most ``total`` seconds."""

    def __init__(self, *, verify: ssl.SSLContext, limits: httpx.Limits, env: Mapping[str, str],
                 total: float = MAX_EXCHANGE_SECONDS) -> None:
        self._env = proxy_environment(env)
        self._verify, self._limits, self._total = verify, limits, total
        self._direct = httpx.AsyncHTTPTransport(verify=verify, limits=limits, trust_env=False)
        self._routes: dict[tuple[str, str, int | None], ProxyChoice | None] = {}
        self._proxied: dict[ProxyChoice, httpx.AsyncHTTPTransport] = {}

    def route(self, scheme: str, host: str, port: int | None) -> ProxyChoice | None:
        """The proxy for an origin (``host`` in the ASCII form connected to), or None for a direct connection
        (``ProxySettingError`` for a variable that cannot be used)."""
        key = (scheme, host, port)
        try:
            return self._routes[key]
        except KeyError:
            pass
        choice = choose(scheme, host, port, self._env)
        if len(self._routes) >= MAX_ROUTES:
            self._routes.clear()
        self._routes[key] = choice
        return choice

    def _through(self, choice: ProxyChoice) -> httpx.AsyncHTTPTransport:
        transport = self._proxied.get(choice)
        if transport is None:
            transport = self._proxied[choice] = _proxy_transport(choice, self._verify, self._limits)
        return transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        try:
            # The host as httpx connects to it, names it in CONNECT and checks it in TLS: its IDNA form
            # (url.host would be its Unicode spelling, which IDNA 2003 and 2008 may encode differently).
            choice = self.route(url.scheme, url.raw_host.decode("ascii", "replace"), url.port)
        except ProxySettingError as exc:
            log.warning("%s %s: %s", request.method, _origin(url), exc)
            raise httpx.ProxyError(str(exc), request=request) from None
        if choice is None:
            return await self._direct.handle_async_request(request)
        deadline = asyncio.get_running_loop().time() + self._total
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._through(choice).handle_async_request(request)
        except TimeoutError:
            raise _failed(request, choice, self._overdue(request)) from None
        except httpx.TransportError as exc:
            _failed(request, choice, exc)
            raise
        if isinstance(response.stream, httpx.AsyncByteStream):  # always: an async transport's answer
            response.stream = _Bounded(response.stream, deadline, request, choice, self._overdue)
        return response

    def _overdue(self, request: httpx.Request) -> httpx.ReadTimeout:
        return httpx.ReadTimeout(f"no complete answer within {self._total:g} s", request=request)

    async def aclose(self) -> None:
        proxied, self._proxied = list(self._proxied.values()), {}
        for transport in (self._direct, *proxied):
            await transport.aclose()


def _failed(request: httpx.Request, choice: ProxyChoice, exc: httpx.TransportError) -> httpx.TransportError:
    """``exc``, logged with the proxy and the variable that chose it."""
    log.warning("%s %s through the proxy %s (%s) failed: %s", request.method, _origin(request.url), choice.url,
                choice.variable, _reason(exc))
    return exc


class _Bounded(httpx.AsyncByteStream):
    """The body of an answer through a proxy, read by ``deadline`` (the exchange's, on the event loop's clock)."""

    def __init__(self, stream: httpx.AsyncByteStream, deadline: float, request: httpx.Request, choice: ProxyChoice,
                 overdue: Callable[[httpx.Request], httpx.ReadTimeout]) -> None:
        self._stream, self._deadline, self._request, self._choice, self._overdue = (
            stream, deadline, request, choice, overdue)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._stream.__aiter__()
        while True:
            try:
                async with asyncio.timeout_at(self._deadline):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise _failed(self._request, self._choice, self._overdue(self._request)) from None
            except httpx.TransportError as exc:
                _failed(self._request, self._choice, exc)
                raise
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class _Hidden(bytes):
    """A header value (``Proxy-Authorization``: the proxy's password, barely encoded) that no ``repr`` shows."""

    def __repr__(self) -> str:
        return "b'(not shown)'"

    __str__ = __repr__


def _proxy_transport(choice: ProxyChoice, verify: ssl.SSLContext, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport over httpcore's proxy pool for ``choice``, made here rather than by httpx (whose
    ``httpx.Proxy`` prints its headers, the password included, in its ``repr``): its network goes through
    ``_GuardedBackend``, and the ``Proxy-Authorization`` value is ``_Hidden``."""
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits, trust_env=False)
    if not hasattr(transport, "_pool"):
        raise RuntimeError("this httpx has no AsyncHTTPTransport._pool; ccweb cannot send requests through a proxy")
    authorization = choice.authorization
    headers = [] if authorization is None else [(b"Proxy-Authorization", _Hidden(authorization.encode("ascii")))]
    transport._pool = httpcore.AsyncHTTPProxy(  # httpx's own settings for its pool, and ours
        proxy_url=httpcore.URL(scheme=b"http", host=choice.host.encode("ascii"), port=choice.port, target=b"/"),
        proxy_headers=headers, ssl_context=verify, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        network_backend=_GuardedBackend(),
    )
    return transport


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """The network under a proxy's pool. Every connection it opens is to the proxy, and what is read on one before
    TLS starts is the proxy's answer to ``CONNECT`` (https only ever goes through a proxy): ``_ConnectAnswer``
    watches it."""

    def __init__(self) -> None:
        self._network = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        stream = await self._network.connect_tcp(host, port, timeout, local_address, socket_options)
        return _ConnectAnswer(stream)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("a proxy is reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


_HEAD_END = re.compile(rb"\n\r?\n")  # where a head ends, as h11 finds it
_INTERIM = re.compile(rb"HTTP/1\.[01] +1(?!01)[0-9][0-9][ \r\n]")  # a 1xx status line (101 ends an exchange)


class _ConnectAnswer(httpcore.AsyncNetworkStream):
    """A connection to a proxy that refuses, while it reads the answer to ``CONNECT``, more than
    ``MAX_INTERIM_ANSWERS`` interim (1xx) answers (httpcore reads any number of them, each a moment's work, until
    the deadline). It looks at the answer's heads only until the first final one, and not at all once TLS starts
    (``start_tls`` hands over the encrypted stream itself)."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._answer: bytearray | None = bytearray()  # the part of the answer not looked at yet; None: done
        self._interim = 0

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = await self._stream.read(max_bytes, timeout)
        if self._answer is not None:
            self._look(self._answer, data)
        return data

    def _look(self, answer: bytearray, data: bytes) -> None:
        answer += data
        while (end := _HEAD_END.search(answer)) is not None:
            if not _INTERIM.match(answer):
                self._answer = None  # the final answer: h11 reads the rest
                return
            self._interim += 1
            if self._interim > MAX_INTERIM_ANSWERS:
                raise httpcore.RemoteProtocolError(f"the proxy sent more than {MAX_INTERIM_ANSWERS} interim (1xx) "
                                                   f"answers to CONNECT")
            del answer[:end.end()]

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        self._answer = None
        return await self._stream.start_tls(ssl_context, server_hostname, timeout)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _origin(url: httpx.URL) -> str:
    """scheme://host[:port] of a URL (the host in its ASCII form, as connected to), for the log (never a user name
    or password it may hold)."""
    host = url.raw_host.decode("ascii", "replace")
    host = f"[{host}]" if ":" in host else host
    return f"{url.scheme}://{host}" + (f":{url.port}" if url.port is not None else "")


def _reason(exc: httpx.TransportError) -> str:
    """What went wrong, for the log: the kind of failure, and the first words of what the library said."""
    said = printable(str(exc))[:200]
    return f"{type(exc).__name__}: {said}" if said else type(exc).__name__


def outbound_client(
    *,
    timeout: httpx.Timeout,
    verify: ssl.SSLContext | None = None,
    limits: httpx.Limits | None = None,
    headers: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """An httpx client for the service's own requests: no redirects, proxies as ``ProxyRouting`` chooses them
    from ``env`` (default: this process's environment, read now). ``verify``: the trust for TLS (default:
    httpx's, with ``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured). One exchange through a proxy takes at most the
    connect and read timeouts added up."""
    total = (MAX_EXCHANGE_SECONDS if timeout.connect is None or timeout.read is None
             else timeout.connect + timeout.read)
    routing = ProxyRouting(
        verify=verify if verify is not None else httpx.create_ssl_context(trust_env=True),
        limits=limits if limits is not None else httpx.Limits(),
        env=os.environ if env is None else env,
        total=total,
    )
    return httpx.AsyncClient(transport=routing, timeout=timeout, follow_redirects=False, trust_env=False,
                             headers=dict(headers) if headers else None)
