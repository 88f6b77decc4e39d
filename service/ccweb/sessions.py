"""STS sessions: AssumeRole through an interface, cached in memory per (rule, identity), single-flight.

A cached session is reused for every repository its rule covers until ``refresh_margin`` (15 minutes)
of validity remain, so a password signed from it is always good for its full 15 minutes. Concurrent
requests for the same key share one STS call. The cache is bounded (least recently used goes first).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ccweb.errors import UpstreamUnavailable
from ccweb.metrics import Metrics
from ccweb.signing import AwsCredentials

log = logging.getLogger("ccweb.sessions")

REFRESH_MARGIN_SECONDS = 15 * 60
RETRYABLE_CODES = frozenset(
    {"Throttling", "ThrottlingException", "RequestLimitExceeded", "IDPCommunicationError",
     "ServiceUnavailable", "InternalFailure", "InternalError", "RequestTimeout"}
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
        max_attempts: int = 3,
    ) -> None:
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
                retries={"mode": "standard", "max_attempts": max_attempts},
            ),
        )

    async def assume_role(self, request: AssumeRoleRequest) -> AwsCredentials:
        return await asyncio.to_thread(self._assume_role, request)

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
            raise StsError(
                code, str(error.get("Message", "")), retryable=code in RETRYABLE_CODES or status >= 500
            ) from None
        except BotoCoreError as exc:
            raise StsError(type(exc).__name__, "could not reach STS", retryable=True) from None
        creds = response["Credentials"]
        expiration = creds["Expiration"]
        if isinstance(expiration, str):
            expiration = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
        return AwsCredentials(
            creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], expiration.astimezone(UTC)
        )


def _consume_exception(task: asyncio.Task[AwsCredentials]) -> None:
    if not task.cancelled():
        task.exception()  # the waiters re-raise it; this only silences "never retrieved" when none are left


SessionKey = tuple[str, str, str]
"""(rule name, issuer, identity)."""


class SessionCache:
    def __init__(
        self,
        sts: STSClient,
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = REFRESH_MARGIN_SECONDS,
        max_entries: int = 50_000,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._sts = sts
        self._clock = clock
        self._margin = refresh_margin
        self._max = max_entries
        self._sessions: OrderedDict[SessionKey, AwsCredentials] = OrderedDict()
        self._inflight: dict[SessionKey, asyncio.Task[AwsCredentials]] = {}
        self.sts_calls = 0
        self.hits = 0

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
        task = self._inflight.get(key)
        if task is None:
            # One STS call per key, owned by no single request: a caller that goes away cancels nothing.
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

    async def _call_sts(self, request: AssumeRoleRequest) -> AwsCredentials:
        self.sts_calls += 1
        started = time.monotonic()
        try:
            creds = await self._sts.assume_role(request)
        except StsError as exc:
            if self._metrics:
                self._metrics.sts_calls.labels(result=exc.code).inc()
            log.warning("AssumeRole %s failed: %s (retryable=%s)", request.role_arn, exc.code, exc.retryable)
            if exc.retryable:
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
        elapsed = time.monotonic() - started
        if self._metrics:
            self._metrics.sts_calls.labels(result="ok").inc()
            self._metrics.sts_latency.observe(elapsed)
        log.debug("AssumeRole %s took %.3fs", request.role_arn, elapsed)
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
