"""create_app(config, sts=…): the HTTP API of the contract, its error handlers and its lifespan."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ccweb import __version__, audit
from ccweb.config import Config
from ccweb.errors import AccessDenied, InvalidRequest, InvalidToken, RateLimited, ServiceError, UpstreamUnavailable
from ccweb.helper_dist import helper_zipapp
from ccweb.limits import RequestLimits, document_refusals
from ccweb.metrics import Metrics, RequestMetrics
from ccweb.policy import decide, describe, identity_for, matching_rules, session_policy, sts_name, suspended
from ccweb.reload import RELOAD_INTERVAL_SECONDS, Policy, PolicyState
from ccweb.requestid import RequestId, response_headers
from ccweb.sessions import AssumeRoleRequest, RetryPolicy, SessionCache, STSClient
from ccweb.signing import PASSWORD_LIFETIME_SECONDS, git_password, git_username
from ccweb.targets import resolve
from ccweb.tokens import VerifiedToken, token_sha256

log = logging.getLogger("ccweb.app")
HELPER_PATH = "/helper/ccweb-helper"
NO_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False}
"""FastAPI's built-in OpenTelemetry hooks, off: ccweb exports Prometheus metrics and JSON logs, and the hooks
would otherwise look up the global providers on every request."""


class CredentialRequest(BaseModel):
    """The attributes git gave the helper."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "examples": [{"protocol": "https", "host": "git-codecommit.us-east-2.amazonaws.com",
                      "path": "v1/repos/MyDemoRepo"}]
    })
    protocol: Annotated[str, Field(strict=True, max_length=16)]
    host: Annotated[str, Field(strict=True, min_length=1, max_length=300)]
    path: Annotated[str | None, Field(strict=True, max_length=1024)] = None


class CredentialResponse(BaseModel):
    username: str
    password: str
    expires_at: str
    password_expiry_utc: int
    region: str
    repository: str
    rule: str
    role_arn: str


class ErrorBody(BaseModel):
    error: str
    detail: str


class RuleSummary(BaseModel):
    rule: str
    role_arn: str
    repositories: list[str]
    access: str


class WhoAmI(BaseModel):
    issuer: str
    issuer_url: str
    subject: str
    identity: str
    expires_at: str
    rules: list[RuleSummary]
    suspended: str | None = Field(
        default=None, description="Set when a deny entry suspends this identity: why, as a sentence; rules is empty."
    )


class GitEndpointInfo(BaseModel):
    host: str
    region: str


class LoginIssuer(BaseModel):
    name: str
    issuer: str
    client_id: str
    scopes: list[str]


class Discovery(BaseModel):
    service: str = "ccweb"
    version: str
    audience: str = Field(description="The audience CI platforms' OIDC tokens must be requested for.")
    git_endpoints: list[GitEndpointInfo]
    login: list[LoginIssuer] = Field(description="Issuers that allow interactive login, first the default.")
    helper: str = Field(description="Where to download ccweb-helper as one file (a Python 3.9+ zipapp).")


class Health(BaseModel):
    status: str = Field(description="Always 'ok' while the process serves requests.")


class IssuerKeys(BaseModel):
    keys_loaded: bool
    last_error: str | None


class PolicyInfo(BaseModel):
    digest: str = Field(description="SHA-256 of the running policy as validated (comments and layout do not count).")
    loaded_at: str
    reloads: int = Field(description="Reloads that changed the policy since this process started.")
    reload_error: list[str] | None = Field(
        description="Why the file on disk was refused (the running policy stayed), until a good one is loaded."
    )


