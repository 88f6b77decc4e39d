"""The API's FastAPI routes besides ``POST /v1/credentials`` and ``/v1/git-credential``: whoami, discovery (JSON
and text), the helper downloads (the Python zipapp and the ``sh`` script), health, readiness and metrics. Each
reads the running policy once (one snapshot per request) and decides, where it decides, only through
``Policy.decide``."""

# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST

from ccweb import __version__
from ccweb.api_models import (
    Discovery,
    GitEndpointInfo,
    Health,
    LoginIssuer,
    PolicyInfo,
    Readiness,
    RuleSummary,
    WhoAmI,
)
from ccweb.config import Config
from ccweb.credentials import (
    CredentialFlow,
    bearer_token,
    distributed_sentence,
    iso_time,
    refusal_sentence,
    suspension_sentence,
)
from ccweb.display import printable
from ccweb.downloads import CHECKSUM_SUFFIX, checksum_response, file_response
from ccweb.errors import InvalidToken, RateLimited, UpstreamUnavailable
from ccweb.grc import grc_info
from ccweb.helper_dist import helper_zipapp
from ccweb.openapi import error_responses
from ccweb.policy import Distributed, Entitled, Granted, Suspended
from ccweb.reload import RunningPolicy
from ccweb.responses import JsonAnswer
from ccweb.shell_dist import SHELL_HELPER_PATH, shell_download
from ccweb.sts import StsTarget
from ccweb.textapi import DISCOVERY_TEXT_PATH, TEXT_CONTENT_TYPE, discovery_text

HELPER_PATH = "/helper/ccweb-helper"


def discovery_document(config: Config) -> Discovery:
    return Discovery(
        version=__version__,
        audience=config.audience_for_ci,
        git_endpoints=[GitEndpointInfo(host=e.host, region=e.region) for e in config.git_endpoints],
        login=[
            LoginIssuer(name=i.name, issuer=i.issuer, client_id=i.login.client_id, scopes=list(i.login.scopes))
            for i in config.issuers if i.login is not None
        ],
        helper=HELPER_PATH,
        grc=grc_info(config.grc),
    )


def _checksum_doc(name: str) -> dict[str, Any]:
    """The OpenAPI description of the checksum route of the download ``name``."""
    line = {"type": "string", "pattern": "^[0-9a-f]{64}  " + name.replace(".", "\\.") + "\n$"}
    return {"summary": f"The SHA-256 of {name}, as sha256sum writes it (check the download with sha256sum -c)",
            "response_class": Response, "responses": {
                200: {"description": f"One line: 64 hex digits, two spaces, {name} (ETag: the SHA-256 of the line)",
                      "content": {"text/plain": {"schema": line}}},
                304: {"description": "Not modified: the If-None-Match ETag is the current one"}}}


def _shown(error: str | None) -> str | None:
    """An error text as ``/readyz`` shows it: every character that could drive a terminal escaped (JSON itself
    escapes only U+0000-U+001F; an operator reads the answer with ``curl``)."""
    return None if error is None else printable(error)


def _policy_info(running: RunningPolicy) -> dict[str, Any]:
    current, refused = running.current, running.refused
    return PolicyInfo(digest=current.policy.digest, loaded_at=iso_time(current.loaded_at), reloads=running.reloads,
                      reload_error=None if refused is None else [printable(key) for key in refused.keys],
                      reload_refused_at=None if refused is None else iso_time(refused.at)).model_dump()


