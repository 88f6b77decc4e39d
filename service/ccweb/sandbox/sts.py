"""An in-memory STS stand-in: ``AssumeRole`` and ``GetCallerIdentity`` over the Query protocol boto3 speaks.

It validates what real STS validates for ccweb's calls (session name, source identity, packed policy size,
duration, session tags: ``check_tags``, in STS's own error codes and words), keeps every issued session (its
session tags and transitive keys too) so the sandbox git server can check signatures and session policies
the way CodeCommit does, and never talks to AWS. Credentials it mints carry the markers ``DEVSECRET`` and
``DEVSESSIONTOKEN`` so tests can prove they never reach a log. Its session tokens are as long as real ones
(``SESSION_TOKEN_CHARS``), so memory measured against it is what a cached real session costs, and it can
answer ``AssumeRole`` after a set ``latency`` (benchmarks), without holding up its event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ccweb.signing import AwsCredentials
from ccweb.tags import MAX_KEY_LENGTH, MAX_SESSION_TAGS, MAX_VALUE_LENGTH, outside_alphabet

NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
ROLE_ARN = re.compile(r"arn:aws(?:-cn|-us-gov)?:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})")
NAME = re.compile(r"[\w+=,.@-]{2,64}")
MAX_POLICY_CHARS = 2048
CALLER_ACCOUNT = "000000000000"
SESSION_TOKEN_CHARS = 1000
"""Real STS session tokens are opaque and of no fixed size: several hundred to over a thousand characters,
longer with session policies and tags. ccweb's sessions carry a session policy."""
Tags = tuple[tuple[str, str], ...]
"""Session tags, (key, value) in the order of the request."""


