"""STS sessions: AssumeRole through an interface, cached in memory per (rule, identity), single-flight.

A cached session is reused for every repository its rule covers until ``refresh_margin`` (15 minutes)
of validity remain, so a password signed from it is always good for its full 15 minutes. Concurrent
requests for the same key share one STS call. The cache is bounded (least recently used goes first).

When STS throttles, answers 5xx, cannot be reached or hangs, the call is retried with jittered
exponential backoff inside one total time budget (``aws.retry_budget_seconds``), and callers that join
meanwhile wait for that same retrying call. Each attempt is one HTTP request, so no lower layer's retries
multiply the budget. A shared retry quota stops a crowd of distinct callers from turning an STS
brown-out into a retry storm. Refusals (AccessDenied, a bad policy) are never retried.

``BotoSTS`` calls AssumeRole on the event loop itself: boto3 resolves the service's credentials, the STS
endpoint and the signing region once; each call is a Query API request signed with botocore's SigV4 and sent
with shared ``httpx.AsyncClient``s (pools of ``SHARD_CONNECTIONS``: httpcore's pool costs grow with the square
of its size), its XML answer parsed with ElementTree. No thread per call (botocore's own call path costs
milliseconds of CPU under the GIL, and 64 threads of it starved the event loop during a cold start of many
identities); an ``asyncio.Semaphore`` caps the calls one worker has in flight at STS (``STS_CONCURRENCY``, as
many pooled connections in all). It honours ``ca_bundle``/``AWS_CA_BUNDLE`` and the proxy environment
(``HTTPS_PROXY``, ``NO_PROXY``, …) as botocore would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

import httpx

from ccweb import __version__
from ccweb.errors import UpstreamUnavailable
from ccweb.metrics import Metrics
from ccweb.signing import AwsCredentials

log = logging.getLogger("ccweb.sessions")
T = TypeVar("T")

REFRESH_MARGIN_SECONDS = 15 * 60
CHAINED_MAX_SECONDS = 3600  # STS's limit for a role assumed with credentials of another role
STS_CONCURRENCY = 64
"""AssumeRole calls one ``BotoSTS`` makes at once (and its pooled connections); more wait their turn."""
SHARD_CONNECTIONS = 8
"""Connections per ``httpx`` pool of a ``BotoSTS``; it keeps as many pools as ``concurrency`` needs."""
STS_API_VERSION = "2011-06-15"
FORM = "application/x-www-form-urlencoded; charset=utf-8"
MAX_SESSIONS = 20_000
"""Sessions one cache (one worker) keeps. Each costs about 4 KiB of resident memory in a worker (1.5 KiB of
objects, a real-length session token most of it, plus the heap it leaves behind; bench/memory), so a full
cache stays near 170 MiB per worker, under 200 MiB. One evicted later costs one more AssumeRole."""
RETRY_BUDGET_SECONDS = 8.0  # under the helper's default 10 s timeout, so people see the 503, not a timeout
RETRYABLE_CODES = frozenset(
    {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
     "IDPCommunicationError", "ServiceUnavailable", "InternalFailure", "InternalError", "RequestTimeout",
     "PriorRequestNotComplete"}
)


@dataclass(frozen=True, slots=True)
class AssumeRoleRequest:
    role_arn: str
    session_name: str
    source_identity: str
    policy: str
    duration_seconds: int


class StsError(Exception):
    """STS refused or failed; ``code`` is the AWS error code (never a credential)."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retryable = retryable


class STSClient(Protocol):
    async def assume_role(self, request: AssumeRoleRequest) -> AwsCredentials: ...


