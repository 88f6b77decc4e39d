"""STS sessions: one AssumeRole per (rule, identity) while it stays fresh, shared by concurrent callers,
bounded, retried inside a budget, and through boto3 against moto or a loopback STS named by
AWS_ENDPOINT_URL_STS. Retries run on a fake clock; faults through the loopback STS are in test_faults."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from ccweb.errors import UpstreamUnavailable
from ccweb.metrics import Metrics
from ccweb.sandbox.sts import DevSTSStore, create_sts_app
from ccweb.sessions import AssumeRoleRequest, BotoSTS, RetryPolicy, SessionCache, StsError, full_jitter
from ccweb.signing import AwsCredentials
from support import FakeTime, isolate_aws, serve

ROLE = "arn:aws:iam::111122223333:role/ccweb-developers"
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["codecommit:GitPull"], "Resource": ["arn:aws:codecommit:*:111122223333:*"]}]})
REQUEST = AssumeRoleRequest(ROLE, "ann@example.com", "ann@example.com", POLICY, 3600)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def fake_retry(time_: FakeTime, **kwargs: float) -> RetryPolicy:
    """Worst-case jitter (always the ceiling), so the schedule is exact: 0.25, 0.5, 1, 2, 4 s."""
    return RetryPolicy(monotonic=time_.monotonic, sleep=time_.sleep, jitter=lambda ceiling: ceiling, **kwargs)


THROTTLED = StsError("Throttling", "Rate exceeded", retryable=True)
DENIED = StsError("AccessDenied", "not authorized to perform sts:AssumeRole", retryable=False)


class FakeSTS:
    def __init__(self, clock: Clock, lifetime: int = 3600, delay: float = 0.0) -> None:
        self.clock, self.lifetime, self.delay = clock, lifetime, delay
        self.calls: list[AssumeRoleRequest] = []
        self.fail: StsError | None = None
        self.script: list[StsError] = []
        """Errors for the next calls, one each, before ``fail``."""

    async def assume_role(self, request: AssumeRoleRequest) -> AwsCredentials:
        self.calls.append(request)
        await asyncio.sleep(self.delay)
        if self.script:
            raise self.script.pop(0)
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


@pytest.mark.parametrize(("error", "reason", "retry_after", "attempts"), [
    (THROTTLED, "sts_unavailable", 5, 6),
    (DENIED, "sts_refused", 60, 1),
], ids=["throttled", "refused"])
def test_sts_errors_become_503_and_are_not_cached(error: StsError, reason: str, retry_after: int,
                                                  attempts: int) -> None:
    clock = Clock()
    sts = FakeSTS(clock)
    sts.fail = error
    metrics = Metrics()
    cache = SessionCache(sts, clock=clock, metrics=metrics, retry=fake_retry(FakeTime()))

    async def scenario() -> AwsCredentials:
        with pytest.raises(UpstreamUnavailable) as raised:
            await cache.get(key(), REQUEST)
        assert raised.value.reason == reason
        assert raised.value.retry_after == retry_after
        assert "Rate exceeded" not in raised.value.detail  # AWS's own words go to the log, not the caller
        sts.fail = None
        return await cache.get(key(), REQUEST)

    assert asyncio.run(scenario()).access_key_id.startswith("ASIA")
    assert len(sts.calls) == attempts + 1
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


RETRIES = [  # scripted errors, then always, attempts, sleeps, 503 reason (None: a session is issued)
    pytest.param([], None, 1, [], None, id="first-try"),
    pytest.param([THROTTLED, THROTTLED], None, 3, [0.25, 0.5], None, id="throttled-twice"),
    pytest.param([StsError("InternalFailure", "", retryable=True)], None, 2, [0.25], None, id="5xx-then-ok"),
    pytest.param([StsError("EndpointConnectionError", "", retryable=True)], None, 2, [0.25], None,
                 id="unreachable-then-ok"),
    pytest.param([], THROTTLED, 6, [0.25, 0.5, 1, 2, 4], "sts_unavailable", id="throttled-throughout"),
    pytest.param([], DENIED, 1, [], "sts_refused", id="access-denied"),
    pytest.param([], StsError("MalformedPolicyDocument", "", retryable=False), 1, [], "sts_refused",
                 id="bad-policy"),
    pytest.param([THROTTLED], DENIED, 2, [0.25], "sts_refused", id="denied-after-a-throttle"),
]


@pytest.mark.parametrize(("script", "always", "attempts", "sleeps", "reason"), RETRIES)
def test_retries_with_backoff_inside_the_budget(script: list[StsError], always: StsError | None, attempts: int,
                                                sleeps: list[float], reason: str | None) -> None:
    clock, time_ = Clock(), FakeTime()
    sts = FakeSTS(clock)
    sts.script, sts.fail = list(script), always
    cache = SessionCache(sts, clock=clock, retry=fake_retry(time_))

    async def scenario() -> str | None:
        try:
            await cache.get(key(), REQUEST)
        except UpstreamUnavailable as exc:
            return exc.reason
        return None

    assert asyncio.run(scenario()) == reason
    assert len(sts.calls) == cache.sts_calls == attempts
    assert time_.sleeps == sleeps
    assert time_.now <= 8.0  # the default budget
    assert cache.upstream_error == ("Throttling" if reason == "sts_unavailable" else None)


@pytest.mark.parametrize("budget", [1.0, 2.5, 10.0, 30.0])
@pytest.mark.parametrize("seed", range(10))
def test_backoff_never_sleeps_past_the_budget_whatever_the_jitter(budget: float, seed: int) -> None:
    rng = random.Random(seed)
    time_ = FakeTime()
    policy = RetryPolicy(budget=budget, monotonic=time_.monotonic, sleep=time_.sleep,
                         jitter=lambda ceiling: rng.uniform(0, ceiling))
    sts = FakeSTS(Clock())
    sts.fail = THROTTLED
    with pytest.raises(StsError):
        asyncio.run(policy.run(lambda: sts.assume_role(REQUEST)))
    assert time_.now < budget
    assert all(0 <= s <= min(4.0, 0.25 * 2**n) for n, s in enumerate(time_.sleeps))
    assert len(sts.calls) == len(time_.sleeps) + 1


def test_full_jitter_stays_between_zero_and_the_ceiling() -> None:
    draws = [full_jitter(2.0) for _ in range(500)]
    assert min(draws) >= 0 and max(draws) <= 2.0
    assert len(set(draws)) > 400  # really random: replicas do not retry in lockstep


def test_a_hanging_sts_is_cut_at_the_budget() -> None:
    clock = Clock()
    sts = FakeSTS(clock, delay=30)  # never answers in time (BotoSTS's read timeout is longer than this budget)
    cache = SessionCache(sts, clock=clock, retry=RetryPolicy(budget=0.3))

    async def scenario() -> UpstreamUnavailable:
        with pytest.raises(UpstreamUnavailable) as raised:
            await cache.get(key(), REQUEST)
        return raised.value

    started = time.monotonic()
    error = asyncio.run(scenario())
    assert time.monotonic() - started < 1.5
    assert error.reason == "sts_unavailable"
    assert error.retry_after == 5
    assert len(sts.calls) == 1
    assert cache.upstream_error == "Timeout"


def test_concurrent_callers_wait_for_one_retrying_call() -> None:
    clock, time_ = Clock(), FakeTime()
    sts = FakeSTS(clock, delay=0.01)
    sts.script = [THROTTLED, THROTTLED]
    cache = SessionCache(sts, clock=clock, retry=fake_retry(time_))

    async def scenario() -> list[AwsCredentials]:
        first = asyncio.ensure_future(cache.get(key(), REQUEST))
        await asyncio.sleep(0.015)  # the first attempt has failed: the call is retrying
        later = [cache.get(key(), REQUEST) for _ in range(30)]
        return [await first, *await asyncio.gather(*later)]

    results = asyncio.run(scenario())
    assert len(sts.calls) == 3
    assert len({r.access_key_id for r in results}) == 1


def test_concurrent_callers_all_get_the_503_of_one_exhausted_call() -> None:
    clock, time_ = Clock(), FakeTime()
    sts = FakeSTS(clock, delay=0.001)
    sts.fail = THROTTLED
    cache = SessionCache(sts, clock=clock, retry=fake_retry(time_))

    async def scenario() -> Iterable[BaseException | AwsCredentials]:
        return await asyncio.gather(*(cache.get(key(), REQUEST) for _ in range(20)), return_exceptions=True)

    results = list(asyncio.run(scenario()))
    assert all(isinstance(r, UpstreamUnavailable) and r.reason == "sts_unavailable" for r in results)
    assert len(sts.calls) == 6


def test_the_retry_quota_stops_a_retry_storm_and_successes_refill_it() -> None:
    clock, time_ = Clock(), FakeTime()
    sts = FakeSTS(clock)
    sts.fail = THROTTLED
    retry = fake_retry(time_, quota=10.0)  # room for two retries across every caller
    cache = SessionCache(sts, clock=clock, retry=retry)

    async def attempts_for(identity: str) -> int:
        before = len(sts.calls)
        with pytest.raises(UpstreamUnavailable):
            await cache.get(key(identity), REQUEST)
        return len(sts.calls) - before

    async def scenario() -> list[int]:
        storm = [await attempts_for("ann"), await attempts_for("bob"), await attempts_for("cy")]
        assert retry.available == 0
        sts.fail = None
        for n in range(5):
            await cache.get(key(f"ok{n}"), REQUEST)  # each success earns back one unit
        sts.script = [THROTTLED]
        await cache.get(key("eve"), REQUEST)  # one retry affordable again; its success refunds its cost
        return storm

    assert asyncio.run(scenario()) == [3, 1, 1]
    assert retry.available == 5.0


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_aws(monkeypatch)


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


class ChainedSTS(FakeSTS):
    """STS as it answers a service whose own identity is a role (IRSA): chained sessions are an hour at most."""

    async def assume_role(self, request: AssumeRoleRequest) -> AwsCredentials:
        if request.duration_seconds > 3600:
            self.calls.append(request)
            raise StsError("ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit for "
                           "roles assumed by role chaining.", retryable=False)
        return await super().assume_role(request)


def test_role_chaining_asks_for_an_hour_instead_of_failing(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    sts = ChainedSTS(clock)
    cache = SessionCache(sts, clock=clock)
    long = dataclasses.replace(REQUEST, duration_seconds=7200)

    async def scenario() -> None:
        assert await cache.get(key("ann@example.com"), long)
        assert await cache.get(key("bob@example.com"), long)  # asks for an hour at once

    with caplog.at_level(logging.WARNING, logger="ccweb.sessions"):
        asyncio.run(scenario())
    assert [c.duration_seconds for c in sts.calls] == [7200, 3600, 3600]
    assert sum("role chaining" in r.getMessage() for r in caplog.records) == 1


def test_other_validation_errors_are_not_mistaken_for_role_chaining() -> None:
    clock = Clock()
    sts = FakeSTS(clock)
    sts.fail = StsError("ValidationError", "1 validation error detected: policy", retryable=False)
    cache = SessionCache(sts, clock=clock)
    with pytest.raises(UpstreamUnavailable):
        asyncio.run(cache.get(key(), dataclasses.replace(REQUEST, duration_seconds=7200)))
    assert [c.duration_seconds for c in sts.calls] == [7200]


class GatedSTS(FakeSTS):
    """Holds every call until ``expected`` are in flight at once (a call that waits for its turn would keep
    the gate shut, and the test fails on the guard instead of passing by luck)."""

    def __init__(self, clock: Clock, expected: int) -> None:
        super().__init__(clock)
        self.expected = expected
        self.in_flight = 0
        self.most = 0
        self.gate = asyncio.Event()

    async def assume_role(self, request: AssumeRoleRequest) -> AwsCredentials:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight >= self.expected:
            self.gate.set()
        await asyncio.wait_for(self.gate.wait(), 10)  # a guard against a hang, not a measurement
        self.in_flight -= 1
        return await super().assume_role(request)


def test_sts_calls_for_distinct_keys_are_all_in_flight_at_once() -> None:
    """A cold start of many identities: one call per key, none waiting for another key's call."""
    clock = Clock()
    sts = GatedSTS(clock, expected=100)
    cache = SessionCache(sts, clock=clock)

    async def scenario() -> None:
        await asyncio.gather(*(cache.get(key(f"user{n}@example.com"), REQUEST) for n in range(100) for _ in range(10)))

    asyncio.run(scenario())
    assert sts.most == 100
    assert len(sts.calls) == cache.sts_calls == len(cache) == 100
    assert cache.retry.available == cache.retry.quota, "successes spend nothing of the retry quota"


