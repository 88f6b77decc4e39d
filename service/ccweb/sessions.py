"""STS sessions: AssumeRole through an interface, cached in memory per (rule, identity), single-flight.

A cached session is reused for every repository its rule covers until ``refresh_margin`` (15 minutes)
of validity remain, so a password signed from it is always good for its full 15 minutes. Concurrent
requests for the same key share one STS call. The cache is bounded (least recently used goes first).

When STS throttles, answers 5xx, cannot be reached or hangs, the call is retried with jittered
exponential backoff inside one total time budget (``aws.retry_budget_seconds``), and callers that join
meanwhile wait for that same retrying call. botocore itself makes one attempt per call, so its retries
never multiply the budget. A shared retry quota stops a crowd of distinct callers from turning an STS
brown-out into a retry storm. Refusals (AccessDenied, a bad policy) are never retried.

boto3 blocks, so ``BotoSTS`` runs its calls in a thread pool of its own, ``STS_CONCURRENCY`` threads with as
many pooled connections: a cold start of many identities at once (a fleet of CI jobs) makes its STS calls
side by side instead of queueing behind asyncio's small default pool (min(32, CPUs + 4) threads) and
botocore's 10 connections, and the pool also caps how many calls one worker has in flight at STS.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from ccweb.errors import UpstreamUnavailable
from ccweb.metrics import Metrics
from ccweb.signing import AwsCredentials

log = logging.getLogger("ccweb.sessions")
T = TypeVar("T")

REFRESH_MARGIN_SECONDS = 15 * 60
CHAINED_MAX_SECONDS = 3600  # STS's limit for a role assumed with credentials of another role
STS_CONCURRENCY = 64
"""AssumeRole calls one ``BotoSTS`` makes at once (its threads and pooled connections); more wait their turn."""
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
    """AssumeRole with boto3, honouring the standard AWS environment (``AWS_ENDPOINT_URL_STS`` included)."""

    def __init__(
        self,
        *,
        session: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 5.0,
        max_attempts: int = 1,
        concurrency: int = STS_CONCURRENCY,
    ) -> None:
        """``max_attempts`` is botocore's total per call; keep it 1 and let ``RetryPolicy`` retry, inside
        its budget. ``concurrency``: calls in flight at once (threads, and botocore's pooled connections)."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        import boto3  # noqa: PLC0415 (heavy; only the service needs it)
        from botocore.config import Config as BotoConfig  # noqa: PLC0415

        # botocore logs whole STS response bodies (secret keys, session tokens) at DEBUG: never let it.
        for name in ("botocore", "boto3"):
            logger = logging.getLogger(name)
            if logger.level < logging.INFO:
                logger.setLevel(logging.INFO)
        session = session or boto3.session.Session()
        self._client = session.client(
            "sts",
            region_name=region or session.region_name or "us-east-1",
            endpoint_url=endpoint_url,
            config=BotoConfig(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"mode": "standard", "total_max_attempts": max_attempts},
                max_pool_connections=concurrency,
            ),
        )
        self.concurrency = concurrency
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ccweb-sts")

    async def assume_role(self, request: AssumeRoleRequest) -> AwsCredentials:
        # As asyncio.to_thread, in this client's own pool: the context (the request id of log lines) goes along.
        call = functools.partial(contextvars.copy_context().run, self._assume_role, request)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _assume_role(self, request: AssumeRoleRequest) -> AwsCredentials:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            response = self._client.assume_role(
                RoleArn=request.role_arn,
                RoleSessionName=request.session_name,
                SourceIdentity=request.source_identity,
                Policy=request.policy,
                DurationSeconds=request.duration_seconds,
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            retryable = code in RETRYABLE_CODES or status >= 500 or status == 429
            raise StsError(code, str(error.get("Message", "")), retryable=retryable) from None
        except BotoCoreError as exc:
            raise StsError(type(exc).__name__, "could not reach STS", retryable=True) from None
        creds = response["Credentials"]
        expiration = creds["Expiration"]
        if isinstance(expiration, str):
            expiration = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
        return AwsCredentials(
            creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], expiration.astimezone(UTC)
        )


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