class BotoSTS:
    """AssumeRole over asyncio: a request signed with botocore's SigV4, sent with a shared ``httpx.AsyncClient``.

    boto3 serves once, at construction, for what it resolves: the service's credentials chain (environment,
    IRSA web identity, instance role, …), the endpoint (``AWS_ENDPOINT_URL_STS``, regional and FIPS settings
    included) and the signing region. No call runs in a thread, except the refresh of refreshable service
    credentials when one is due (IMDS or web identity I/O). The client and the bound on calls in flight
    belong to the event loop that first uses them (a later loop gets its own); ``aclose()`` closes them.
    """

    def __init__(
        self,
        *,
        session: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 5.0,
        concurrency: int = STS_CONCURRENCY,
    ) -> None:
        """Each call is one HTTP attempt (``RetryPolicy`` retries, inside its budget). ``concurrency``: calls in
        flight at once (and pooled connections)."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        import boto3  # noqa: PLC0415 (heavy; only the service needs it)

        # botocore logs whole STS response bodies and request signatures at DEBUG, httpcore its exchanges:
        # never let them.
        for name in ("botocore", "boto3", "httpcore"):
            logger = logging.getLogger(name)
            if logger.level < logging.INFO:
                logger.setLevel(logging.INFO)
        session = session or boto3.session.Session()
        # Never called: it resolves the endpoint and the signing region as boto3 would.
        client = session.client("sts", region_name=region or session.region_name or "us-east-1",
                                endpoint_url=endpoint_url)
        self.endpoint_url: str = client.meta.endpoint_url
        self.region: str = _signing_region(client)
        self._credentials: Any = session.get_credentials()  # botocore resolved them for the client already
        self.concurrency = concurrency
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._url = self.endpoint_url if urlsplit(self.endpoint_url).path else self.endpoint_url + "/"
        # Made once, here (loading a CA bundle takes milliseconds), and shared by every client.
        bundle = _config_variable(session, "ca_bundle") or os.environ.get("AWS_CA_BUNDLE")  # profile, or environment
        self._tls = ssl.create_default_context(cafile=bundle) if bundle else httpx.create_ssl_context(trust_env=True)
        self._transport: _Transport | None = None

    def _current(self) -> _Transport:
        loop = asyncio.get_running_loop()
        transport = self._transport
        if transport is None or transport.loop is not loop:
            # httpcore's pool rescans every connection for every queued request (quadratic in its size, several
            # milliseconds a call at 64): pools of at most SHARD_CONNECTIONS, each call on the least busy one.
            shards = -(-self.concurrency // SHARD_CONNECTIONS)
            size = -(-self.concurrency // shards)
            clients = [
                httpx.AsyncClient(
                    timeout=self._timeout,
                    limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                    verify=self._tls,
                    trust_env=True,  # HTTPS_PROXY, HTTP_PROXY, NO_PROXY, as botocore honours them
                    follow_redirects=False,
                    headers={"User-Agent": f"ccweb/{__version__}"},
                )
                for _ in range(shards)
            ]
            transport = self._transport = _Transport(loop, clients, [0] * shards,
                                                     asyncio.Semaphore(self.concurrency), asyncio.Lock())
        return transport

    async def aclose(self) -> None:
        """Close the HTTP client (and its pooled connections); a later call opens a new one."""
        transport, self._transport = self._transport, None
        if transport is not None:
            for client in transport.clients:
                await client.aclose()

    async def _frozen_credentials(self, transport: _Transport) -> Any:
        credentials = self._credentials
        if credentials is None:
            raise StsError("NoCredentials", "no AWS credentials found for the service (environment, web identity, "
                           "shared files or instance role)", retryable=False)
        due = getattr(credentials, "refresh_needed", None)
        if due is None or not due():
            return credentials.get_frozen_credentials()
        async with transport.refreshing:  # one refresh at a time, off the event loop; its waiters reuse it
            if not due():
                return credentials.get_frozen_credentials()
            try:
                return await asyncio.to_thread(credentials.get_frozen_credentials)
            except Exception as exc:  # noqa: BLE001 (whatever the provider raises; its words may hold secrets)
                raise StsError(type(exc).__name__, "could not refresh the service's own AWS credentials",
                               retryable=True) from None

    async def assume_role(self, request: AssumeRoleRequest) -> AwsCredentials:
        from botocore.auth import SigV4Auth  # noqa: PLC0415
        from botocore.awsrequest import AWSRequest  # noqa: PLC0415

        transport = self._current()
        frozen = await self._frozen_credentials(transport)
        body = urlencode({
            "Action": "AssumeRole",
            "Version": STS_API_VERSION,
            "RoleArn": request.role_arn,
            "RoleSessionName": request.session_name,
            "SourceIdentity": request.source_identity,
            "Policy": request.policy,
            "DurationSeconds": str(request.duration_seconds),
        }).encode()
        async with transport.slots:
            signed = AWSRequest(method="POST", url=self._url, data=body, headers={"Content-Type": FORM})
            SigV4Auth(frozen, "sts", self.region).add_auth(signed)  # signed when sent: its date is now
            # The least busy pool: with at most ``concurrency`` calls in flight, none holds more than its size.
            shard = transport.load.index(min(transport.load))
            transport.load[shard] += 1
            try:
                response = await transport.clients[shard].post(self._url, content=body,
                                                               headers=dict(signed.headers.items()))
            except httpx.HTTPError as exc:
                raise StsError(type(exc).__name__, "could not reach STS", retryable=True) from None
            except RuntimeError:  # the client was closed under this call (the app is shutting down)
                raise StsError("ClientClosed", "the connection to STS was closed", retryable=True) from None
            finally:
                transport.load[shard] -= 1
        return _parse_assume_role(response.status_code, response.content)


def _signing_region(client: Any) -> str:
    """The region STS wants signatures scoped to: the client's, but for what botocore's endpoint rules say
    otherwise (with ``sts_regional_endpoints = legacy`` the global ``sts.amazonaws.com`` signs for us-east-1)."""
    region: str = client.meta.region_name
    try:
        endpoint = client._ruleset_resolver.construct_endpoint(  # botocore has no public way to ask
            operation_model=client.meta.service_model.operation_model("AssumeRole"), call_args={},
            request_context={},
        )
        schemes = endpoint.properties.get("authSchemes") or [{}]
        return str(schemes[0].get("signingRegion") or region)
    except Exception:  # noqa: BLE001 (another botocore): the one endpoint that signs elsewhere, by name
        return "us-east-1" if urlsplit(client.meta.endpoint_url).hostname == "sts.amazonaws.com" else region


def _config_variable(session: Any, name: str) -> str | None:
    """A setting of the boto3 session's configuration chain (environment, then profile), if any."""
    try:
        value = session._session.get_config_variable(name)  # boto3 keeps botocore's session here
    except Exception:  # noqa: BLE001 (not a boto3 session)
        return None
    return value if isinstance(value, str) and value else None