class Readiness(BaseModel):
    status: str
    issuers: dict[str, IssuerKeys] = Field(description="Each issuer's key set, by issuer name.")
    cached_sessions: int
    policy: PolicyInfo


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "invalid_request: not a CodeCommit host or configured git endpoint, or a bad path or body"),
        (401, "invalid_token: the bearer token is missing or was refused"),
        (403, "access_denied: no rule grants this repository"),
        (429, "rate_limited: too many requests from one identity"),
        (503, "upstream_unavailable: STS or the identity provider is failing"),
    )
}


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, exactly as FastAPI's ``HTTPBearer`` reads it."""
    scheme, token = get_authorization_scheme_param(authorization)
    return token if authorization and scheme.lower() == "bearer" and token else None


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
) -> FastAPI:
    """``config_path``: the file ``config`` came from; the app then reloads it when it changes (polled every
    ``reload_interval`` seconds; 0 turns the polling off) and, with ``reload_on_sighup``, on SIGHUP.
    ``monotonic`` drives the rate limiter."""
    metrics = metrics or Metrics()
    own_http = http is None
    client = http or httpx.AsyncClient(timeout=httpx.Timeout(5.0), follow_redirects=False)
    sessions = SessionCache(sts, clock=clock, metrics=metrics,
                            retry=RetryPolicy(budget=config.aws.retry_budget_seconds))
    policy = Policy(config, http=client, sessions=sessions, clock=clock, monotonic=monotonic, path=config_path,
                    metrics=metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            async with policy.running(interval=reload_interval, sighup=reload_on_sighup):
                yield
        finally:
            if own_http:
                await client.aclose()
            close_sts = getattr(sts, "aclose", None)  # BotoSTS's HTTP client
            if close_sts is not None:
                await close_sts()

    app = CcwebApp(
        title="ccweb",
        version=__version__,
        description="OIDC token in, CodeCommit git credential scoped by policy out.",
        lifespan=lifespan,
        telemetry=NO_TELEMETRY,
    )
    app.add_middleware(RequestLimits)  # sizes and media type, before routing: see ccweb.limits
    app.add_middleware(RequestMetrics, metrics=metrics, routes=app.router.routes)  # by route template, refusals too
    app.add_middleware(RequestId)  # outermost: every answer and log line of a request carries its X-Request-ID
    app.state.policy = policy  # policy.current: the running configuration, verifier and rate limiter
    app.state.sessions = sessions

    bearer = HTTPBearer(auto_error=False, description="An OIDC ID token (JWT) from a trusted issuer.")

    async def snapshot() -> PolicyState:
        return policy.current  # once per request (FastAPI caches it): one policy from start to end

    Current = Annotated[PolicyState, Depends(snapshot)]  # noqa: N806 (a type alias)

    async def verified(token: str | None, state: PolicyState) -> VerifiedToken:
        """The caller behind the bearer ``token``, within its rate limit."""
        if token is None:
            raise InvalidToken(
                "No bearer token: send 'Authorization: Bearer <OIDC token>'.", reason="missing"
            )
        try:
            caller = await state.verifier.verify(token)
        except InvalidToken as exc:
            metrics.decided("", "invalid_token")
            audit.decision("invalid_token", reason=exc.reason, token_sha256=token_sha256(token))
            raise
        wait = state.limiter.check((caller.issuer.name, caller.subject))
        if wait:
            identity = identity_for(None, caller.claims)
            audit.decision("rate_limited", issuer=caller.issuer.name, subject=caller.subject, identity=identity,
                           token_sha256=caller.sha256)
            metrics.decided("", "rate_limited")
            limiter = state.limiter
            raise RateLimited(
                f"Too many requests from {identity}: ccweb answers each identity {limiter.requests_per_minute} "
                f"times a minute, in bursts of up to {limiter.burst}; wait a little (Retry-After), and look for "
                "a script or job that runs git in a loop.",
                retry_after=wait,
            )
        return caller

    async def authenticate(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        state: Current,
    ) -> VerifiedToken:
        return await verified(None if credentials is None else credentials.credentials, state)

    Caller = Annotated[VerifiedToken, Depends(authenticate)]  # noqa: N806 (a type alias)

    @app.post(
        "/v1/credentials",
        response_model=CredentialResponse,
        responses=ERROR_RESPONSES,
        summary="A CodeCommit git username and password for one repository",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": CredentialRequest.model_json_schema()}},
            },
            "security": [{"HTTPBearer": []}],
        },
    )
    async def credentials(request: Request) -> Response:
        # Documents the route; requests reach issue() through the app's fast path (CcwebApp), not this.
        return Response(await issue(request.headers.get("authorization"), request.body),
                        media_type="application/json")

    async def issue(authorization: str | None, read_body: Callable[[], Awaitable[bytes]]) -> bytes:
        """The credential for ``POST /v1/credentials``, as the JSON body of the 200; a ServiceError else."""
        state = policy.current  # one policy from start to end
        caller = await verified(bearer_token(authorization), state)
        # The body is read after the token is verified, so an unauthenticated caller learns nothing.
        config = state.config
        body = _credential_request(await read_body())
        claims = caller.claims
        who: dict[str, Any] = {
            "issuer": caller.issuer.name, "subject": caller.subject, "token_sha256": caller.sha256,
        }
        try:
            target = resolve(config, body.protocol, body.host, body.path)
        except InvalidRequest as exc:
            audit.decision("invalid_request", reason=exc.reason, identity=identity_for(None, claims), **who)
            metrics.decided("", "invalid_request")
            raise
        where = {"repository": target.repository, "region": target.region}
        hold = suspended(config, caller.issuer.name, claims)
        if hold is not None:
            identity = identity_for(None, claims)
            audit.decision("denied", reason="suspended", deny=hold.label, identity=identity, **who, **where)
            metrics.decided("", "denied")
            raise AccessDenied(_suspension(identity, caller, hold.entry.reason))
        grant = decide(config, caller.issuer.name, claims, target.repository, target.region)
        if grant is None:
            identity = identity_for(None, claims)
            audit.decision("denied", identity=identity, **who, **where)
            metrics.decided("", "denied")
            raise AccessDenied(
                f"No ccweb rule grants {identity} (subject {caller.subject!r} of issuer "
                f"{caller.issuer.name!r}) access to repository {target.repository!r} in {target.region}; "
                "ask the owners of the ccweb policy for access, or check the repository name."
            )
        rule = grant.rule
        name = sts_name(grant.identity)
        decided = {"rule": rule.name, "role_arn": rule.role_arn, "identity": grant.identity, "source_identity": name}
        key = (state.session_rule(rule), caller.issuer.name, grant.identity)
        try:
            session = await sessions.get(key, AssumeRoleRequest(
                role_arn=rule.role_arn,
                session_name=name,
                source_identity=name,
                policy=session_policy(rule),
                duration_seconds=config.session_duration(rule),
            ))
        except UpstreamUnavailable as exc:
            audit.decision("upstream_unavailable", reason=exc.reason, **who, **where, **decided)
            metrics.decided(rule.name, "upstream_unavailable")
            raise
        now = int(clock())
        password = git_password(
            session.secret_access_key,
            hostname=target.hostname,
            path=target.path,
            region=target.region,
            now=datetime.fromtimestamp(now, UTC),
        )
        expiry = now + PASSWORD_LIFETIME_SECONDS
        if session.expiration is not None:
            expiry = min(expiry, int(session.expiration.timestamp()))
        audit.decision("issued", **who, **where, **decided)
        metrics.decided(rule.name, "issued")
        return json.dumps({
            "username": git_username(session),
            "password": password,
            "expires_at": _iso(expiry),
            "password_expiry_utc": expiry,
            "region": target.region,
            "repository": target.repository,
            "rule": rule.name,
            "role_arn": rule.role_arn,
        }, separators=(",", ":")).encode()

    async def credentials_asgi(scope: Scope, receive: Receive, send: Send) -> None:
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break

        async def read_body() -> bytes:
            body = bytearray()
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    raise ClientGone
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    return bytes(body)

        try:
            payload = await issue(authorization, read_body)
        except ClientGone:
            return
        except ServiceError as exc:
            await _error(exc.status, exc.error, exc.detail, exc.headers())(scope, receive, send)
            return
        except Exception as exc:  # noqa: BLE001 (answered and logged as the app's own handler does)
            await _unexpected(exc)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
        ]})
        await send({"type": "http.response.body", "body": payload})

    # POST /v1/credentials, the route every git call takes, goes around FastAPI's layers (dependency solving,
    # exit stacks, Request and Response objects), through ccweb's own middlewares only.
    # Its metrics label comes from FastAPI's route for it, the only one that can match, not from a scan of all.
    documented = [route for route in app.router.routes if getattr(route, "path", None) == "/v1/credentials"]
    app.fast_paths[("POST", "/v1/credentials")] = RequestId(RequestMetrics(
        RequestLimits(credentials_asgi), metrics=metrics, routes=documented
    ))

    @app.get("/v1/whoami", response_model=WhoAmI, responses={s: ERROR_RESPONSES[s] for s in (401, 429, 503)},
             summary="The verified identity and the rules it matches")
    async def whoami(caller: Caller, state: Current) -> WhoAmI:
        hold = suspended(state.config, caller.issuer.name, caller.claims)
        rules = [] if hold else matching_rules(state.config, caller.issuer.name, caller.claims)
        identity = identity_for(rules[0] if rules else None, caller.claims)
        return WhoAmI(
            issuer=caller.issuer.name,
            issuer_url=caller.issuer.issuer,
            subject=caller.subject,
            identity=identity,
            expires_at=_iso(caller.expires_at),
            rules=[RuleSummary(**item) for item in describe(rules)],
            suspended=_suspension(identity, caller, hold.entry.reason) if hold else None,
        )

    @app.get("/.well-known/ccweb", response_model=Discovery, summary="What the helper needs to know")
    async def discovery(state: Current) -> Discovery:
        return _discovery(state.config)

    @app.get(HELPER_PATH, summary="ccweb-helper as one file: a Python 3.9+ zipapp with no dependencies",
             response_class=Response, responses={
                 200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                 304: {"description": "Not modified: the If-None-Match ETag is the current one"}})
    async def helper_download(request: Request) -> Response:
        bundle = helper_zipapp()
        etag = f'"{bundle.sha256}"'
        headers = {"ETag": etag, "Cache-Control": "public, max-age=300",
                   "Content-Disposition": 'attachment; filename="ccweb-helper"'}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(bundle.content, media_type="application/octet-stream", headers=headers)

    @app.get("/healthz", summary="Liveness", response_model=Health)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness, with the state of each issuer's key set", response_model=Readiness)
    async def readyz() -> JSONResponse:
        # ok; degraded (200: an issuer serves stale keys or has none, or STS failed after its retries);
        # unavailable (503: no issuer has keys, so no token can be verified). An IdP or STS outage that every
        # replica shares does not take replicas out of service for the issuers that still work.
        issuers = await policy.current.verifier.readiness()
        sts_state = {"state": "failing" if sessions.upstream_error else "ok", "last_error": sessions.upstream_error}
        if not any(i["keys_loaded"] for i in issuers.values()):
            status = "unavailable"
        elif sessions.upstream_error or any(i["state"] != "ok" for i in issuers.values()):
            status = "degraded"
        else:
            status = "ok"
        body = {"status": status, "issuers": issuers, "sts": sts_state, "cached_sessions": len(sessions),
                "policy": _policy_info(policy)}
        return JSONResponse(body, status_code=503 if status == "unavailable" else 200)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)  # all workers' counts

    _install_error_handlers(app)
    _install_openapi(app)
    return app