class StsFault(Exception):
    """An error STS answers with: HTTP status, AWS error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Hang:
    """A scripted fault: say nothing for ``seconds`` (longer than the client waits), then answer as usual."""

    seconds: float


THROTTLING = StsFault(400, "Throttling", "Rate exceeded")
INTERNAL_FAILURE = StsFault(500, "InternalFailure", "An internal error occurred")
SERVICE_UNAVAILABLE = StsFault(503, "ServiceUnavailable", "Service is unavailable")


@dataclass(frozen=True, slots=True)
class DevSession:
    role_arn: str
    account: str
    role_name: str
    role_session_name: str
    source_identity: str
    policy: str | None
    credentials: AwsCredentials
    caller: str = ""
    """The address the request came from, ``host:port`` (like CloudTrail's ``sourceIPAddress``)."""
    tags: Tags = ()
    """The session tags, in the order of the request (``Tags.member.N``)."""
    transitive_tag_keys: tuple[str, ...] = ()

    @property
    def access_key_id(self) -> str:
        return self.credentials.access_key_id

    @property
    def assumed_role_arn(self) -> str:
        return f"arn:aws:sts::{self.account}:assumed-role/{self.role_name}/{self.role_session_name}"


class DevSTSStore:
    """Issued sessions, by access key id; thread-safe (the API's boto3 calls arrive from worker threads).

    ``latency``: seconds each ``AssumeRole`` request waits before it is answered (``sleep``, by default
    ``asyncio.sleep``: other requests go on meanwhile); may be changed while serving. ``in_flight`` and
    ``max_in_flight`` count the ``AssumeRole`` requests being answered at once, now and at most.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        latency: float = 0.0,
        session_token_chars: int = SESSION_TOKEN_CHARS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if latency < 0 or session_token_chars < 32:
            raise ValueError("latency must be at least 0 and session_token_chars at least 32")
        self._clock = clock
        self.latency = latency
        self.sleep = sleep
        self.session_token_chars = session_token_chars
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._sessions: dict[str, DevSession] = {}
        self.calls: list[DevSession] = []
        self.fault: Callable[[dict[str, str]], None] | None = None
        """Called with the request parameters before each AssumeRole; may raise StsFault (tests)."""
        self.faults: deque[StsFault | Hang] = deque()
        """Scripted faults (tests): each AssumeRole request takes the next one, until none are left."""
        self.requests = 0
        """AssumeRole requests received, faulted ones included."""

    def assume_role(
        self,
        role_arn: str,
        session_name: str,
        source_identity: str | None,
        policy: str | None,
        duration: int,
        *,
        caller: str = "",
        tags: tuple[tuple[str | None, str | None], ...] = (),
        transitive_tag_keys: tuple[str, ...] = (),
    ) -> DevSession:
        """A session, or the ``StsFault`` STS would answer (session tags: ``check_tags``)."""
        match = ROLE_ARN.fullmatch(role_arn)
        if match is None:
            raise StsFault(400, "ValidationError", f"{role_arn!r} is not a valid role ARN")
        if not NAME.fullmatch(session_name):
            raise StsFault(400, "ValidationError", "RoleSessionName must match [\\w+=,.@-]{2,64}")
        if source_identity is not None and not NAME.fullmatch(source_identity):
            raise StsFault(400, "ValidationError", "SourceIdentity must match [\\w+=,.@-]{2,64}")
        if source_identity is not None and source_identity.lower().startswith("aws:"):
            raise StsFault(400, "ValidationError", "SourceIdentity cannot start with 'aws:'")
        if policy is not None:
            if len(policy) > MAX_POLICY_CHARS:
                raise StsFault(400, "PackedPolicyTooLarge", "the session policy is too large")
            try:
                json.loads(policy)
            except ValueError:
                raise StsFault(400, "MalformedPolicyDocument", "the session policy is not JSON") from None
        if not 900 <= duration <= 43200:
            raise StsFault(400, "ValidationError", "DurationSeconds must be between 900 and 43200")
        checked = check_tags(tags, transitive_tag_keys)
        expiration = datetime.fromtimestamp(int(self._clock()) + duration, UTC)
        credentials = AwsCredentials(
            "ASIA" + secrets.token_hex(8).upper(),
            "DEVSECRET" + secrets.token_urlsafe(24),
            ("DEVSESSIONTOKEN" + secrets.token_urlsafe(self.session_token_chars))[: self.session_token_chars],
            expiration,
        )
        session = DevSession(
            role_arn, match[1], match[2], session_name, source_identity or "", policy, credentials, caller,
            checked, transitive_tag_keys,
        )
        with self._lock:
            self._sessions[credentials.access_key_id] = session
            self.calls.append(session)
        return session

    def lookup(self, access_key_id: str) -> DevSession | None:
        with self._lock:
            return self._sessions.get(access_key_id)


_TAG_MEMBER = re.compile(r"Tags\.member\.([1-9][0-9]{0,3})\.(Key|Value)")
_TRANSITIVE_MEMBER = re.compile(r"TransitiveTagKeys\.member\.([1-9][0-9]{0,3})")
KEY_PATTERN = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]+"
VALUE_PATTERN = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*"
"""STS's patterns for a tag key and value, as its validation errors quote them (``ccweb.tags`` holds them)."""


def tags_of(params: dict[str, str]) -> tuple[tuple[tuple[str | None, str | None], ...], tuple[str, ...]]:
    """The session tags (key, value; None for a half that is missing) and transitive keys of an AssumeRole
    form, in the order of their member numbers."""
    members: dict[int, dict[str, str]] = {}
    transitive: dict[int, str] = {}
    for name, value in params.items():
        if found := _TAG_MEMBER.fullmatch(name):
            members.setdefault(int(found[1]), {})[found[2]] = value
        elif found := _TRANSITIVE_MEMBER.fullmatch(name):
            transitive[int(found[1])] = value
    return (tuple((members[n].get("Key"), members[n].get("Value")) for n in sorted(members)),
            tuple(transitive[n] for n in sorted(transitive)))


def _violations(text: str | None, where: str, low: int, high: int, pattern: str) -> list[str]:
    """STS's words for each constraint ``text`` (at ``where`` in the request) fails."""
    if text is None:
        return [f"Value null at '{where}' failed to satisfy constraint: Member must not be null"]
    found = []
    if len(text) < low:
        found.append(f"Value '{text}' at '{where}' failed to satisfy constraint: Member must have length greater "
                     f"than or equal to {low}")
    if len(text) > high:
        found.append(f"Value '{text}' at '{where}' failed to satisfy constraint: Member must have length less than "
                     f"or equal to {high}")
    if outside_alphabet(text) is not None:
        found.append(f"Value '{text}' at '{where}' failed to satisfy constraint: Member must satisfy regular "
                     f"expression pattern: {pattern}")
    return found


def check_tags(tags: tuple[tuple[str | None, str | None], ...], transitive: tuple[str, ...]) -> Tags:
    """``tags`` as STS takes them, or the ``StsFault`` it answers: a ``ValidationError`` listing every
    constraint broken (at most ``MAX_SESSION_TAGS`` tags and transitive keys, a key of 1 to ``MAX_KEY_LENGTH``
    characters, a value of up to ``MAX_VALUE_LENGTH``, both in STS's alphabet), then an ``InvalidParameterValue``
    for keys equal but for case, or a transitive key that is none of the tags."""
    broken = []
    for name, members in (("tags", tags), ("transitiveTagKeys", transitive)):
        if len(members) > MAX_SESSION_TAGS:
            broken.append(f"Value '{list(members)}' at '{name}' failed to satisfy constraint: Member must have "
                          f"length less than or equal to {MAX_SESSION_TAGS}")
    for n, (key, value) in enumerate(tags, 1):
        broken += _violations(key, f"tags.{n}.member.key", 1, MAX_KEY_LENGTH, KEY_PATTERN)
        broken += _violations(value, f"tags.{n}.member.value", 0, MAX_VALUE_LENGTH, VALUE_PATTERN)
    for n, key in enumerate(transitive, 1):
        broken += _violations(key, f"transitiveTagKeys.{n}.member", 1, MAX_KEY_LENGTH, KEY_PATTERN)
    if broken:
        errors = f"{len(broken)} validation error{'s' if len(broken) > 1 else ''}"
        raise StsFault(400, "ValidationError", f"{errors} detected: " + "; ".join(broken))
    checked = tuple((key or "", value or "") for key, value in tags)
    keys = {key.lower() for key, _ in checked}
    if len(keys) < len(checked):
        raise StsFault(400, "InvalidParameterValue",
                       "Duplicate tag keys found. Please note that Tag keys are case insensitive.")
    if any(key.lower() not in keys for key in transitive):
        raise StsFault(400, "InvalidParameterValue",
                       "The specified transitive tag key must be included in the requested tags.")
    return checked


def _xml_response(action: str, result: str) -> Response:
    body = (
        f'<{action}Response xmlns="{NAMESPACE}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>{secrets.token_hex(16)}</RequestId></ResponseMetadata></{action}Response>"
    )
    return Response(body, media_type="text/xml")


def _xml_error(fault: StsFault) -> Response:
    kind = "Sender" if fault.status < 500 else "Receiver"
    body = (
        f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{kind}</Type><Code>{escape(fault.code)}</Code>'
        f"<Message>{escape(fault.message)}</Message></Error><RequestId>{secrets.token_hex(16)}</RequestId>"
        "</ErrorResponse>"
    )
    return Response(body, status_code=fault.status, media_type="text/xml")


def _assume_role_result(session: DevSession) -> str:
    creds = session.credentials
    expiration = creds.expiration.strftime("%Y-%m-%dT%H:%M:%SZ") if creds.expiration else ""
    source = f"<SourceIdentity>{escape(session.source_identity)}</SourceIdentity>" if session.source_identity else ""
    return (
        f"{source}<AssumedRoleUser><Arn>{escape(session.assumed_role_arn)}</Arn>"
        f"<AssumedRoleId>AROA{session.account}:{escape(session.role_session_name)}</AssumedRoleId></AssumedRoleUser>"
        f"<Credentials><AccessKeyId>{creds.access_key_id}</AccessKeyId>"
        f"<SecretAccessKey>{creds.secret_access_key}</SecretAccessKey>"
        f"<SessionToken>{creds.session_token}</SessionToken><Expiration>{expiration}</Expiration></Credentials>"
        f"<PackedPolicySize>{len(session.policy or '') * 100 // MAX_POLICY_CHARS}</PackedPolicySize>"
    )


def _handle(store: DevSTSStore, params: dict[str, str], authorized: bool, caller: str) -> Response:
    if not authorized:
        raise StsFault(403, "MissingAuthenticationToken", "Request is missing Authentication Token")
    action = params.get("Action", "")
    if action == "GetCallerIdentity":
        arn = f"arn:aws:iam::{CALLER_ACCOUNT}:user/ccweb-sandbox"
        return _xml_response(
            action, f"<Arn>{arn}</Arn><UserId>AIDASANDBOX</UserId><Account>{CALLER_ACCOUNT}</Account>"
        )
    if action != "AssumeRole":
        raise StsFault(400, "InvalidAction", f"Could not find operation {action or '(none)'}")
    if store.fault is not None:
        store.fault(params)
    try:
        duration = int(params.get("DurationSeconds", "3600"))
    except ValueError:
        raise StsFault(400, "ValidationError", "DurationSeconds must be a number") from None
    tags, transitive = tags_of(params)
    session = store.assume_role(
        params.get("RoleArn", ""), params.get("RoleSessionName", ""), params.get("SourceIdentity"),
        params.get("Policy"), duration, caller=caller, tags=tags, transitive_tag_keys=transitive,
    )
    return _xml_response(action, _assume_role_result(session))


def _answer(store: DevSTSStore, params: dict[str, str], authorized: bool, caller: str) -> Response:
    try:
        return _handle(store, params, authorized, caller)
    except StsFault as fault:
        return _xml_error(fault)


def create_sts_app(store: DevSTSStore) -> Starlette:
    async def endpoint(request: Request) -> Response:
        raw = (await request.body()).decode("utf-8", "replace") if request.method == "POST" else ""
        query: dict[str, Any] = parse_qs(raw or request.url.query, keep_blank_values=True)
        params = {key: values[-1] for key, values in query.items()}
        authorized = request.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 ")
        caller = f"{request.client.host}:{request.client.port}" if request.client else ""
        if params.get("Action") != "AssumeRole" or not authorized:
            return _answer(store, params, authorized, caller)
        store.requests += 1
        store.in_flight += 1
        store.max_in_flight = max(store.max_in_flight, store.in_flight)
        try:
            if store.latency:
                await store.sleep(store.latency)
            fault = store.faults.popleft() if store.faults else None
            if isinstance(fault, Hang):
                await store.sleep(fault.seconds)
            elif fault is not None:
                return _xml_error(fault)
            return _answer(store, params, authorized, caller)
        finally:
            store.in_flight -= 1

    return Starlette(routes=[Route("/", endpoint, methods=["GET", "POST"])])