@dataclass(slots=True)
class _Transport:
    """What ``BotoSTS`` keeps per event loop: its HTTP clients and the calls in flight on each, the bound on calls
    in flight, the refresh lock."""

    loop: asyncio.AbstractEventLoop
    clients: list[httpx.AsyncClient]
    load: list[int]
    slots: asyncio.Semaphore
    refreshing: asyncio.Lock


def _text(element: ElementTree.Element | None, path: str) -> str | None:
    found = element.find(path) if element is not None else None
    return found.text if found is not None else None


def _parse_assume_role(status: int, body: bytes) -> AwsCredentials:
    """STS's XML answer as credentials, or the ``StsError`` it says (never quoting the body: it may hold
    credentials)."""
    try:
        # STS's own answer over TLS; expat expands no external entities and caps internal expansion.
        root = ElementTree.fromstring(body)  # noqa: S314
    except ElementTree.ParseError:
        root = None
    if status != 200:
        error = root.find(".//{*}Error") if root is not None else None
        code = _text(error, "{*}Code") or str(status)
        message = _text(error, "{*}Message") or f"STS answered HTTP {status}"
        retryable = code in RETRYABLE_CODES or status >= 500 or status == 429
        raise StsError(code, message, retryable=retryable)
    creds = root.find("{*}AssumeRoleResult/{*}Credentials") if root is not None else None
    key_id, secret = _text(creds, "{*}AccessKeyId"), _text(creds, "{*}SecretAccessKey")
    token, expiration = _text(creds, "{*}SessionToken"), _text(creds, "{*}Expiration")
    if key_id and secret and token and expiration:
        try:
            expires = datetime.fromisoformat(expiration.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
            return AwsCredentials(key_id.strip(), secret.strip(), token.strip(), expires.astimezone(UTC))
    raise StsError("MalformedResponse", "STS answered 200 without readable credentials", retryable=True)


def full_jitter(ceiling: float) -> float:
    return random.uniform(0.0, ceiling)  # noqa: S311 (backoff jitter, not a secret)


@dataclass
class RetryPolicy:
    """Retries of retryable ``StsError``s: jittered exponential backoff inside one total budget.

    After failed attempt n (from 0) it sleeps ``jitter(min(cap, base * 2**n))`` (full jitter); it neither
    sleeps past, nor waits for an attempt beyond, ``budget`` seconds from the start, and gives up at once
    when the next sleep would cross it. Retries spend a quota shared by every caller (``retry_cost``, or
    ``timeout_cost`` after a timeout; successes earn it back), so a crowd of callers during an outage
    makes one attempt each instead of a retry storm. An attempt the budget cuts short ends as the
    retryable ``StsError("Timeout")``. ``monotonic``, ``sleep`` and ``jitter`` are injectable for tests.
    """

    budget: float = RETRY_BUDGET_SECONDS
    base: float = 0.25
    cap: float = 4.0
    quota: float = 500.0
    retry_cost: float = 5.0
    timeout_cost: float = 10.0
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    jitter: Callable[[float], float] = full_jitter
    available: float = field(init=False)

    def __post_init__(self) -> None:
        self.available = self.quota

    async def run(self, attempt: Callable[[], Awaitable[T]]) -> T:
        deadline = self.monotonic() + self.budget
        spent = 0.0
        retries = 0
        while True:
            try:
                result = await asyncio.wait_for(attempt(), max(deadline - self.monotonic(), 0.0))
            except TimeoutError:
                raise StsError("Timeout", f"no answer within the {self.budget:g} s budget", retryable=True) from None
            except StsError as exc:
                if not exc.retryable:
                    raise
                delay = self.jitter(min(self.cap, self.base * 2**retries))
                cost = self.timeout_cost if "Timeout" in exc.code else self.retry_cost
                if self.monotonic() + delay >= deadline or self.available < cost:
                    raise
                self.available -= cost
                spent += cost
                retries += 1
                log.info("STS %s; retry %d in %.2fs", exc.code, retries, delay)
                await self.sleep(delay)
                continue
            self.available = min(self.quota, self.available + (spent or 1.0))
            return result


def _consume_exception(task: asyncio.Task[AwsCredentials]) -> None:
    if not task.cancelled():
        task.exception()  # the waiters re-raise it; this only silences "never retrieved" when none are left


SessionKey = tuple[str, str, str]
"""(rule name, issuer, identity)."""


def _chaining_limit(exc: StsError) -> bool:
    """STS's refusal of a chained session over an hour ("… exceeds the 1 hour session limit for roles assumed
    by role chaining")."""
    return exc.code == "ValidationError" and "role chaining" in str(exc)


class SessionCache:
    def __init__(
        self,
        sts: STSClient,
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = REFRESH_MARGIN_SECONDS,
        max_entries: int = MAX_SESSIONS,
        metrics: Metrics | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._metrics = metrics
        self._sts = sts
        self._clock = clock
        self._margin = refresh_margin
        self._max = max_entries
        self.retry = retry or RetryPolicy()
        self._sessions: OrderedDict[SessionKey, AwsCredentials] = OrderedDict()
        self._inflight: dict[SessionKey, asyncio.Task[AwsCredentials]] = {}
        self.sts_calls = 0
        """AssumeRole attempts, retries included."""
        self.hits = 0
        self.upstream_error: str | None = None
        """The AWS error code of the last call that failed after its retries; cleared by the next success."""
        self.chained = False
        """STS said this service's sessions are chained (at most an hour): later calls ask for that at once."""

    def __len__(self) -> int:
        return len(self._sessions)

    def _fresh(self, creds: AwsCredentials) -> bool:
        return creds.expiration is not None and creds.expiration.timestamp() - self._clock() > self._margin

    async def get(self, key: SessionKey, request: AssumeRoleRequest) -> AwsCredentials:
        cached = self._sessions.get(key)
        if cached is not None and self._fresh(cached):
            self._sessions.move_to_end(key)
            self.hits += 1
            if self._metrics:
                self._metrics.session_cache_hits.inc()
            return cached
        if self._metrics:
            self._metrics.session_cache_misses.inc()
        task = self._inflight.get(key)
        if task is None:
            # One STS call (with its retries) per key, owned by no single request: a caller that goes away
            # cancels nothing, and callers arriving meanwhile wait for the same call.
            task = asyncio.ensure_future(self._assume(key, request))
            task.add_done_callback(_consume_exception)
            self._inflight[key] = task
        return await asyncio.shield(task)

    async def _assume(self, key: SessionKey, request: AssumeRoleRequest) -> AwsCredentials:
        try:
            creds = await self._call_sts(request)
        finally:
            del self._inflight[key]
        self._store(key, creds)
        return creds

    async def _attempt(self, request: AssumeRoleRequest) -> AwsCredentials:
        self.sts_calls += 1
        started = time.monotonic()
        try:
            creds = await self._sts.assume_role(request)
        except StsError as exc:
            if self._metrics:
                self._metrics.sts_calls.labels(result=exc.code).inc()
            level = logging.INFO if exc.retryable else logging.WARNING
            log.log(level, "AssumeRole %s failed: %s (retryable=%s)", request.role_arn, exc.code, exc.retryable)
            raise
        elapsed = time.monotonic() - started
        if self._metrics:
            self._metrics.sts_calls.labels(result="ok").inc()
            self._metrics.sts_latency.observe(elapsed)
        log.debug("AssumeRole %s took %.3fs", request.role_arn, elapsed)
        return creds

    async def _call_sts(self, request: AssumeRoleRequest) -> AwsCredentials:
        attempts_before = self.sts_calls
        if self.chained and request.duration_seconds > CHAINED_MAX_SECONDS:
            request = replace(request, duration_seconds=CHAINED_MAX_SECONDS)
        try:
            try:
                creds = await self.retry.run(lambda: self._attempt(request))
            except StsError as exc:
                if not _chaining_limit(exc) or request.duration_seconds <= CHAINED_MAX_SECONDS:
                    raise
                # The service's own identity is a role (IRSA, an instance role): STS allows chained
                # sessions of one hour at most, and refuses longer ones outright.
                self.chained = True
                log.warning(
                    "AssumeRole %s: role chaining limits sessions to %d s; asking for that instead of %d s "
                    "(set session_duration to %d or less to silence this)",
                    request.role_arn, CHAINED_MAX_SECONDS, request.duration_seconds, CHAINED_MAX_SECONDS,
                )
                request = replace(request, duration_seconds=CHAINED_MAX_SECONDS)
                creds = await self.retry.run(lambda: self._attempt(request))
        except StsError as exc:
            attempts = self.sts_calls - attempts_before
            if exc.retryable:
                self.upstream_error = exc.code
                log.warning("AssumeRole %s gave up after %d attempt(s): %s", request.role_arn, attempts, exc.code)
                raise UpstreamUnavailable(
                    "AWS STS is failing or throttling right now; try again in a few seconds.",
                    reason="sts_unavailable",
                ) from None
            if exc.code == "NoCredentials":
                self.upstream_error = exc.code
                log.warning("AssumeRole %s: the service has no AWS credentials of its own", request.role_arn)
                raise UpstreamUnavailable(
                    "ccweb has no AWS credentials of its own to assume roles with; ask the ccweb operators to give "
                    "the service an AWS identity (IRSA, an instance role, or AWS_* variables).",
                    reason="sts_no_credentials",
                    retry_after=60,
                ) from None
            raise UpstreamUnavailable(
                f"AWS refused to let ccweb assume the role {request.role_arn} ({exc.code}); "
                "ask the ccweb operators to check that role's trust policy and permissions.",
                reason="sts_refused",
                retry_after=60,
            ) from None
        self.upstream_error = None
        if not self._fresh(creds):
            log.warning(
                "AssumeRole %s returned a session shorter than %ds; passwords will be shorter-lived",
                request.role_arn, self._margin,
            )
        return creds

    def _store(self, key: SessionKey, creds: AwsCredentials) -> None:
        self._sessions[key] = creds
        self._sessions.move_to_end(key)
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)

    def drop_rule(self, rule_name: str) -> None:
        for key in [k for k in self._sessions if k[0] == rule_name]:
            del self._sessions[key]
