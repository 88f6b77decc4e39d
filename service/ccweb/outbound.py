"""The service's outbound HTTP clients (issuer discovery and key sets, STS), and the proxy each request takes.

Every client the service makes for a request of its own comes from ``outbound_client``: httpx with
``trust_env=False`` and a ``ProxyRouting`` transport, which asks ``ccweb_helper.proxy.choose`` — the rules the
helper follows too, curl's — which proxy a request's origin takes: ``https_proxy``/``HTTPS_PROXY``, then
``all_proxy``/``ALL_PROXY``; ``no_proxy``/``NO_PROXY`` as curl reads it; loopback and plain http never proxied.
https goes through the proxy in a ``CONNECT`` tunnel, TLS checked against the origin's name (never the
proxy's), with ``Proxy-Authorization`` from the proxy URL's user and password.

The environment is read once, when a client is made (as botocore reads it), and each origin's choice is kept:
a request pays a dictionary lookup. ``check_proxy_environment`` refuses, at start-up, a proxy variable that
cannot be used (``ccweb serve`` says so in one sentence); a request that meets one anyway fails as an
unreachable upstream does. A request through a proxy that fails is logged with the proxy (never its password)
and the variable that chose it: the upstream's own error (``last_error`` in ``/readyz``, STS's retryable
error) names only the kind of failure.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping

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
    connection pool for direct requests and one per proxy, each with ``verify`` and ``limits``."""

    def __init__(self, *, verify: ssl.SSLContext, limits: httpx.Limits, env: Mapping[str, str]) -> None:
        self._env = proxy_environment(env)
        self._verify, self._limits = verify, limits
        self._direct = httpx.AsyncHTTPTransport(verify=verify, limits=limits, trust_env=False)
        self._routes: dict[tuple[str, str, int | None], ProxyChoice | None] = {}
        self._proxied: dict[ProxyChoice, httpx.AsyncHTTPTransport] = {}

    def route(self, scheme: str, host: str, port: int | None) -> ProxyChoice | None:
        """The proxy for an origin, or None for a direct connection (``ProxySettingError`` for a variable that
        cannot be used)."""
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
            headers = {} if choice.authorization is None else {"Proxy-Authorization": choice.authorization}
            transport = self._proxied[choice] = httpx.AsyncHTTPTransport(
                proxy=httpx.Proxy(choice.url, headers=headers), verify=self._verify, limits=self._limits,
                trust_env=False,
            )
        return transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        try:
            choice = self.route(url.scheme, url.host, url.port)
        except ProxySettingError as exc:
            log.warning("%s %s: %s", request.method, _origin(url), exc)
            raise httpx.ProxyError(str(exc), request=request) from None
        if choice is None:
            return await self._direct.handle_async_request(request)
        try:
            return await self._through(choice).handle_async_request(request)
        except httpx.TransportError as exc:
            log.warning("%s %s through the proxy %s (%s) failed: %s", request.method, _origin(url), choice.url,
                        choice.variable, _reason(exc))
            raise

    async def aclose(self) -> None:
        proxied, self._proxied = list(self._proxied.values()), {}
        for transport in (self._direct, *proxied):
            await transport.aclose()


def _origin(url: httpx.URL) -> str:
    """scheme://host[:port] of a URL, for the log (never a user name or password it may hold)."""
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port is not None else "")


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
    httpx's, with ``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured)."""
    routing = ProxyRouting(
        verify=verify if verify is not None else httpx.create_ssl_context(trust_env=True),
        limits=limits if limits is not None else httpx.Limits(),
        env=os.environ if env is None else env,
    )
    return httpx.AsyncClient(transport=routing, timeout=timeout, follow_redirects=False, trust_env=False,
                             headers=dict(headers) if headers else None)