def _discovery(config: Config) -> Discovery:
    return Discovery(
        version=__version__,
        audience=config.audience_for_ci,
        git_endpoints=[GitEndpointInfo(host=e.host, region=e.region) for e in config.git_endpoints],
        login=[
            LoginIssuer(name=i.name, issuer=i.issuer, client_id=i.login.client_id, scopes=list(i.login.scopes))
            for i in config.issuers if i.login is not None
        ],
        helper=HELPER_PATH,
    )


def _policy_info(policy: Policy) -> dict[str, Any]:
    current = policy.current
    return PolicyInfo(digest=current.digest, loaded_at=_iso(current.loaded_at), reloads=policy.reloads,
                      reload_error=policy.last_error).model_dump()


def _suspension(identity: str, caller: VerifiedToken, reason: str | None) -> str:
    because = f" ({reason.rstrip('.')})" if reason else ""
    return (
        f"Access to ccweb for {identity} (subject {caller.subject!r} of issuer {caller.issuer.name!r}) is "
        f"suspended by its operators{because}; ask them to lift the suspension."
    )


def _credential_request(raw: bytes) -> CredentialRequest:
    try:
        return CredentialRequest.model_validate_json(raw)
    except ValidationError as exc:
        problems = []
        for item in exc.errors(include_url=False)[:3]:
            where = ".".join(str(p) for p in item.get("loc", ())) or "body"
            problems.append(f"{where}: {item.get('msg', 'invalid')}")
        raise InvalidRequest(
            "The request body must be a JSON object with string fields protocol, host and path ("
            + "; ".join(problems) + ").",
            reason="bad_body",
        ) from None


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _unexpected(exc: Exception) -> JSONResponse:
    log.error("unexpected error: %s", type(exc).__name__, exc_info=exc)
    return _error(500, "internal_error", "ccweb failed unexpectedly; the operators can find why in its log.",
                  response_headers())