def api_router(flow: CredentialFlow, *, metrics_route: bool = True, sts_target: StsTarget | None = None) -> APIRouter:
    """``metrics_route``: serve ``/metrics`` (not when a listener of its own does, ``ccweb serve --metrics-port``).
    ``sts_target``: the STS endpoint and signing region ``/readyz`` shows (null there without one)."""
    running, sessions, metrics = flow.running, flow.sessions, flow.metrics
    router = APIRouter()
    bearer = HTTPBearer(auto_error=False, description="An OIDC ID token (JWT) from a trusted issuer.")

    @router.get("/v1/whoami", response_model=WhoAmI, summary="The verified identity and the rules it matches",
                responses=error_responses(InvalidToken, RateLimited, UpstreamUnavailable),
                dependencies=[Depends(bearer)])  # documents the bearer token; read as the credentials route reads it
    async def whoami(request: Request) -> Response:
        snapshot = running.current
        caller = await flow.caller(snapshot, bearer_token(request.headers.get("authorization")))
        decision = snapshot.policy.decide(caller.issuer.name, caller.claims, None)
        rules = (tuple(zip(decision.rules, decision.names, decision.outcomes, strict=True))
                 if isinstance(decision, Entitled) else ())
        return JsonAnswer(WhoAmI(  # a lone surrogate in a claim (sub, a source_identity claim) escaped, not a 500
            issuer=caller.issuer.name,
            issuer_url=caller.issuer.issuer,
            subject=caller.subject,
            identity=decision.identity,
            expires_at=iso_time(caller.expires_at),
            rules=[RuleSummary(rule=r.name, role_arn=r.role_arn, repositories=list(r.source.repositories),
                               access=r.access, source_identity=name, source_identity_claim=r.identity_claim,
                               session_tags=outcome.tags if isinstance(outcome, Granted) else {},
                               refused=None if isinstance(outcome, Granted) else refusal_sentence(outcome, caller))
                   for r, name, outcome in rules],
            suspended=(suspension_sentence(decision.identity, caller, decision.entry.reason)
                       if isinstance(decision, Suspended) else None),
            refused=distributed_sentence(decision, caller) if isinstance(decision, Distributed) else None,
        ).model_dump(mode="json"))

    @router.get("/.well-known/ccweb", response_model=Discovery, summary="What the helper needs to know")
    async def discovery() -> Discovery:
        return discovery_document(running.current.config)

    @router.get(DISCOVERY_TEXT_PATH, summary="What the helper needs to know, as key=value lines",
                response_class=Response, responses={200: {
                    "description": "audience=, then git_endpoint=, grc_region= and grc_endpoint= lines (each zero or "
                                   "more; grc_endpoint= is a region and a URL prefix)",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def discovery_as_text() -> Response:
        return Response(discovery_text(discovery_document(running.current.config)), media_type=TEXT_CONTENT_TYPE)

    @router.get(SHELL_HELPER_PATH, summary="ccweb-helper.sh: the helper in POSIX sh, for images with git, sh and "
                "curl but no Python", response_class=Response, responses={
                    200: {"description": "The script (ETag: the SHA-256 of its bytes, the same on every replica)",
                          "content": {"text/plain": {"schema": {"type": "string"}}}},
                    304: {"description": "Not modified: the If-None-Match ETag is the current one"}})
    async def shell_helper_download(request: Request) -> Response:
        return file_response(shell_download(), request.headers.get("if-none-match"))

    @router.get(HELPER_PATH, summary="ccweb-helper as one file: a Python 3.9+ zipapp with no dependencies",
                response_class=Response, responses={
                    200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    304: {"description": "Not modified: the If-None-Match ETag is the current one"}})
    async def helper_download(request: Request) -> Response:
        return file_response(helper_zipapp(), request.headers.get("if-none-match"))

    # Each download's SHA-256 beside it, in sha256sum's format, from the Download the route above serves.
    @router.get(SHELL_HELPER_PATH + CHECKSUM_SUFFIX, **_checksum_doc("ccweb-helper.sh"))
    async def shell_helper_checksum(request: Request) -> Response:
        return checksum_response(shell_download(), request.headers.get("if-none-match"))

    @router.get(HELPER_PATH + CHECKSUM_SUFFIX, **_checksum_doc("ccweb-helper"))
    async def helper_checksum(request: Request) -> Response:
        return checksum_response(helper_zipapp(), request.headers.get("if-none-match"))

    # HEAD for the downloads and their checksums (``curl -I``, a CI cache's check): the GET's status and headers,
    # Content-Length included; uvicorn sends no body. Not in the OpenAPI document, which FastAPI would give a second
    # operation.
    for path, download in ((SHELL_HELPER_PATH, shell_helper_download), (HELPER_PATH, helper_download),
                           (SHELL_HELPER_PATH + CHECKSUM_SUFFIX, shell_helper_checksum),
                           (HELPER_PATH + CHECKSUM_SUFFIX, helper_checksum)):
        router.add_api_route(path, download, methods=["HEAD"], response_class=Response, include_in_schema=False)

    @router.get("/healthz", summary="Liveness", response_model=Health)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness, with the state of each issuer's key set", response_model=Readiness)
    async def readyz() -> JSONResponse:
        # ok; degraded (200: an issuer serves stale keys or has none, or STS failed after its retries);
        # unavailable (503: no issuer has keys, so no token can be verified). An IdP or STS outage that every
        # replica shares does not take replicas out of service for the issuers that still work.
        issuers = {name: {**state, "last_error": _shown(state["last_error"])}
                   for name, state in (await running.current.verifier.readiness()).items()}
        sts_state = {"state": "failing" if sessions.upstream_error else "ok",
                     "last_error": _shown(sessions.upstream_error),
                     "endpoint": None if sts_target is None else _shown(sts_target.endpoint),
                     "region": None if sts_target is None else _shown(sts_target.region)}
        if not any(i["keys_loaded"] for i in issuers.values()):
            status = "unavailable"
        elif sessions.upstream_error or any(i["state"] != "ok" for i in issuers.values()):
            status = "degraded"
        else:
            status = "ok"
        body = {"status": status, "issuers": issuers, "sts": sts_state, "cached_sessions": len(sessions),
                "policy": _policy_info(running)}
        return JSONResponse(body, status_code=503 if status == "unavailable" else 200)

    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)  # all workers' counts

    if metrics_route:
        router.add_api_route("/metrics", prometheus, methods=["GET"], summary="Prometheus metrics",
                             response_class=Response,
                             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
    return router
