"""STS sessions: one AssumeRole per (rule, identity) while it stays fresh, shared by concurrent callers,
bounded, retried inside a budget, an hour at most once STS says the sessions are chained, and each failure
the 503 its cause deserves. Against the shared STS stand-in; retries run on a fake clock. BotoSTS itself is
in test_sts, faults through the loopback STS in test_faults."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable, Iterable

import pytest

from ccweb.errors import UpstreamUnavailable
from ccweb.metrics import Metrics
from ccweb.retry import RetryPolicy
from ccweb.sessions import MAX_SESSIONS, SessionCache
from ccweb.signing import AwsCredentials
from ccweb.sts import AssumeRoleRequest, StsError
from support import FakeTime, RecordingSTS, fake_retry

ROLE = "arn:aws:iam::111122223333:role/ccweb-developers"
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["codecommit:GitPull"], "Resource": ["arn:aws:codecommit:*:111122223333:*"]}]})
REQUEST = AssumeRoleRequest(ROLE, "ann@example.com", "ann@example.com", POLICY, 3600)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


THROTTLED = StsError("Throttling", "Rate exceeded", retryable=True)
DENIED = StsError("AccessDenied", "not authorized to perform sts:AssumeRole", retryable=False)


def key(identity: str = "ann@example.com", rule: str = "developers") -> tuple[str, str, str, str]:
    return (rule, "corp", identity, "")


GUARD_SECONDS = 30.0
"""How long a test waits for what should happen at once: a guard against a hang, never a measurement."""


async def until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until ``condition()`` holds (``GUARD_SECONDS`` at most)."""

    async def turns() -> None:
        while not condition():
            await asyncio.sleep(0)

    await asyncio.wait_for(turns(), GUARD_SECONDS)


def test_a_session_is_reused_until_fifteen_minutes_remain() -> None:
    clock = Clock()
    sts = RecordingSTS(clock=clock)
    cache = SessionCache(sts, clock=clock)

    async def scenario() -> None:
        first = await cache.get(key(), REQUEST)
        clock.now += 44 * 60  # 16 minutes left: still good for a full 15-minute password
        assert await cache.get(key(), REQUEST) is first
        clock.now += 2 * 60  # 14 minutes left: a new session
        renewed = await cache.get(key(), REQUEST)
        assert renewed is not first

    asyncio.run(scenario())
    assert len(sts.requests) == 2
    assert cache.hits == 1


def test_concurrent_requests_for_one_key_share_one_sts_call() -> None:
    clock = Clock()
    sts = RecordingSTS(clock=clock, delay=0.05)
    cache = SessionCache(sts, clock=clock)

    async def scenario() -> list[AwsCredentials]:
        return await asyncio.gather(*(cache.get(key(), REQUEST) for _ in range(50)))

    results = asyncio.run(scenario())
    assert len(sts.requests) == 1
    assert len({r.access_key_id for r in results}) == 1


def test_distinct_identities_and_rules_get_their_own_sessions() -> None:
    clock = Clock()
    sts = RecordingSTS(clock=clock, delay=0.01)
    cache = SessionCache(sts, clock=clock)
    keys = [key("ann"), key("bob"), key("ann", rule="readers")]

    async def scenario() -> None:
        await asyncio.gather(*(cache.get(k, REQUEST) for k in keys for _ in range(5)))

    asyncio.run(scenario())
    assert len(sts.requests) == 3
    assert len(cache) == 3


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    clock = Clock()
    sts = RecordingSTS(clock=clock)
    cache = SessionCache(sts, clock=clock, max_entries=2)

    async def scenario() -> None:
        await cache.get(key("a"), REQUEST)
        await cache.get(key("b"), REQUEST)
        await cache.get(key("a"), REQUEST)  # a is now the most recent
        await cache.get(key("c"), REQUEST)  # evicts b
        await cache.get(key("a"), REQUEST)
        await cache.get(key("b"), REQUEST)

    asyncio.run(scenario())
    assert len(sts.requests) == 4  # a, b, c, then b again: a stayed cached
    assert len(cache) == 2


