"""create_app(config, sts=…): the service's parts, wired together.

    request → RequestId → RequestMetrics → RequestLimits → FastRoutes
      POST /v1/credentials     → CredentialsRoute → CredentialsEndpoint → CredentialFlow (ccweb.credentials)
      POST /v1/git-credential  → the same, in git's credential format (ccweb.textapi)
      everything else          → (FastAPI's exception layer) → router → FastAPI routes (ccweb.routes)
                                                                      → the web face's routes, last (ccweb.web)

``FastRoutes`` (ccweb.fastroutes) is the innermost middleware, so those added later with ``add_middleware``
wrap every route, the credentials route included; that route is in the router too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from ccweb import __version__
from ccweb.apidocs import install_docs
from ccweb.config import Config
from ccweb.credentials import CredentialFlow, CredentialsEndpoint, CredentialsRoute
from ccweb.fastroutes import FastRoutes
from ccweb.limits import RequestLimits
from ccweb.metrics import Metrics, RequestMetrics
from ccweb.openapi import install_openapi
from ccweb.outbound import outbound_client
from ccweb.reload import RELOAD_INTERVAL_SECONDS, RunningPolicy
from ccweb.requestid import RequestId
from ccweb.responses import install_error_handlers
from ccweb.retry import RetryPolicy
from ccweb.routes import api_router
from ccweb.sessions import SessionCache
from ccweb.sts import STSClient, target_of
from ccweb.textapi import GIT_CREDENTIAL_PATH, MAX_TEXT_BODY_BYTES, TEXT_WIRE
from ccweb.web.routes import LOGOUT_PATH, MAX_LOGOUT_BODY_BYTES, install_web

NO_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False}
"""FastAPI's built-in OpenTelemetry hooks, off: ccweb exports Prometheus metrics and JSON logs, and the hooks
would otherwise look up the global providers on every request."""


def create_app(
    config: Config,
    *,
    sts: STSClient,
    http: httpx.AsyncClient | None = None,
    clock: Callable[[], float] = time.time,
    metrics: Metrics | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    config_path: str | Path | None = None,
    reload_interval: float = RELOAD_INTERVAL_SECONDS,
    reload_on_sighup: bool = False,
    metrics_route: bool = True,
    web_session_secret: bytes | None = None,
) -> FastAPI:
    """``config_path``: the file ``config`` came from; the app then reloads it when it changes (polled every
    ``reload_interval`` seconds; 0 turns the polling off) and, with ``reload_on_sighup``, on SIGHUP.
    ``monotonic`` drives the rate limiter. ``metrics_route``: serve ``/metrics`` (False when a listener of its
    own does, ``ccweb serve --metrics-port``; the app still counts). ``web_session_secret`` signs the web page's
    session cookie (``web.session_secret``, read by the caller); without it the page has no sign-in, and a policy
    whose ``web:`` configures one is refused (ConfigError)."""
    metrics = metrics or Metrics()
    own_http = http is None
    client = http or outbound_client(timeout=httpx.Timeout(5.0))  # issuer discovery and key sets
    sessions = SessionCache(sts, clock=clock, metrics=metrics,
                            retry=RetryPolicy(budget=config.aws.retry_budget_seconds))
    running = RunningPolicy(config, http=client, sessions=sessions, clock=clock, monotonic=monotonic,
                            path=config_path, metrics=metrics)
    flow = CredentialFlow(running, sessions, metrics, clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            async with running.running(interval=reload_interval, sighup=reload_on_sighup):
                yield
        finally:
            if own_http:
                await client.aclose()
            close_sts = getattr(sts, "aclose", None)  # BotoSTS's HTTP client
            if close_sts is not None:
                await close_sts()

    app = FastAPI(
        title="ccweb",
        version=__version__,
        description="OIDC token in, CodeCommit git credential scoped by policy out.",
        lifespan=lifespan,
        telemetry=NO_TELEMETRY,
        docs_url=None,  # FastAPI's /docs and /redoc load their scripts from a CDN: ccweb.apidocs serves /docs
        redoc_url=None,
    )
    credentials = CredentialsRoute(CredentialsEndpoint(flow))
    git_credential = CredentialsRoute(CredentialsEndpoint(flow, TEXT_WIRE), GIT_CREDENTIAL_PATH)
    app.router.routes[0:0] = [credentials, git_credential]
    app.include_router(api_router(flow, metrics_route=metrics_route, sts_target=target_of(sts)))
    install_web(app, running, http=client, clock=clock, session_secret=web_session_secret)  # after the API's routes
    app.add_middleware(FastRoutes, routes=[credentials, git_credential])  # first added: the innermost middleware
    # sizes and media type, before routing: see ccweb.limits
    app.add_middleware(RequestLimits, text_bodies={GIT_CREDENTIAL_PATH: MAX_TEXT_BODY_BYTES},
                       form_bodies={LOGOUT_PATH: MAX_LOGOUT_BODY_BYTES})
    app.add_middleware(RequestMetrics, metrics=metrics, routes=app.router.routes)  # by route template, refusals too
    app.add_middleware(RequestId)  # outermost: every answer and log line of a request carries its X-Request-ID
    app.state.policy = running  # running.current: the running policy, verifier and rate limiter
    app.state.sessions = sessions
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)
    return app
