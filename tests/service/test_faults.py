"""Upstream faults as a user sees them: STS throttling, failing, hanging or refusing (the sandbox's loopback
STS stand-in, reached through BotoSTS and AWS_ENDPOINT_URL_STS), and an identity provider that throttles,
fails, hangs or rotates its keys (a loopback issuer). Retry backoff and key-set pacing run on fake clocks; an
identity provider that hangs does so until the test ends, so only a timeout can end the wait for it, and no
assertion on the identity provider depends on how fast the machine is; wall-clock bounds are asserted only
where a real timeout is what cuts the wait for STS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ccweb.app import create_app
from ccweb.config import ConfigError, parse_config
from ccweb.errors import InvalidToken, UpstreamUnavailable
from ccweb.keys import KEY_FETCH_SPACING_SECONDS, KEY_FETCHES_PER_MINUTE
from ccweb.metrics import Metrics
from ccweb.retry import RetryPolicy
from ccweb.sandbox.sts import (
    INTERNAL_FAILURE,
    SERVICE_UNAVAILABLE,
    THROTTLING,
    DevSTSStore,
    Hang,
    StsFault,
    create_sts_app,
)
from ccweb.sts import BotoSTS
from ccweb.tokens import TokenVerifier, VerifiedToken
from support import FakeTime, fake_retry, isolate_aws, serve

ACCOUNT = "111122223333"
HOST = "git-codecommit.us-east-2.amazonaws.com"


class Clock:
    """Wall-clock time that a test moves by hand (token lifetimes, key-set age, the pacing of key fetches)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


def new_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid})


@dataclass
class Idp:
    """A loopback OIDC issuer that can throttle (429), fail (500), hang (until ``released``), and rotate its
    keys. ``asked_at``: the test clock's time at each request for its discovery document (where every fetch of
    its keys starts), when the test gives it a ``clock``."""

    signing: ECKey = field(default_factory=lambda: new_key("k1"))
    published: list[ECKey] = field(default_factory=list)
    mode: str | None = None
    released: threading.Event = field(default_factory=threading.Event)
    clock: Clock | None = None
    hostile: str | None = None
    """One of ``HOSTILE``: an answer that is not a fault of the network but something a key-set fetch must
    survive (a key of an unknown curve, nested JSON, a jwks_uri that is not a URL, an empty key set, …)."""
    url: str = ""
    discovery_hits: int = 0
    jwks_hits: int = 0
    asked_at: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.published = self.published or [self.signing]

    def rotate(self, kid: str) -> ECKey:
        """Publish a new key and sign with it; the old one stays published."""
        self.signing = new_key(kid)
        self.published.append(self.signing)
        return self.signing

    def retire(self, key: ECKey) -> None:
        self.published.remove(key)

    def token(self, now: float, key: ECKey | None = None, kid: str | None = None, **claims: Any) -> str:
        """A token signed with ``key`` (the current signing key), naming ``kid`` (the key's own) in its header."""
        key = key or self.signing
        payload = {"iss": self.url, "aud": "ccweb", "sub": "u-1", "email": "dana@example.com",
                   "iat": int(now), "exp": int(now) + 600, **claims}
        return jwt.encode({"alg": "ES256", "kid": kid or key.kid}, payload, key, algorithms=["ES256"])

    async def _fault(self) -> Response | None:
        if self.mode == "throttle":
            return JSONResponse({"error": "slow_down"}, 429, headers={"Retry-After": "30"})
        if self.mode == "fail":
            return JSONResponse({"error": "server_error"}, 500)
        if self.mode == "hang":
            while not self.released.is_set():  # until the test ends: only a timeout on the other side ends it
                await asyncio.sleep(0.01)
        return None

    def _key_set(self) -> Response:
        keys = [k.as_dict(private=False) for k in self.published]
        if self.hostile == "nested-key-set":
            return Response("[" * 50_000, media_type="application/json")
        extra = HOSTILE_KEYS.get(self.hostile or "")
        if extra is not None:
            keys = extra if self.hostile in NO_USABLE_KEY else [extra[0], *keys]
        return JSONResponse({"keys": keys})

    def app(self) -> Starlette:
        async def configuration(_: Request) -> Response:
            self.discovery_hits += 1
            if self.clock is not None:
                self.asked_at.append(self.clock.now)
            if self.hostile == "nested-discovery":
                return Response('{"issuer": ' + "[" * 50_000, media_type="application/json")
            jwks_uri = HOSTILE_JWKS_URIS.get(self.hostile or "", "{url}/jwks").format(url=self.url)
            return await self._fault() or JSONResponse({"issuer": self.url, "jwks_uri": jwks_uri})

        async def jwks(_: Request) -> Response:
            self.jwks_hits += 1
            return await self._fault() or self._key_set()

        return Starlette(routes=[Route("/.well-known/openid-configuration", configuration), Route("/jwks", jwks)])