def test_drop_rule_forgets_only_that_rules_sessions() -> None:
    clock = Clock()
    sts = RecordingSTS(clock=clock)
    cache = SessionCache(sts, clock=clock)

    async def scenario() -> None:
        await cache.get(key("a", "one"), REQUEST)
        await cache.get(key("a", "two"), REQUEST)
        cache.drop_rule("one")
        await cache.get(key("a", "one"), REQUEST)
        await cache.get(key("a", "two"), REQUEST)

    asyncio.run(scenario())
    assert len(sts.requests) == 3


@pytest.mark.parametrize(("error", "reason", "retry_after", "attempts"), [
    (THROTTLED, "sts_unavailable", 5, 6),
    (DENIED, "sts_refused", 60, 1),
], ids=["throttled", "refused"])
def test_sts_errors_become_503_and_are_not_cached(error: StsError, reason: str, retry_after: int,
                                                  attempts: int) -> None:
    clock = Clock()
    sts = RecordingSTS(clock=clock)
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
    assert len(sts.requests) == attempts + 1
    assert len(cache) == 1


def test_a_caller_that_goes_away_does_not_cancel_the_shared_call() -> None:
    clock = Clock()
    sts = RecordingSTS(clock=clock)
    sts.hold()  # STS answers only once the impatient caller has gone
    cache = SessionCache(sts, clock=clock)

    async def scenario() -> AwsCredentials:
        impatient = asyncio.ensure_future(cache.get(key(), REQUEST))
        patient = asyncio.ensure_future(cache.get(key(), REQUEST))
        await until(lambda: sts.in_flight == 1)
        impatient.cancel()
        await until(impatient.done)
        sts.release()
        return await patient

    assert asyncio.run(scenario()).access_key_id
    assert len(sts.requests) == 1


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
    sts = RecordingSTS(clock=clock)
    sts.script, sts.fail = list(script), always
    cache = SessionCache(sts, clock=clock, retry=fake_retry(time_))

    async def scenario() -> str | None:
        try:
            await cache.get(key(), REQUEST)
        except UpstreamUnavailable as exc:
            return exc.reason
        return None

    assert asyncio.run(scenario()) == reason
    assert len(sts.requests) == cache.sts_calls == attempts
    assert time_.sleeps == sleeps
    assert time_.now <= 8.0  # the default budget
    assert cache.upstream_error == ("Throttling" if reason == "sts_unavailable" else None)


def test_a_hanging_sts_is_cut_at_the_budget() -> None:
    clock = Clock()
    sts = RecordingSTS(clock=clock, delay=3600)  # no answer (BotoSTS's read timeout outlasts this budget)
    cache = SessionCache(sts, clock=clock, retry=RetryPolicy(budget=0.3))

    async def scenario() -> UpstreamUnavailable:
        with pytest.raises(UpstreamUnavailable) as raised:
            await asyncio.wait_for(cache.get(key(), REQUEST), GUARD_SECONDS)  # uncut, the call waits an hour
        return raised.value

    error = asyncio.run(scenario())
    assert error.reason == "sts_unavailable"
    assert error.retry_after == 5
    assert len(sts.requests) == 1
    assert cache.upstream_error == "Timeout"


class HeldTime(FakeTime):
    """``FakeTime`` whose sleeps last until ``resume`` is set: a retrying call stays between attempts till then."""

    def __init__(self) -> None:
        super().__init__()
        self.resume = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await self.resume.wait()
        self.now += seconds


def test_concurrent_callers_wait_for_one_retrying_call() -> None:
    clock, time_ = Clock(), HeldTime()
    sts = RecordingSTS(clock=clock)
    sts.script = [THROTTLED, THROTTLED]
    cache = SessionCache(sts, clock=clock, retry=fake_retry(time_))

    async def scenario() -> list[AwsCredentials]:
        first = asyncio.ensure_future(cache.get(key(), REQUEST))
        await until(lambda: bool(time_.sleeps))  # the first attempt has failed: the call waits to retry
        later = [asyncio.ensure_future(cache.get(key(), REQUEST)) for _ in range(30)]
        for _ in range(10):  # turns of the event loop: each later caller asks the cache
            await asyncio.sleep(0)
        assert len(sts.requests) == 1, "a caller that joined a retrying call asked STS itself"
        time_.resume.set()
        return [await first, *await asyncio.gather(*later)]

    results = asyncio.run(scenario())
    assert len(sts.requests) == 3
    assert len({r.access_key_id for r in results}) == 1


