"""STS sessions: AssumeRole through an ``STSClient``, cached in memory per (rule, identity), single-flight.

A cached session is reused for every repository its rule covers until ``refresh_margin``
(``REFRESH_MARGIN_SECONDS``, the passwords' lifetime) of validity remain, so a password signed from it is
always good for its whole lifetime. Concurrent
requests for the same key share one STS call, retried by the cache's ``RetryPolicy`` (``ccweb.retry``):
callers that join meanwhile wait for that same retrying call. The cache is bounded (least recently used
goes first). A service whose own identity is a role gets chained sessions of an hour at most: told so by
STS once, the cache asks for that from then on. A call that fails after its retries becomes the 503 of
``ccweb.sts_errors``. The STS client itself is ``ccweb.sts``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from ccweb.metrics import Metrics
from ccweb.retry import RetryPolicy
from ccweb.signing import PASSWORD_LIFETIME_SECONDS, AwsCredentials
from ccweb.sts import NO_CREDENTIALS, AssumeRoleRequest, STSClient, StsError
from ccweb.sts_errors import unavailable

log = logging.getLogger("ccweb.sessions")

REFRESH_MARGIN_SECONDS = PASSWORD_LIFETIME_SECONDS
CHAINED_MAX_SECONDS = 3600  # STS's limit for a role assumed with credentials of another role
MAX_SESSIONS = 20_000
"""Sessions one cache (one worker) keeps, least recently used evicted first: a bound on each worker's memory
(what a full cache costs is measured by bench/memory; figures in bench/README.md). One evicted later costs
one more AssumeRole."""


def _consume_exception(task: asyncio.Task[AwsCredentials]) -> None:
    if not task.cancelled():
        task.exception()  # the waiters re-raise it; this only silences "never retrieved" when none are left


SessionKey = tuple[str, str, str, str]
"""(the rule's ``name#fingerprint``, issuer, identity, the session tags' fingerprint: "" without tags), as
``ccweb.policy`` makes it: a person whose tags changed never gets the session cached for the old ones."""


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

    async def _retried(self, request: AssumeRoleRequest) -> AwsCredentials:
        """One call with its retries, at most an hour long once STS has said the sessions are chained."""
        if self.chained and request.duration_seconds > CHAINED_MAX_SECONDS:
            request = replace(request, duration_seconds=CHAINED_MAX_SECONDS)
        try:
            return await self.retry.run(lambda: self._attempt(request))
        except StsError as exc:
            if not _chaining_limit(exc) or request.duration_seconds <= CHAINED_MAX_SECONDS:
                raise
        # The service's own identity is a role (IRSA, an instance role): STS allows chained sessions of one
        # hour at most, and refuses longer ones outright.
        self.chained = True
        log.warning(
            "AssumeRole %s: role chaining limits sessions to %d s; asking for that instead of %d s "
            "(set session_duration to %d or less to silence this)",
            request.role_arn, CHAINED_MAX_SECONDS, request.duration_seconds, CHAINED_MAX_SECONDS,
        )
        chained = replace(request, duration_seconds=CHAINED_MAX_SECONDS)
        return await self.retry.run(lambda: self._attempt(chained))

    async def _call_sts(self, request: AssumeRoleRequest) -> AwsCredentials:
        attempts_before = self.sts_calls
        try:
            creds = await self._retried(request)
        except StsError as exc:
            if exc.retryable or exc.code == NO_CREDENTIALS:
                self.upstream_error = exc.code
            if exc.retryable:
                attempts = self.sts_calls - attempts_before
                log.warning("AssumeRole %s gave up after %d attempt(s): %s", request.role_arn, attempts, exc.code)
            elif exc.code == NO_CREDENTIALS:
                log.warning("AssumeRole %s: the service has no AWS credentials of its own", request.role_arn)
            raise unavailable(exc, request.role_arn) from None
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