class ClientGone(Exception):
    """The client went away before its request body arrived: nothing to answer."""


class CcwebApp(FastAPI):
    """FastAPI, plus fast paths: pure ASGI apps that serve one (method, path) ahead of everything else."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_paths: dict[tuple[str, str], ASGIApp] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            fast = self.fast_paths.get((scope["method"], scope["path"]))
            if fast is not None:
                await fast(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    async def service_error(_: Request, exc: Exception) -> Response:
        if not isinstance(exc, ServiceError):
            raise exc
        return _error(exc.status, exc.error, exc.detail, exc.headers())

    async def validation_error(_: Request, exc: Exception) -> Response:
        if not isinstance(exc, RequestValidationError):
            raise exc
        problems = []
        for item in exc.errors()[:3]:
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {item.get('msg', 'invalid')}")
        return _error(
            400, "invalid_request",
            "The request body must be a JSON object with string fields protocol, host and path ("
            + "; ".join(problems) + ").",
        )

    async def http_error(_: Request, exc: Exception) -> Response:
        if not isinstance(exc, StarletteHTTPException):
            raise exc
        codes = {404: "not_found", 405: "method_not_allowed"}
        detail = {404: "No such endpoint.", 405: "Method not allowed on this endpoint."}
        return _error(
            exc.status_code, codes.get(exc.status_code, "http_error"),
            detail.get(exc.status_code, str(exc.detail)), dict(exc.headers or {}),
        )

    async def unexpected(_: Request, exc: Exception) -> Response:
        return _unexpected(exc)

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def _install_openapi(app: FastAPI) -> None:
    """The generated document, minus FastAPI's 422 (this service answers 400 for a bad body)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            document_refusals(schema)
            components = schema.get("components", {}).get("schemas", {})
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