def test_concurrent_callers_all_get_the_503_of_one_exhausted_call() -> None:
    clock, time_ = Clock(), FakeTime()
    sts = RecordingSTS(clock=clock, delay=0.001)
    sts.fail = THROTTLED
    cache = SessionCache(sts, clock=clock, retry=fake_retry(time_))

    async def scenario() -> Iterable[BaseException | AwsCredentials]:
        return await asyncio.gather(*(cache.get(key(), REQUEST) for _ in range(20)), return_exceptions=True)

    results = list(asyncio.run(scenario()))
    assert all(isinstance(r, UpstreamUnavailable) and r.reason == "sts_unavailable" for r in results)
    assert len(sts.requests) == 6


def test_the_retry_quota_stops_a_retry_storm_and_successes_refill_it() -> None:
    clock, time_ = Clock(), FakeTime()
    sts = RecordingSTS(clock=clock)
    sts.fail = THROTTLED
    retry = fake_retry(time_, quota=10.0)  # room for two retries across every caller
    cache = SessionCache(sts, clock=clock, retry=retry)

    async def attempts_for(identity: str) -> int:
        before = len(sts.requests)
        with pytest.raises(UpstreamUnavailable):
            await cache.get(key(identity), REQUEST)
        return len(sts.requests) - before

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


def test_role_chaining_asks_for_an_hour_instead_of_failing(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    sts = RecordingSTS(clock=clock, chained=True)  # STS as it answers a service whose own identity is a role
    cache = SessionCache(sts, clock=clock)
    long = dataclasses.replace(REQUEST, duration_seconds=7200)

    async def scenario() -> None:
        assert await cache.get(key("ann@example.com"), long)
        assert await cache.get(key("bob@example.com"), long)  # asks for an hour at once

    with caplog.at_level(logging.WARNING, logger="ccweb.sessions"):
        asyncio.run(scenario())
    assert [c.duration_seconds for c in sts.requests] == [7200, 3600, 3600]
    assert sum("role chaining" in r.getMessage() for r in caplog.records) == 1


def test_other_validation_errors_are_not_mistaken_for_role_chaining() -> None:
    clock = Clock()
    sts = RecordingSTS(clock=clock)
    sts.fail = StsError("ValidationError", "1 validation error detected: policy", retryable=False)
    cache = SessionCache(sts, clock=clock)
    with pytest.raises(UpstreamUnavailable):
        asyncio.run(cache.get(key(), dataclasses.replace(REQUEST, duration_seconds=7200)))
    assert [c.duration_seconds for c in sts.requests] == [7200]


def test_sts_calls_for_distinct_keys_are_all_in_flight_at_once() -> None:
    """A cold start of many identities: one call per key, none waiting for another key's call. Every call is
    held until 100 are in flight at once (a call that waited for its turn would keep them all held, and the
    test fails on the stand-in's guard instead of passing by luck)."""
    clock = Clock()
    sts = RecordingSTS(clock=clock)
    sts.hold(until=100)
    cache = SessionCache(sts, clock=clock)

    async def scenario() -> None:
        await asyncio.gather(*(cache.get(key(f"user{n}@example.com"), REQUEST) for n in range(100) for _ in range(10)))

    asyncio.run(scenario())
    assert sts.most_in_flight == 100
    assert len(sts.requests) == cache.sts_calls == len(cache) == 100
    assert cache.retry.available == cache.retry.quota, "successes spend nothing of the retry quota"


def test_the_session_cache_is_bounded_by_default() -> None:
    clock = Clock()
    cache = SessionCache(RecordingSTS(clock=clock), clock=clock)
    assert cache._max == MAX_SESSIONS <= 20_000
