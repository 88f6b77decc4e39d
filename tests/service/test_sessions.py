"""STS sessions: one AssumeRole per (rule, identity) while it stays fresh, shared by concurrent callers,
bounded, and through boto3 against moto or a loopback STS named by AWS_ENDPOINT_URL_STS."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from ccweb.errors import UpstreamUnavailable
from ccweb.metrics import Metrics
from ccweb.sandbox.sts import DevSTSStore, create_sts_app
from ccweb.sessions import AssumeRoleRequest, BotoSTS, SessionCache, StsError
from ccweb.signing import AwsCredentials
from support import serve

ROLE = "arn:aws:iam::111122223333:role/ccweb-developers"
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["codecommit:GitPull"], "Resource": ["arn:aws:codecommit:*:111122223333:*"]}]})
REQUEST = AssumeRoleRequest(ROLE, "ann@example.com", "ann@example.com", POLICY, 3600)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeSTS:
    def __init__(self, clock: Clock, lifetime: int = 3600, delay: float = 0.0) -> None:
        self.clock, self.lifetime, self.delay = clock, lifetime, delay
        self.calls: list[AssumeRoleRequest] = []
        self.fail: StsError | None = None

    async def assume_role(self, request: AssumeRoleRequest) -> AwsCredentials:
        self.calls.append(request)
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return AwsCredentials("ASIA" + secrets.token_hex(8).upper(), secrets.token_hex(20), secrets.token_hex(40),
                              datetime.fromtimestamp(self.clock.now + self.lifetime, UTC))


def key(identity: str = "ann@example.com", rule: str = "developers") -> tuple[str, str, str]:
    return (rule, "corp", identity)


def test_a_session_is_reused_until_fifteen_minutes_remain() -> None:
    clock = Clock()
    sts = FakeSTS(clock)
    cache = SessionCache(sts, clock=clock)

    async def scenario() -> None:
        first = await cache.get(key(), REQUEST)
        clock.now += 44 * 60  # 16 minutes left: still good for a full 15-minute password
        assert await cache.get(key(), REQUEST) is first
        clock.now += 2 * 60  # 14 minutes left: a new session
        renewed = await cache.get(key(), REQUEST)
        assert renewed is not first

    asyncio.run(scenario())
    assert len(sts.calls) == 2
    assert cache.hits == 1


def test_concurrent_requests_for_one_key_share_one_sts_call() -> None:
    clock = Clock()
    sts = FakeSTS(clock, delay=0.05)
    cache = SessionCache(sts, clock=clock)

    async def scenario() -> list[AwsCredentials]:
        return await asyncio.gather(*(cache.get(key(), REQUEST) for _ in range(50)))

    results = asyncio.run(scenario())
    assert len(sts.calls) == 1
    assert len({r.access_key_id for r in results}) == 1


def test_distinct_identities_and_rules_get_their_own_sessions() -> None:
    clock = Clock()
    sts = FakeSTS(clock, delay=0.01)
    cache = SessionCache(sts, clock=clock)
    keys = [key("ann"), key("bob"), key("ann", rule="readers")]

    async def scenario() -> None:
        await asyncio.gather(*(cache.get(k, REQUEST) for k in keys for _ in range(5)))

    asyncio.run(scenario())
    assert len(sts.calls) == 3
    assert len(cache) == 3


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    clock = Clock()
    sts = FakeSTS(clock)
    cache = SessionCache(sts, clock=clock, max_entries=2)

    async def scenario() -> None:
        await cache.get(key("a"), REQUEST)
        await cache.get(key("b"), REQUEST)
        await cache.get(key("a"), REQUEST)  # a is now the most recent
        await cache.get(key("c"), REQUEST)  # evicts b
        await cache.get(key("a"), REQUEST)
        await cache.get(key("b"), REQUEST)

    asyncio.run(scenario())
    assert len(sts.calls) == 4  # a, b, c, then b again: a stayed cached
    assert len(cache) == 2


def test_drop_rule_forgets_only_that_rules_sessions() -> None:
    clock = Clock()
    sts = FakeSTS(clock)
    cache = SessionCache(sts, clock=clock)

    async def scenario() -> None:
        await cache.get(key("a", "one"), REQUEST)
        await cache.get(key("a", "two"), REQUEST)
        cache.drop_rule("one")
        await cache.get(key("a", "one"), REQUEST)
        await cache.get(key("a", "two"), REQUEST)

    asyncio.run(scenario())
    assert len(sts.calls) == 3


@pytest.mark.parametrize(("error", "reason", "retry_after"), [
    (StsError("Throttling", "Rate exceeded", retryable=True), "sts_unavailable", 5),
    (StsError("AccessDenied", "not authorized to perform sts:AssumeRole", retryable=False), "sts_refused", 60),
], ids=["throttled", "refused"])
def test_sts_errors_become_503_and_are_not_cached(error: StsError, reason: str, retry_after: int) -> None:
    clock = Clock()
    sts = FakeSTS(clock)
    sts.fail = error
    metrics = Metrics()
    cache = SessionCache(sts, clock=clock, metrics=metrics)

    async def scenario() -> AwsCredentials:
        with pytest.raises(UpstreamUnavailable) as raised:
            await cache.get(key(), REQUEST)
        assert raised.value.reason == reason
        assert raised.value.retry_after == retry_after
        assert "Rate exceeded" not in raised.value.detail  # AWS's own words go to the log, not the caller
        sts.fail = None
        return await cache.get(key(), REQUEST)

    assert asyncio.run(scenario()).access_key_id.startswith("ASIA")
    assert len(sts.calls) == 2
    assert len(cache) == 1


def test_a_caller_that_goes_away_does_not_cancel_the_shared_call() -> None:
    clock = Clock()
    sts = FakeSTS(clock, delay=0.1)
    cache = SessionCache(sts, clock=clock)

    async def scenario() -> AwsCredentials:
        impatient = asyncio.ensure_future(cache.get(key(), REQUEST))
        patient = asyncio.ensure_future(cache.get(key(), REQUEST))
        await asyncio.sleep(0.01)
        impatient.cancel()
        return await patient

    assert asyncio.run(scenario()).access_key_id
    assert len(sts.calls) == 1


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASERVICEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "service-secret-example")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_boto_sts_against_moto(aws_env: None) -> None:
    from moto import mock_aws

    with mock_aws():
        sts = BotoSTS(max_attempts=1)
        creds = asyncio.run(sts.assume_role(REQUEST))
    assert creds.access_key_id.startswith("ASIA")
    assert creds.secret_access_key and creds.session_token
    assert creds.expiration is not None
    assert timedelta(minutes=55) < creds.expiration - datetime.now(UTC) <= timedelta(hours=1, minutes=1)


def test_aws_endpoint_url_sts_is_honoured(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard AWS environment, AWS_ENDPOINT_URL_STS included, steers the service's STS client."""
    store = DevSTSStore()
    with serve(create_sts_app(store)) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", url)
        sts = BotoSTS(session=boto3.session.Session(), max_attempts=1)
        creds = asyncio.run(sts.assume_role(REQUEST))
    issued = store.lookup(creds.access_key_id)
    assert issued is not None, "the call did not reach the loopback STS"
    assert (issued.role_arn, issued.role_session_name, issued.source_identity) == (
        ROLE, "ann@example.com", "ann@example.com")
    assert issued.policy == POLICY
    assert issued.credentials.expiration == creds.expiration


def test_unreachable_sts_is_a_retryable_error(aws_env: None) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    sts = BotoSTS(session=boto3.session.Session(), endpoint_url=dead, max_attempts=1, connect_timeout=1)
    with pytest.raises(StsError) as raised:
        asyncio.run(sts.assume_role(REQUEST))
    assert raised.value.retryable
    assert "service-secret-example" not in str(raised.value)