UNKNOWN_CURVE = {"kty": "EC", "crv": "BP-256", "kid": "bp\x1b[2J", "x": "AAAA", "y": "AAAA"}
"""An EC key on a curve joserfc does not know (it raises KeyError), with a kid that would clear a terminal."""
HOSTILE_KEYS: dict[str, list[dict[str, Any]]] = {
    "unknown-curve-beside-a-good-key": [UNKNOWN_CURVE],
    "only-an-unknown-curve": [UNKNOWN_CURVE],
    "empty-key-set": [],
    "encryption-keys-only": [{**new_key("enc").as_dict(private=False), "use": "enc"}],
    "unknown-key-types-only": [{"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "AAAA"}, {"kty": "oct", "k": "AA"}],
}
NO_USABLE_KEY = {"only-an-unknown-curve", "empty-key-set", "encryption-keys-only", "unknown-key-types-only"}
HOSTILE_JWKS_URIS = {
    "jwks-uri-not-a-url": "https://[::1/jwks",
    "jwks-uri-too-long": "{url}/" + "a" * 70_000,
    "jwks-uri-with-terminal-controls": "{url}/jwks\u009b2J\u009b31m\u202egnihtemos\u2066\u2069\u2028",
}
HOSTILE_ERRORS = {  # each answer that leaves no usable key, and the issuer's last_error it gives ({d}: discovery)
    "only-an-unknown-curve": "the jwks_uri that {d} names holds no RSA or EC signature key that ccweb can use",
    "empty-key-set": "the jwks_uri that {d} names holds no RSA or EC signature key that ccweb can use",
    "encryption-keys-only": "the jwks_uri that {d} names holds no RSA or EC signature key that ccweb can use",
    "unknown-key-types-only": "the jwks_uri that {d} names holds no RSA or EC signature key that ccweb can use",
    "nested-key-set": "the jwks_uri that {d} names is not JSON (or nests too deeply)",
    "nested-discovery": "{d} is not JSON (or nests too deeply)",
    "jwks-uri-not-a-url": "{d} names a jwks_uri that is not a URL",
    "jwks-uri-too-long": "the jwks_uri that {d} names could not be fetched (InvalidURL)",
    "jwks-uri-with-terminal-controls": "{d} names a jwks_uri that is not a URL of printable ASCII characters",
}


def discovery_url(idp: Idp) -> str:
    return f"{idp.url}/.well-known/openid-configuration"


@contextlib.contextmanager
def serving(state: Idp) -> Iterator[Idp]:
    """``state`` on loopback; a hanging request is released before the server stops."""
    with serve(state.app()) as url:
        state.url = url
        try:
            yield state
        finally:
            state.mode = None
            state.released.set()


@pytest.fixture
def idp() -> Iterator[Idp]:
    with serving(Idp()) as state:
        yield state


def idp_config(*issuers: Idp, **extra: Any) -> dict[str, Any]:
    return {
        "issuers": [{"name": f"idp{n}" if n else "corp", "issuer": i.url, "audiences": ["ccweb"]}
                    for n, i in enumerate(issuers)],
        "rules": [{"name": "developers", "issuer": "corp", "claims": {"email": {"pattern": r".+@example\.com"}},
                   "role_arn": f"arn:aws:iam::{ACCOUNT}:role/developers", "repositories": ["*"],
                   "access": "write"}],
        **extra,
    }


class Verifier:
    """One TokenVerifier on one event loop for a whole test (its key cache lives across calls)."""

    def __init__(self, idp: Idp, clock: Clock, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._http = httpx.AsyncClient(timeout=30)
        self.verifier = TokenVerifier(parse_config(idp_config(idp)), self._http, clock=clock, **kwargs)
        self.keys = self.verifier.issuer_keys()[0]

    def __call__(self, token: str) -> VerifiedToken:
        return self._loop.run_until_complete(self.verifier.verify(token))

    def all_at_once(self, tokens: list[str]) -> list[VerifiedToken | BaseException]:
        async def run() -> list[VerifiedToken | BaseException]:
            return await asyncio.gather(*(self.verifier.verify(t) for t in tokens), return_exceptions=True)

        return self._loop.run_until_complete(run())

    def close(self) -> None:
        self._loop.run_until_complete(self._http.aclose())
        self._loop.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(idp: Idp, clock: Clock) -> Iterator[Verifier]:
    """A verifier whose key sets age in 300 s; its fetch timeout is a guard (a test about a hanging identity
    provider sets its own)."""
    idp.clock = clock
    made = Verifier(idp, clock, key_max_age=300, fetch_timeout=30)
    yield made
    made.close()


def unknown_kid_tokens(idp: Idp, clock: Clock, count: int) -> list[str]:
    """Tokens naming made-up key ids (signed with a key of the attacker's), as a flood would bring."""
    attacker = new_key("attacker")
    return [idp.token(clock.now, attacker, kid=secrets.token_hex(8)) for _ in range(count)]


# --- the identity provider -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["throttle", "fail", "hang"])
def test_keys_already_fetched_keep_serving_while_the_idp_is_down(
    idp: Idp, clock: Clock, verifier: Verifier, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert verifier(idp.token(clock.now)).subject == "u-1"
    assert verifier.keys.state()["state"] == "ok"
    idp.mode = mode
    verifier.keys.fetch_timeout = 0.3  # a hanging IdP never answers: only this timeout lets the token through
    clock.now += 301  # the key set is past its age: the next token tries a refresh, which fails
    with caplog.at_level(logging.WARNING, logger="ccweb.tokens"):
        assert verifier(idp.token(clock.now)).subject == "u-1"
    state = verifier.keys.state()
    assert state["state"] == "stale" and state["keys_loaded"]
    assert state["last_error"] == {"throttle": f"{idp.url}/.well-known/openid-configuration answered HTTP 429",
                                   "fail": f"{idp.url}/.well-known/openid-configuration answered HTTP 500",
                                   "hang": "no answer within 0.3 s"}[mode]
    assert state["keys_age_seconds"] == 301
    assert "still using the one fetched 301s ago" in caplog.text
    hits = idp.discovery_hits
    for _ in range(5):  # still stale: no refetch moments after the last, and tokens still verify
        assert verifier(idp.token(clock.now)).subject == "u-1"
    assert idp.discovery_hits == hits
    idp.mode = None
    clock.now += KEY_FETCH_SPACING_SECONDS
    assert verifier(idp.token(clock.now)).subject == "u-1"
    assert verifier.keys.state() == {"state": "ok", "keys_loaded": True, "keys_age_seconds": 0, "last_error": None}


def test_an_issuer_whose_keys_never_loaded_is_503_until_it_answers(
    idp: Idp, clock: Clock, verifier: Verifier
) -> None:
    idp.mode = "fail"
    with pytest.raises(UpstreamUnavailable) as caught:
        verifier(idp.token(clock.now))
    assert (caught.value.status, caught.value.reason, caught.value.retry_after) == (
        503, "jwks_unavailable", KEY_FETCH_SPACING_SECONDS)
    assert "try again" in caught.value.detail
    assert verifier.keys.state()["state"] == "unavailable"
    clock.now += 3
    with pytest.raises(UpstreamUnavailable) as caught:
        verifier(idp.token(clock.now))
    assert caught.value.retry_after == 2  # the next attempt at the IdP, not a guess
    assert idp.discovery_hits == 1
    idp.mode = None
    clock.now += 2
    assert verifier(idp.token(clock.now)).subject == "u-1"
    assert idp.discovery_hits == 2


def test_a_flood_of_unknown_kids_costs_a_handful_of_fetches_a_minute(
    idp: Idp, clock: Clock, verifier: Verifier
) -> None:
    started = clock.now
    assert verifier(idp.token(clock.now)).subject == "u-1"
    flood = unknown_kid_tokens(idp, clock, 1000)
    for n, token in enumerate(flood, 1):  # a thousand made-up kids, spread over the minute after the fetch
        clock.now = started + n * 0.059
        with pytest.raises(InvalidToken) as caught:
            verifier(token)
        assert caught.value.reason == "unknown_key"
    assert len(idp.asked_at) == KEY_FETCHES_PER_MINUTE  # the first fetch included
    gaps = [b - a for a, b in zip(idp.asked_at, idp.asked_at[1:], strict=False)]
    assert min(gaps) >= KEY_FETCH_SPACING_SECONDS
    assert verifier(idp.token(clock.now)).subject == "u-1"  # the genuine key still verifies
    clock.now = started + 60  # a minute after the first fetch: one more
    with pytest.raises(InvalidToken):
        verifier(flood[0])
    assert len(idp.asked_at) == KEY_FETCHES_PER_MINUTE + 1
    idp.mode = "fail"  # an IdP that is down is not hammered either
    for n, token in enumerate(unknown_kid_tokens(idp, clock, 1000), 1):
        clock.now = started + 60 + n * 0.059
        with pytest.raises(InvalidToken):
            verifier(token)
    assert len(idp.asked_at) == 2 * KEY_FETCHES_PER_MINUTE
    assert idp.jwks_hits == KEY_FETCHES_PER_MINUTE + 1  # the failed fetches stopped at discovery


def test_unknown_kids_at_once_share_one_fetch(idp: Idp, clock: Clock, verifier: Verifier) -> None:
    assert verifier(idp.token(clock.now)).subject == "u-1"
    idp.rotate("k2")
    clock.now += KEY_FETCH_SPACING_SECONDS
    outcomes = verifier.all_at_once([*unknown_kid_tokens(idp, clock, 50), idp.token(clock.now)])
    assert all(isinstance(e, InvalidToken) and e.reason == "unknown_key" for e in outcomes[:-1]), outcomes
    assert isinstance(outcomes[-1], VerifiedToken), outcomes[-1]
    assert idp.jwks_hits == 2  # one fetch for the fifty-one


def test_a_rotated_key_is_picked_up_without_a_restart(idp: Idp, clock: Clock, verifier: Verifier) -> None:
    old = idp.signing
    old_token = idp.token(clock.now)
    assert verifier(old_token).subject == "u-1"
    clock.now += 61
    idp.rotate("k2")
    assert verifier(idp.token(clock.now)).subject == "u-1"  # an unknown kid: one refetch finds it
    assert idp.jwks_hits == 2
    assert verifier(old_token).subject == "u-1"  # the old key works while the issuer still publishes it
    idp.retire(old)
    clock.now += 301  # the next refresh (key-set age) learns that the issuer dropped it
    with pytest.raises(InvalidToken) as caught:
        verifier(idp.token(clock.now, old))
    assert caught.value.reason == "unknown_key"
    assert verifier(idp.token(clock.now)).subject == "u-1"


def test_a_key_rotated_seconds_after_a_fetch_is_accepted(idp: Idp, clock: Clock, verifier: Verifier) -> None:
    assert verifier(idp.token(clock.now)).subject == "u-1"
    idp.rotate("k2")
    clock.now += 1  # moments after the fetch: not fetched again yet
    with pytest.raises(InvalidToken) as caught:
        verifier(idp.token(clock.now))
    assert caught.value.reason == "unknown_key"
    clock.now += KEY_FETCH_SPACING_SECONDS - 1  # a few seconds after the fetch: the new key is found
    assert verifier(idp.token(clock.now)).subject == "u-1"
    assert idp.jwks_hits == 2


def refresh_errors(exposition: str, issuer: str) -> float:
    """``ccweb_key_refreshes_total{issuer=…, result="error"}`` in a /metrics text."""
    return sum(sample.value for family in text_string_to_metric_families(exposition) for sample in family.samples
               if sample.name == "ccweb_key_refreshes_total" and sample.labels == {"issuer": issuer, "result": "error"})


@pytest.mark.parametrize("hostile", sorted(HOSTILE_ERRORS))
def test_an_answer_with_no_usable_key_keeps_the_keys_already_fetched(
    idp: Idp, clock: Clock, hostile: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A key set emptied, holding only keys ccweb cannot use, nested too deeply, or a discovery document whose
    jwks_uri is not a URL: the tokens the keys fetched before verify still verify, and the issuer is stale."""
    metrics = Metrics()
    verifier = Verifier(idp, clock, key_max_age=300, fetch_timeout=30, metrics=metrics)
    try:
        assert verifier(idp.token(clock.now)).subject == "u-1"
        idp.hostile = hostile
        clock.now += 301  # past the key set's age: the next token refreshes it, and the answer has no usable key
        with caplog.at_level(logging.WARNING, logger="ccweb.tokens"):
            assert verifier(idp.token(clock.now)).subject == "u-1"
        assert verifier.keys.state() == {
            "state": "stale", "keys_loaded": True, "keys_age_seconds": 301,
            "last_error": HOSTILE_ERRORS[hostile].format(d=discovery_url(idp))}
        assert "still using the one fetched 301s ago" in caplog.text
        assert refresh_errors(metrics.exposition().decode(), "corp") == 1
        idp.hostile = None
        clock.now += KEY_FETCH_SPACING_SECONDS
        assert verifier(idp.token(clock.now)).subject == "u-1"
        assert verifier.keys.state()["state"] == "ok"
    finally:
        verifier.close()


def test_a_good_key_beside_one_of_an_unknown_curve_verifies(
    idp: Idp, clock: Clock, verifier: Verifier, caplog: pytest.LogCaptureFixture
) -> None:
    idp.hostile = "unknown-curve-beside-a-good-key"
    with caplog.at_level(logging.WARNING, logger="ccweb.tokens"):
        assert verifier(idp.token(clock.now)).subject == "u-1"
        clock.now += 301
        assert verifier(idp.token(clock.now)).subject == "u-1"  # and again after a refresh
    assert verifier.keys.state()["state"] == "ok"
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped == ["issuer corp: 1 key(s) of the key set skipped, which ccweb cannot use: "
                       r"a key with kid 'bp\x1b[2J', kty 'EC', crv 'BP-256'"] * 2  # once per fetch, escaped
    assert idp.jwks_hits == 2


# --- STS through BotoSTS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sts_url() -> Iterator[tuple[DevSTSStore, str]]:
    store = DevSTSStore()
    with serve(create_sts_app(store)) as url:
        yield store, url


FOREVER = Hang(3600.0)
"""An STS that says nothing until the test ends: only a timeout or the retry budget can end the wait for it."""


@pytest.fixture
def sts(sts_url: tuple[DevSTSStore, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[DevSTSStore]:
    """The loopback STS stand-in, named by AWS_ENDPOINT_URL_STS as an operator would; faults cleared. Its waits
    end when the test does (so a hang holds nothing up afterwards)."""
    store, url = sts_url
    isolate_aws(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", url)
    store.faults.clear()
    store.requests = 0
    ended = threading.Event()

    async def sleep(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not ended.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    monkeypatch.setattr(store, "sleep", sleep)
    yield store
    ended.set()


@dataclass
class Api:
    url: str
    idp: Idp
    clock: Clock
    time: FakeTime
    app: Any

    def credentials(self, sub: str = "u-1") -> httpx.Response:
        token = self.idp.token(self.clock.now, sub=sub)
        return httpx.post(f"{self.url}/v1/credentials", json={"protocol": "https", "host": HOST,
                          "path": "v1/repos/app"}, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def readyz(self) -> httpx.Response:
        return httpx.get(f"{self.url}/readyz", timeout=30)

    def settled_readyz(self) -> httpx.Response:
        """``/readyz`` once no issuer's first fetch of keys is under way: each probe waits a moment for it, and a
        busy machine may need a few probes (a bound against a hang, not a measurement: 60 probes)."""
        for _ in range(60):
            response = self.readyz()
            if all(issuer["state"] != "loading" for issuer in response.json()["issuers"].values()):
                return response
        raise AssertionError("an issuer's keys are still loading")


@contextlib.contextmanager
def api(idps: list[Idp], sts: BotoSTS, clock: Clock, retry: RetryPolicy | None = None,
        **extra: Any) -> Iterator[Api]:
    config = parse_config(idp_config(*idps, **extra))
    app = create_app(config, sts=sts, clock=clock)
    fake = FakeTime()
    # What create_app does with aws.retry_budget_seconds, on a fake clock with worst-case jitter.
    app.state.sessions.retry = retry or fake_retry(fake, budget=config.aws.retry_budget_seconds)
    with serve(app) as url:
        yield Api(url, idps[0], clock, fake, app)


STS_FAULTS = [  # scripted faults, status, error/reason, Retry-After, STS requests, backoff slept
    pytest.param([THROTTLING] * 2, 200, None, None, 3, [0.25, 0.5], id="throttled-twice-then-issued"),
    pytest.param([INTERNAL_FAILURE], 200, None, None, 2, [0.25], id="500-once-then-issued"),
    pytest.param([THROTTLING] * 10, 503, "sts_unavailable", "5", 6, [0.25, 0.5, 1, 2, 4], id="throttled"),
    pytest.param([SERVICE_UNAVAILABLE] * 10, 503, "sts_unavailable", "5", 6, [0.25, 0.5, 1, 2, 4],
                 id="503-throughout"),
    pytest.param([StsFault(403, "AccessDenied", "not authorized to perform sts:AssumeRole")], 503,
                 "sts_refused", "60", 1, [], id="access-denied-not-retried"),
    pytest.param([StsFault(400, "MalformedPolicyDocument", "bad policy")], 503, "sts_refused", "60", 1, [],
                 id="bad-policy-not-retried"),
]


@pytest.mark.parametrize(("faults", "status", "reason", "retry_after", "requests", "slept"), STS_FAULTS)
def test_sts_faults_as_the_user_sees_them(  # noqa: PLR0917 (one row of the table)
    idp: Idp, sts: DevSTSStore, clock: Clock, faults: list[StsFault], status: int, reason: str | None,
    retry_after: str | None, requests: int, slept: list[float], caplog: pytest.LogCaptureFixture,
) -> None:
    sts.faults.extend(faults)
    with api([idp], BotoSTS(session=boto3.session.Session()), clock) as service:
        with caplog.at_level(logging.INFO):
            response = service.credentials()
        assert response.status_code == status, response.text
        assert sts.requests == requests  # one HTTP attempt per retry: no hidden retries
        assert service.time.sleeps == slept
        assert service.time.now <= 8  # aws.retry_budget_seconds
        if status == 200:
            assert response.json()["username"].startswith("ASIA")
            assert service.readyz().json()["sts"].items() >= {"state": "ok", "last_error": None}.items()
            return
        body = response.json()
        assert body["error"] == "upstream_unavailable"
        assert response.headers["Retry-After"] == retry_after
        if reason == "sts_unavailable":
            assert body["detail"] == "AWS STS is failing or throttling right now; try again in a few seconds."
            ready = service.readyz()
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded"
            assert ready.json()["sts"].items() >= {"state": "failing", "last_error": faults[0].code}.items()
            sts.faults.clear()
            assert service.credentials().status_code == 200  # not cached: the next request tries again
            assert service.readyz().json()["status"] == "ok"
        else:
            assert "trust policy" in body["detail"]
            assert service.readyz().json()["status"] == "ok"  # a refusal is configuration, not an outage
    assert "service-secret-example" not in caplog.text and "DEVSECRET" not in caplog.text


@pytest.mark.parametrize("read_timeout", [
    pytest.param(0.2, id="cut-by-the-read-timeout-then-by-the-budget"),
    pytest.param(60.0, id="cut-by-the-budget"),
])
def test_a_hanging_sts_answers_503_within_the_budget(
    idp: Idp, sts: DevSTSStore, clock: Clock, read_timeout: float
) -> None:
    """STS hangs until the test ends, so the answer can only come from a timeout: a read timeout is retried
    within the budget, and the budget ends the request. A busy machine only makes it later, never another."""
    sts.faults.extend([FOREVER] * 10)
    boto = BotoSTS(session=boto3.session.Session(), connect_timeout=1, read_timeout=read_timeout)
    retry = RetryPolicy(budget=2.0, jitter=lambda c: c)  # the real clock: a real timeout cuts the wait
    with api([idp], boto, clock, retry=retry) as service:
        service.settled_readyz()  # keys loaded first: the clock below measures STS alone
        started = time.monotonic()
        response = service.credentials()
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["error"] == "upstream_unavailable"
    assert response.headers["Retry-After"] == "5"
    if read_timeout < 2.0:
        assert sts.requests >= 2, "a read timeout is retried while the budget lasts"
    else:
        assert sts.requests == 1, "the budget cut the one call that hangs"
        assert 1.9 <= elapsed < read_timeout, "the budget, neither an early give-up nor the read timeout, ended it"


def test_concurrent_requests_wait_for_one_retrying_sts_call(idp: Idp, sts: DevSTSStore, clock: Clock) -> None:
    sts.faults.extend([FOREVER, THROTTLING])  # only the read timeout ends the first call
    boto = BotoSTS(session=boto3.session.Session(), read_timeout=2.0)
    with api([idp], boto, clock, retry=RetryPolicy(budget=30.0, jitter=lambda c: c)) as service:
        service.settled_readyz()

        async def burst() -> list[httpx.Response]:
            token = idp.token(clock.now)
            async with httpx.AsyncClient(timeout=30) as client:
                return await asyncio.gather(*(
                    client.post(f"{service.url}/v1/credentials", headers={"Authorization": f"Bearer {token}"},
                                json={"protocol": "https", "host": HOST, "path": "v1/repos/app"})
                    for _ in range(20)))

        responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.json()["username"] for r in responses}) == 1
    assert sts.requests == 3  # hang (cut by the read timeout), throttled, issued: one call for all twenty


# --- /readyz -------------------------------------------------------------------------------------------


def test_readyz_says_ok_then_degraded_while_stale_keys_serve(
    idp: Idp, sts: DevSTSStore, sts_url: tuple[DevSTSStore, str], clock: Clock
) -> None:
    with api([idp], BotoSTS(session=boto3.session.Session()), clock) as service:
        ready = service.settled_readyz()  # a new replica's first probe starts fetching the keys
        assert ready.status_code == 200
        assert {k: v for k, v in ready.json().items() if k != "policy"} == {
            "status": "ok",
            "issuers": {"corp": {"state": "ok", "keys_loaded": True, "keys_age_seconds": 0, "last_error": None}},
            "sts": {"state": "ok", "last_error": None, "endpoint": sts_url[1], "region": "us-east-1"},
            "cached_sessions": 0,
        }
        assert service.credentials().status_code == 200
        idp.mode = "fail"
        clock.now += 3601  # past the key set's age: a refresh is due, and fails
        assert service.credentials().status_code == 200  # stale keys still verify
        ready = service.readyz()
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "degraded"
        assert body["issuers"]["corp"]["state"] == "stale"
        assert body["issuers"]["corp"]["keys_age_seconds"] == 3601
        assert "HTTP 500" in body["issuers"]["corp"]["last_error"]
        idp.mode = None
        clock.now += KEY_FETCH_SPACING_SECONDS
        assert service.credentials().status_code == 200
        assert service.readyz().json()["status"] == "ok"


def test_readyz_is_503_only_when_no_issuer_has_keys(sts: DevSTSStore, clock: Clock) -> None:
    with serving(Idp(mode="fail")) as down, serving(Idp()) as up:
        with api([down], BotoSTS(session=boto3.session.Session()), clock) as service:
            ready = service.settled_readyz()
            assert ready.status_code == 503
            assert ready.json()["status"] == "unavailable"
            assert ready.json()["issuers"]["corp"]["state"] == "unavailable"
            response = service.credentials()
            assert response.status_code == 503
            assert response.json()["error"] == "upstream_unavailable"
            assert int(response.headers["Retry-After"]) >= 1
        with api([down, up], BotoSTS(session=boto3.session.Session()), clock) as service:
            ready = service.settled_readyz()
            assert ready.status_code == 200  # one IdP's outage does not take the replica away from the others
            assert ready.json()["status"] == "degraded"
            assert {n: i["state"] for n, i in ready.json()["issuers"].items()} == {
                "corp": "unavailable", "idp1": "ok"}


def test_readyz_does_not_hang_on_a_hanging_idp(sts: DevSTSStore, clock: Clock) -> None:
    hanging = Idp(mode="hang")  # it answers no fetch until the test ends
    with serving(hanging), api([hanging], BotoSTS(session=boto3.session.Session()), clock) as service:
        ready = service.readyz()
    assert ready.status_code == 503
    assert ready.json()["issuers"]["corp"]["state"] == "loading"  # answered while the fetch is still under way


def drives_no_terminal(text: str) -> bool:
    return all(c.isprintable() for c in text)


@pytest.mark.parametrize("hostile", sorted([*HOSTILE_ERRORS, "unknown-curve-beside-a-good-key"]))
def test_readyz_is_200_whatever_one_issuer_answers(sts: DevSTSStore, clock: Clock, hostile: str) -> None:
    """A fresh replica (or one whose reload added the issuer), probed as a kubelet does: each probe after the
    spacing starts a fetch of the partner's keys. Whatever the partner answers, every probe is 200, the partner
    says what is wrong in a sentence, and corp's tokens keep working."""
    with (serving(Idp()) as corp, serving(Idp(hostile=hostile)) as partner,
          api([corp, partner], BotoSTS(session=boto3.session.Session()), clock) as service):
        probes = []
        for _ in range(3):
            ready = service.settled_readyz()
            probes.append(ready.status_code)
            assert drives_no_terminal(ready.text), ready.text
            clock.now += 10
        assert probes == [200] * 3
        body = ready.json()
        assert body["issuers"]["corp"]["state"] == "ok"
        assert service.credentials().status_code == 200
        whoami = httpx.get(f"{service.url}/v1/whoami", timeout=30,
                           headers={"Authorization": f"Bearer {partner.token(clock.now)}"})
        errors = refresh_errors(httpx.get(f"{service.url}/metrics", timeout=30).text, "idp1")
    if hostile not in HOSTILE_ERRORS:  # one key ccweb cannot use, beside a good one: the good one serves
        assert body["status"] == "ok"
        assert body["issuers"]["idp1"]["state"] == "ok"
        assert whoami.status_code == 200, whoami.text
        assert errors == 0
        return
    assert body["status"] == "degraded"
    assert body["issuers"]["idp1"] == {"state": "unavailable", "keys_loaded": False, "keys_age_seconds": None,
                                       "last_error": HOSTILE_ERRORS[hostile].format(d=discovery_url(partner))}
    assert whoami.status_code == 503
    assert whoami.json()["error"] == "upstream_unavailable"
    assert errors >= 3  # a fetch at each probe, each counted


# --- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "message"), [
    pytest.param(0.5, "aws.retry_budget_seconds: Input should be greater than or equal to 1", id="too-small"),
    pytest.param(61, "aws.retry_budget_seconds: Input should be less than or equal to 60", id="too-large"),
    pytest.param("10", "aws.retry_budget_seconds: Input should be a valid number", id="a-string"),
    pytest.param(True, "aws.retry_budget_seconds: Input should be a valid number", id="a-boolean"),
])
def test_the_retry_budget_is_validated(value: Any, message: str) -> None:
    base = {"issuers": [{"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]}]}
    with pytest.raises(ConfigError) as caught:
        parse_config({**base, "aws": {"retry_budget_seconds": value}})
    assert caught.value.messages == [message]
    assert parse_config({**base, "aws": {"retry_budget_seconds": 2.5}}).aws.retry_budget_seconds == 2.5
    assert parse_config(base).aws.retry_budget_seconds == 8
