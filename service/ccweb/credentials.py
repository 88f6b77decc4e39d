"""One credential request, start to end: verify → resolve the target → decide → STS session → sign.

``CredentialFlow.issue`` is the whole of ``POST /v1/credentials`` and of ``POST /v1/git-credential`` (the same
request in git's credential format, ``ccweb.textapi``); every outcome ends in exactly one audit line and one
count of ``ccweb_decisions_total`` (``_record``). ``CredentialFlow.caller`` (verify, then the rate limit) is
shared with ``/v1/whoami``. ``CredentialsEndpoint`` serves the flow as a plain ASGI app, in the ``Wire`` of its
route (how the body is read and the answers written): git's busiest routes skip FastAPI's dependency solving
and Request/Response objects, and still pass through every middleware of the app, as routes of its router.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypedDict

from pydantic import ValidationError
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from ccweb import audit
from ccweb.api_models import CredentialRequest
from ccweb.errors import (
    AccessDenied,
    InvalidRequest,
    InvalidToken,
    RateLimited,
    ServiceError,
    UpstreamUnavailable,
    bad_body,
)
from ccweb.identity import default_identity
from ccweb.metrics import Metrics
from ccweb.policy import Distributed, Granted, NoRule, Suspended, Unidentified, Untagged
from ccweb.reload import RunningPolicy, Snapshot
from ccweb.responses import error_response, unexpected_response
from ccweb.sessions import SessionCache
from ccweb.signing import PASSWORD_LIFETIME_SECONDS, AwsCredentials, git_password, git_username
from ccweb.targets import Target, resolve
from ccweb.tokens import VerifiedToken, token_sha256

log = logging.getLogger("ccweb.credentials")
CREDENTIALS_PATH = "/v1/credentials"
MAX_DECISIONS = 3
"""Decisions one request may take when the policy is reloaded while STS answers it (each reload decides again)."""


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def suspension_sentence(identity: str, caller: VerifiedToken, reason: str | None) -> str:
    because = f" ({reason.rstrip('.')})" if reason else ""
    return (
        f"Access to ccweb for {identity} (subject {caller.subject!r} of issuer {caller.issuer.name!r}) is "
        f"suspended by its operators{because}; ask them to lift the suspension."
    )


def _no_rule_sentence(identity: str, caller: VerifiedToken, target: Target) -> str:
    return (
        f"No ccweb rule grants {identity} (subject {caller.subject!r} of issuer {caller.issuer.name!r}) access "
        f"to repository {target.repository!r} in {target.region}; ask the owners of the ccweb policy for access, "
        "or check the repository name."
    )


def _unidentified_sentence(decision: Unidentified, caller: VerifiedToken) -> str:
    return (
        f"The ccweb {decision.sentence(f'your token (subject {caller.subject!r} of issuer {caller.issuer.name!r})')}"
        "; AWS records that claim as the person or job behind every git call, and no other claim stands in for "
        "it. Ask your identity provider's administrators to add the claim to your token, or the owners of the "
        "ccweb policy to change the rule."
    )


def _untagged_sentence(decision: Untagged, caller: VerifiedToken) -> str:
    return (
        f"The ccweb {decision.sentence(f'your token (subject {caller.subject!r} of issuer {caller.issuer.name!r})')}"
        "; AWS compares the session's tags with the repositories' to grant access. Ask your identity provider's "
        "administrators for the claim in your token as one value a session tag can carry (a string, a number or a "
        "boolean, at most 256 characters of letters, digits, spaces and _ . : / = + - @), or the owners of the "
        "ccweb policy to change the rule."
    )


def distributed_sentence(decision: Distributed, caller: VerifiedToken) -> str:
    """The 403 of a token that left out a claim the policy reads (Entra ID's groups overage)."""
    whose = f"your token (subject {caller.subject!r} of issuer {caller.issuer.name!r})"
    return f"The ccweb {decision.sentence(whose, 'you are')}."


def refusal_sentence(decision: Unidentified | Untagged | Distributed, caller: VerifiedToken) -> str:
    """The 403 sentence of a rule's refusal (or a deny entry's that cannot be told), as the API answers it."""
    if isinstance(decision, Unidentified):
        return _unidentified_sentence(decision, caller)
    if isinstance(decision, Untagged):
        return _untagged_sentence(decision, caller)
    return distributed_sentence(decision, caller)


def missing_token() -> InvalidToken:
    """The 401 of a request with no ``Authorization: Bearer <token>`` (``bearer_token`` found none)."""
    return InvalidToken("No bearer token: send 'Authorization: Bearer <OIDC token>'.", reason="missing")


def validation_problems(exc: ValidationError) -> list[str]:
    """``field: what is wrong`` for each problem of a request body pydantic refused."""
    return [f"{'.'.join(str(p) for p in item.get('loc', ())) or 'body'}: {item.get('msg', 'invalid')}"
            for item in exc.errors(include_url=False)]


def _credential_request(raw: bytes) -> CredentialRequest:
    try:
        return CredentialRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise bad_body(validation_problems(exc)) from None


class Credential(TypedDict):
    """What ``CredentialFlow.issue`` answers: the 200 of ``POST /v1/credentials`` (``CredentialResponse``)."""

    username: str
    password: str
    expires_at: str
    password_expiry_utc: int
    region: str
    repository: str
    rule: str
    role_arn: str


def _json_credential(credential: Credential) -> bytes:
    return json.dumps(credential, separators=(",", ":")).encode()


class CredentialFlow:
    """``POST /v1/credentials`` and the caller check it shares with ``/v1/whoami``."""

    def __init__(self, running: RunningPolicy, sessions: SessionCache, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.running = running
        self.sessions = sessions
        self.metrics = metrics
        self.clock = clock

    def _record(self, outcome: str, rule: str = "", **fields: Any) -> None:
        """The one audit line and the one metrics count of a decision."""
        audit.decision(outcome, rule=rule or None, **fields)
        self.metrics.decided(rule, outcome)

    async def caller(self, snapshot: Snapshot, token: str | None) -> VerifiedToken:
        """The caller behind the bearer ``token``, within its rate limit; InvalidToken or RateLimited else."""
        if token is None:
            raise missing_token()
        try:
            caller = await snapshot.verifier.verify(token)
        except InvalidToken as exc:
            self._record("invalid_token", reason=exc.reason, token_sha256=token_sha256(token))
            raise
        limiter = snapshot.limiter
        wait = limiter.check((caller.issuer.name, caller.subject))
        if wait:
            identity = default_identity(caller.claims)
            self._record("rate_limited", issuer=caller.issuer.name, subject=caller.subject, identity=identity,
                         token_sha256=caller.sha256)
            raise RateLimited(
                f"Too many requests from {identity}: ccweb answers each identity {limiter.requests_per_minute} "
                f"times a minute, in bursts of up to {limiter.burst}; wait a little (Retry-After), and look for "
                "a script or job that runs git in a loop.",
                retry_after=wait,
            )
        return caller

    async def issue(self, token: str | None, read_body: Callable[[], Awaitable[bytes]],
                    parse: Callable[[bytes], CredentialRequest] = _credential_request,
                    render: Callable[[Credential], bytes] = _json_credential) -> bytes:
        """The credential for the request ``parse`` reads from the body (JSON by default), as ``render`` writes it
        (JSON by default); a ServiceError else."""
        snapshot = self.running.current  # one policy for the token, the body and the decision
        caller = await self.caller(snapshot, token)
        # The body is parsed after the token is verified, so an unauthenticated caller learns nothing.
        body = parse(await read_body())
        who: dict[str, Any] = {"issuer": caller.issuer.name, "subject": caller.subject, "token_sha256": caller.sha256}
        try:
            target = resolve(snapshot.config, body.protocol, body.host, body.path)
        except InvalidRequest as exc:
            self._record("invalid_request", reason=exc.reason, identity=default_identity(caller.claims), **who)
            raise
        where = {"repository": target.repository, "region": target.region}
        for _ in range(MAX_DECISIONS):
            grant = self._grant(snapshot, caller, target, who, where)
            session = await self._session(grant, who, where)
            if self.running.current is snapshot:
                break
            # The policy was reloaded while STS answered: what it decides now (a suspension or a narrowed rule
            # added meanwhile) applies to this request too. The same grant finds its session cached.
            snapshot = self.running.current
        return self._answer(grant, session, target, who=who, where=where, render=render)

    def _grant(self, snapshot: Snapshot, caller: VerifiedToken, target: Target, who: dict[str, Any],
               where: dict[str, Any]) -> Granted:
        decision = snapshot.policy.decide(caller.issuer.name, caller.claims, target)
        if isinstance(decision, Suspended):
            self._record("denied", reason="suspended", deny=decision.entry.label, identity=decision.identity,
                         **who, **where)
            raise AccessDenied(suspension_sentence(decision.identity, caller, decision.entry.reason))
        if isinstance(decision, NoRule):
            self._record("denied", identity=decision.identity, **who, **where)
            raise AccessDenied(_no_rule_sentence(decision.identity, caller, target))
        if isinstance(decision, Unidentified):
            self._record("denied", decision.rule.name, reason="no_source_identity", identity=decision.identity,
                         **who, **where)
            raise AccessDenied(_unidentified_sentence(decision, caller), reason="no_source_identity")
        if isinstance(decision, Untagged):
            self._record("denied", decision.rule.name, reason="no_session_tag",
                         identity=decision.identity, **who, **where)
            raise AccessDenied(_untagged_sentence(decision, caller), reason="no_session_tag")
        if isinstance(decision, Distributed):
            by = {"deny": decision.entry.label} if decision.entry is not None else {}
            self._record("denied", decision.rule.name if decision.rule is not None else "", reason="distributed_claim",
                         identity=decision.identity, **by, **who, **where)
            raise AccessDenied(distributed_sentence(decision, caller), reason="distributed_claim")
        return decision

    @staticmethod
    def _decided(grant: Granted) -> dict[str, Any]:
        return {"role_arn": grant.rule.role_arn, "identity": grant.identity, "source_identity": grant.source_identity}

    async def _session(self, grant: Granted, who: dict[str, Any], where: dict[str, Any]) -> AwsCredentials:
        try:
            return await self.sessions.get(grant.session_key, grant.request)
        except UpstreamUnavailable as exc:
            self._record("upstream_unavailable", grant.rule.name, reason=exc.reason, **who, **where,
                         **self._decided(grant))
            raise

    def _answer(self, grant: Granted, session: AwsCredentials, target: Target, *, who: dict[str, Any],
                where: dict[str, Any], render: Callable[[Credential], bytes]) -> bytes:
        """The answer's body; audited as ``issued`` only once it is made (``render`` may raise: a 500, and the audit
        line says ``error``)."""
        rule = grant.rule
        now = int(self.clock())
        password = git_password(session.secret_access_key, hostname=target.hostname, path=target.path,
                                region=target.region, now=datetime.fromtimestamp(now, UTC))
        expiry = now + PASSWORD_LIFETIME_SECONDS
        if session.expiration is not None:
            expiry = min(expiry, int(session.expiration.timestamp()))
        fields = {**who, **where, **self._decided(grant)}
        try:
            payload = render({
                "username": git_username(session),
                "password": password,
                "expires_at": iso_time(expiry),
                "password_expiry_utc": expiry,
                "region": target.region,
                "repository": target.repository,
                "rule": rule.name,
                "role_arn": rule.role_arn,
            })
        except Exception:
            self._record("error", rule.name, reason="unrenderable", **fields)
            raise
        self._record("issued", rule.name, **fields)
        return payload


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, as FastAPI's ``HTTPBearer`` reads it."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class ClientGone(Exception):
    """The client went away before its request body arrived: nothing to answer."""


class Wire(NamedTuple):
    """How a credentials route reads its request body and writes its answers; the flow between is the same."""

    parse: Callable[[bytes], CredentialRequest]
    render: Callable[[Credential], bytes]
    """The 200's body, made whole before anything is sent (an exception here is a 500, never part of a body)."""
    content_type: bytes
    error: Callable[[ServiceError], Response]
    unexpected: Callable[[BaseException], Response]
    """The 500 for any other exception, logged."""


JSON_WIRE = Wire(_credential_request, _json_credential, b"application/json", error_response, unexpected_response)
"""``POST /v1/credentials``: JSON in, JSON out."""


class CredentialsEndpoint:
    """``CredentialFlow.issue`` as a plain ASGI app, in ``wire``."""

    def __init__(self, flow: CredentialFlow, wire: Wire = JSON_WIRE) -> None:
        self.flow = flow
        self.wire = wire

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break

        async def read_body() -> bytes:
            body = await receive_body(receive)
            if body is None:
                raise ClientGone
            return body

        wire = self.wire
        try:
            payload = await self.flow.issue(bearer_token(authorization), read_body, wire.parse, wire.render)
        except ClientGone:
            return
        except ServiceError as exc:
            await wire.error(exc)(scope, receive, send)
            return
        except Exception as exc:  # noqa: BLE001 (answered and logged as the app's own handler does)
            await wire.unexpected(exc)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", wire.content_type), (b"content-length", str(len(payload)).encode()),
        ]})
        await send({"type": "http.response.body", "body": payload})


async def receive_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The request's body, or its first bytes past ``limit``; None when the client went away."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if (limit is not None and len(body) > limit) or not message.get("more_body", False):
            return bytes(body)


def route_path(scope: Scope) -> str:
    """The request's path below the app's ``root_path`` (a prefix a proxy or a mount took away), as routes see it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] == "/":
        return path[len(root):]
    return path


class CredentialsRoute(Route):
    """``POST <path>`` (``/v1/credentials``) in the app's router, served by a ``CredentialsEndpoint``. It matches
    first and by a plain comparison, and names itself in the scope as FastAPI's routes do (the metrics label it
    by)."""

    def __init__(self, endpoint: CredentialsEndpoint, path: str = CREDENTIALS_PATH) -> None:
        super().__init__(path, endpoint, methods=["POST"], include_in_schema=False)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or route_path(scope) != self.path:
            return Match.NONE, {}
        if scope["method"] != "POST":
            return Match.PARTIAL, {"endpoint": self.endpoint, "path_params": {}, "route": self}
        return Match.FULL, {"endpoint": self.endpoint, "path_params": {}, "route": self}
