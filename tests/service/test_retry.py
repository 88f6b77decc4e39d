"""The STS retry policy: full-jitter backoff that never sleeps past its budget, whatever the jitter draws. How
the session cache retries through it (the schedule, the shared quota, a hanging STS) is in test_sessions."""

from __future__ import annotations

import asyncio
import random

import pytest

from ccweb.retry import RetryPolicy, full_jitter
from ccweb.sts import AssumeRoleRequest, StsError
from support import FakeTime, RecordingSTS

REQUEST = AssumeRoleRequest("arn:aws:iam::111122223333:role/ccweb-developers", "ann@example.com",
                            "ann@example.com", "{}", 3600)
THROTTLED = StsError("Throttling", "Rate exceeded", retryable=True)


@pytest.mark.parametrize("budget", [1.0, 2.5, 10.0, 30.0])
@pytest.mark.parametrize("seed", range(10))
def test_backoff_never_sleeps_past_the_budget_whatever_the_jitter(budget: float, seed: int) -> None:
    rng = random.Random(seed)
    time_ = FakeTime()
    policy = RetryPolicy(budget=budget, monotonic=time_.monotonic, sleep=time_.sleep,
                         jitter=lambda ceiling: rng.uniform(0, ceiling))
    sts = RecordingSTS(fail=THROTTLED)
    with pytest.raises(StsError):
        asyncio.run(policy.run(lambda: sts.assume_role(REQUEST)))
    assert time_.now < budget
    assert all(0 <= s <= min(4.0, 0.25 * 2**n) for n, s in enumerate(time_.sleeps))
    assert len(sts.requests) == len(time_.sleeps) + 1


def test_full_jitter_stays_between_zero_and_the_ceiling() -> None:
    draws = [full_jitter(2.0) for _ in range(500)]
    assert min(draws) >= 0 and max(draws) <= 2.0
    assert len(set(draws)) > 400  # really random: replicas do not retry in lockstep
