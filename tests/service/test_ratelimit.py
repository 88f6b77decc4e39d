"""Rate limits per identity: the token bucket with an injected clock, then 429s from a real server."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ccweb.app import create_app
from ccweb.config import ConfigError, parse_config
from ccweb.ratelimit import RateLimiter
from ccweb.sandbox.issuer import DevIssuer
from support import RecordingSTS, serve, serve_issuer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# (requests_per_minute, burst, [(seconds to advance, expected answer of check)])
BUCKETS = {
    "burst then refused": (60, 3, [(0, 0), (0, 0), (0, 0), (0, 1), (0.5, 1)]),
    "refills one a second": (60, 2, [(0, 0), (0, 0), (0, 1), (1, 0), (0, 1)]),
    "retry-after rounds up": (6, 1, [(0, 0), (0, 10), (4, 6), (5.5, 1), (0.5, 0)]),
    "a refusal spends nothing": (60, 1, [(0, 0), (0, 1), (0, 1), (0, 1), (1, 0)]),
    "never more than the burst": (60, 2, [(3600, 0), (0, 0), (0, 1)]),
    "a clock that steps back refills nothing": (60, 1, [(0, 0), (-30, 1), (1, 0)]),
    "0 turns it off": (0, 1, [(0, 0)] * 50),
}


@pytest.mark.parametrize(("rate", "burst", "steps"), BUCKETS.values(), ids=BUCKETS.keys())
def test_bucket(rate: int, burst: int, steps: list[tuple[float, int]]) -> None:
    clock = Clock()
    limiter = RateLimiter(rate, burst, clock=clock)
    for index, (advance, expected) in enumerate(steps):
        clock.now += advance
        assert limiter.check(("corp", "alice")) == expected, f"step {index}"


def test_identities_have_their_own_buckets() -> None:
    limiter = RateLimiter(60, 1, clock=Clock())
    assert limiter.check(("corp", "alice")) == 0
    assert limiter.check(("corp", "alice")) == 1
    assert limiter.check(("corp", "bob")) == 0
    assert limiter.check(("ci", "alice")) == 0  # the same subject from another issuer is someone else


def test_memory_is_bounded_and_idle_buckets_go() -> None:
    clock = Clock()
    limiter = RateLimiter(60, 10, clock=clock, max_identities=100)
    for n in range(1000):
        limiter.check(("corp", f"user-{n}"))
    assert len(limiter) == 100
    clock.now += 10  # a bucket of 10 refills in 10 s: nothing left worth keeping
    limiter.check(("corp", "late"))
    assert len(limiter) == 1


CONFIG_CASES = {
    "absent: the default": ({}, (120, 60)),
    "rate only": ({"requests_per_minute": 600}, (600, 60)),
    "off": ({"requests_per_minute": 0}, (0, 60)),
}


@pytest.mark.parametrize(("value", "expected"), CONFIG_CASES.values(), ids=CONFIG_CASES.keys())
def test_config(value: dict[str, Any], expected: tuple[int, int]) -> None:
    data = {"issuers": [{"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]}]}
    if value:
        data["rate_limit"] = value  # type: ignore[assignment]
    limit = parse_config(data).rate_limit
    assert (limit.requests_per_minute, limit.burst) == expected


BAD = {
    "negative rate": ({"requests_per_minute": -1}, "rate_limit.requests_per_minute: Input should be greater"),
    "burst 0": ({"burst": 0}, "rate_limit.burst: Input should be greater than or equal to 1"),
    "a string": ({"burst": "20"}, "rate_limit.burst: Input should be a valid integer"),
    "unknown key": ({"per_hour": 5}, "rate_limit.per_hour: unknown key"),
}


@pytest.mark.parametrize(("value", "message"), BAD.values(), ids=BAD.keys())
def test_config_refuses(value: dict[str, Any], message: str) -> None:
    data = {"issuers": [{"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]}],
            "rate_limit": value}
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert any(line.startswith(message) for line in caught.value.messages), caught.value.messages


class Env:
    def __init__(self, url: str, issuer: DevIssuer, clock: Clock, sts: RecordingSTS) -> None:
        self.url, self.issuer, self.clock, self.sts = url, issuer, clock, sts

    def token(self, sub: str) -> str:
        return self.issuer.mint({"sub": sub, "email": f"{sub}@example.com"})

    def whoami(self, token: str) -> httpx.Response:
        return httpx.get(f"{self.url}/v1/whoami", headers={"Authorization": f"Bearer {token}"})

    def credentials(self, token: str) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/credentials", headers={"Authorization": f"Bearer {token}"},
                          json={"protocol": "https", "host": "git-codecommit.us-east-1.amazonaws.com",
                                "path": "v1/repos/app"})


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with serve_issuer() as issuer:
        config = parse_config({
            "issuers": [{"name": "corp", "issuer": issuer.issuer_url, "audiences": ["ccweb"]}],
            "rules": [],  # nobody is granted anything: a request that gets past the limiter is a 403
            "rate_limit": {"requests_per_minute": 60, "burst": 3},
        })
        clock, sts = Clock(), RecordingSTS(fail=AssertionError("a rate-limited request must not reach STS"))
        with serve(create_app(config, sts=sts, monotonic=clock)) as url:
            yield Env(url, issuer, clock, sts)


def test_quick_requests_get_429_with_retry_after(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    token = env.token("loop")
    assert [env.credentials(token).status_code for _ in range(3)] == [403, 403, 403]
    with caplog.at_level(logging.INFO, logger="ccweb.audit"):
        refused = env.credentials(token)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    body = refused.json()
    assert body["error"] == "rate_limited"
    assert "loop@example.com" in body["detail"] and "60 times a minute" in body["detail"]
    assert env.sts.requests == []
    [record] = [r for r in caplog.records if r.name == "ccweb.audit"]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["outcome"] == "rate_limited"
    assert fields["subject"] == "loop" and fields["issuer"] == "corp"
    assert token not in json.dumps(fields)
    metrics = httpx.get(f"{env.url}/metrics").text
    assert 'ccweb_decisions_total{outcome="rate_limited",rule=""} 1.0' in metrics


def test_whoami_spends_from_the_same_bucket(env: Env) -> None:
    token = env.token("watcher")
    assert [env.whoami(token).status_code for _ in range(3)] == [200, 200, 200]
    assert env.credentials(token).status_code == 429
    assert env.whoami(token).status_code == 429


def test_other_identities_are_unaffected(env: Env) -> None:
    busy, calm = env.token("busy"), env.token("calm")
    while env.whoami(busy).status_code != 429:
        pass
    assert env.whoami(calm).status_code == 200
    assert env.whoami(env.token("busy")).status_code == 429  # a new token for the same subject: same bucket


def test_the_bucket_refills(env: Env) -> None:
    token = env.token("patient")
    while env.whoami(token).status_code != 429:
        pass
    env.clock.now += 1
    assert env.whoami(token).status_code == 200
    assert env.whoami(token).status_code == 429
    env.clock.now += 3
    assert [env.whoami(token).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_an_invalid_token_is_never_counted_against_anyone(env: Env) -> None:
    for _ in range(10):
        assert env.whoami("not-a-token").status_code == 401