def test_the_session_cache_is_bounded_by_default() -> None:
    from ccweb.sessions import MAX_SESSIONS

    clock = Clock()
    cache = SessionCache(FakeSTS(clock), clock=clock)
    assert cache._max == MAX_SESSIONS <= 20_000


class BlockingClient:
    """boto3's STS client, as far as BotoSTS uses it: blocks each call until ``expected`` are in flight."""

    def __init__(self, expected: int) -> None:
        import threading

        self.expected = expected
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.gate = threading.Event()
        self.threads: set[str] = set()
        self.request_ids: list[str | None] = []

    def assume_role(self, **_: object) -> dict[str, object]:
        import threading

        from ccweb import requestid

        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.threads.add(threading.current_thread().name)
            self.request_ids.append(requestid.current())
            if self.in_flight >= self.expected:
                self.gate.set()
        self.gate.wait(10)  # a guard against a hang, not a measurement
        with self.lock:
            self.in_flight -= 1
        expiration = datetime.now(UTC) + timedelta(hours=1)
        return {"Credentials": {"AccessKeyId": "ASIA" + "A" * 16, "SecretAccessKey": "s", "SessionToken": "t",
                                "Expiration": expiration}}


@pytest.mark.parametrize(("concurrency", "calls", "expected"), [(64, 40, 40), (4, 12, 4)])
def test_boto_sts_runs_its_calls_side_by_side_in_a_pool_of_its_own(
    aws_env: None, concurrency: int, calls: int, expected: int
) -> None:
    """Not asyncio's default pool (min(32, CPUs + 4) threads): up to ``concurrency`` calls at once, with as
    many pooled connections, and never more."""
    from ccweb import requestid

    sts = BotoSTS(session=boto3.session.Session(), max_attempts=1, concurrency=concurrency)
    assert sts._client.meta.config.max_pool_connections == concurrency
    client = BlockingClient(expected)
    sts._client = client

    async def one(n: int) -> AwsCredentials:
        requestid._CURRENT.set(f"req-{n}")
        return await sts.assume_role(REQUEST)

    async def scenario() -> list[AwsCredentials]:
        return await asyncio.gather(*(asyncio.create_task(one(n)) for n in range(calls)))

    assert len(asyncio.run(scenario())) == calls
    assert client.most == expected
    assert all(name.startswith("ccweb-sts") for name in client.threads)
    assert sorted(client.request_ids) == sorted(f"req-{n}" for n in range(calls)), "the caller's context goes along"


def test_boto_sts_refuses_a_pool_of_nothing(aws_env: None) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        BotoSTS(session=boto3.session.Session(), concurrency=0)
