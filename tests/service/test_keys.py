"""When an issuer's keys may be fetched again (``ccweb.keys.fetch_wait``, pure): a few seconds after the last
fetch, at most a handful a minute. And what one fetch makes of what the identity provider answers (a fake
transport, a clock moved by hand): keys ccweb cannot use skipped and named, a key set with none it can use a
failed fetch, anything a fetch raises a failed fetch. Where a key set may be fetched from (real loopback
servers): a remote issuer's discovery document naming plain http on the pod's own loopback is refused and that
server never asked; a policy's jwks_uri there, and a loopback issuer's, are followed. More fetching against
loopback issuers is exercised in test_tokens.py and test_faults.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey

from ccweb.config import parse_config
from ccweb.errors import UpstreamUnavailable
from ccweb.keys import (
    KEY_FETCH_SPACING_SECONDS,
    KEY_FETCHES_PER_MINUTE,
    DocumentError,
    IssuerKeys,
    discovered_jwks_uri,
    fetch_wait,
)
from ccweb.metrics import Metrics
from support import Asked, serve_issuer, serve_json

SPACING, PER_MINUTE = KEY_FETCH_SPACING_SECONDS, KEY_FETCHES_PER_MINUTE


def starts(*times: float) -> deque[float]:
    return deque(times, maxlen=PER_MINUTE)


CASES = [  # now, the last fetch's start, the starts of the last few, the wait
    pytest.param(1000.0, -1e18, starts(), 0.0, id="never-fetched"),
    pytest.param(1000.0, 1000.0, starts(1000.0), SPACING, id="just-fetched"),
    pytest.param(1000.0 + SPACING - 1, 1000.0, starts(1000.0), 1.0, id="a-second-short-of-the-spacing"),
    pytest.param(1000.0 + SPACING, 1000.0, starts(1000.0), 0.0, id="spaced"),
    pytest.param(1000.0 + SPACING * PER_MINUTE, 1000.0 + SPACING * (PER_MINUTE - 1),
                 starts(*(1000.0 + SPACING * n for n in range(PER_MINUTE))), 60.0 - SPACING * PER_MINUTE,
                 id="the-minute-s-fetches-spent"),
    pytest.param(1060.0, 1000.0 + SPACING * (PER_MINUTE - 1),
                 starts(*(1000.0 + SPACING * n for n in range(PER_MINUTE))), 0.0, id="a-minute-after-the-oldest"),
    pytest.param(1000.0 + SPACING * (PER_MINUTE - 1), 1000.0 + SPACING * (PER_MINUTE - 2),
                 starts(*(1000.0 + SPACING * n for n in range(PER_MINUTE - 1))), 0.0, id="one-fetch-left"),
    pytest.param(500.0, 1000.0, starts(*(1000.0 for _ in range(PER_MINUTE))), 0.0, id="the-clock-set-back"),
]


@pytest.mark.parametrize(("now", "last", "recent", "wait"), CASES)
def test_fetch_wait(now: float, last: float, recent: deque[float], wait: float) -> None:
    assert fetch_wait(now, last, recent) == pytest.approx(wait)


def test_the_minute_s_budget_binds_before_the_spacing_alone_would() -> None:
    assert 2 <= PER_MINUTE < 60 / SPACING


# --- one fetch: whatever the identity provider answers, a failure of that fetch and nothing more ----------------

JWKS_URI = "https://login.example.com/jwks"
GOOD = RSAKey.generate_key(2048, parameters={"kid": "good"})
BP_256 = {"kty": "EC", "crv": "BP-256", "kid": "bp", "x": "AAAA", "y": "AAAA"}


class Answers:
    """The identity provider's key-set URL as an ``httpx.MockTransport``: each fetch gets ``answer`` (a JSON
    value, or an exception that the transport raises as it is)."""

    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.fetches = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == JWKS_URI
        self.fetches += 1
        if isinstance(self.answer, BaseException):
            raise self.answer
        return httpx.Response(200, json=self.answer)


def fetching(answers: Answers, scenario: Callable[[IssuerKeys, list[float]], Awaitable[None]],
             metrics: Metrics | None = None) -> None:
    """Run ``scenario`` with the keys of an issuer whose key set ``answers`` gives, on a clock it moves by hand."""
    issuer = parse_config({"issuers": [{"name": "corp", "issuer": "https://login.example.com",
                                        "jwks_uri": JWKS_URI, "audiences": ["ccweb"]}]}).issuers[0]
    now = [1000.0]

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answers)) as http:
            await scenario(IssuerKeys(issuer, http, lambda: now[0], metrics=metrics), now)

    asyncio.run(run())


def errors_counted(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("ccweb_key_refreshes_total", {"issuer": "corp", "result": "error"}) or 0


def test_a_fetch_that_raises_anything_is_that_fetch_s_failure() -> None:
    """Not an HTTP error, a timeout or a bad document: something no one foresaw (here the transport raises it).
    The readiness probe, the request and the refresh each see a failed fetch, never the exception."""
    answers, metrics = Answers(RuntimeError("something no one foresaw")), Metrics()

    async def scenario(keys: IssuerKeys, now: list[float]) -> None:
        await keys.warm(5.0)  # as /readyz does
        assert keys.state() == {"state": "unavailable", "keys_loaded": False, "keys_age_seconds": None,
                                "last_error": "the key set could not be read (RuntimeError)"}
        now[0] += SPACING
        with pytest.raises(UpstreamUnavailable):  # a request: the contract's 503, not a 500
            await keys.candidates("good")
        now[0] += SPACING
        await keys.refresh()
        assert errors_counted(metrics) == 3
        answers.answer = {"keys": [GOOD.as_dict(private=False)]}
        now[0] += SPACING
        assert await keys.candidates("good")
        assert keys.state()["last_error"] is None

    fetching(answers, scenario, metrics)
    assert answers.fetches == 4


KEY_SETS = [  # the keys besides GOOD, the kids that verify, what the one log line of the fetch names as skipped
    pytest.param([BP_256], ["good"], ["a key with kid 'bp', kty 'EC', crv 'BP-256'"], id="unknown-curve"),
    pytest.param([{**BP_256, "crv": "P-224"}], ["good"], ["a key with kid 'bp', kty 'EC', crv 'P-224'"],
                 id="curve-joserfc-does-not-know"),
    pytest.param([{"kty": "RSA", "kid": "no-e", "n": "AQAB"}], ["good"], ["a key with kid 'no-e', kty 'RSA'"],
                 id="rsa-without-e"),
    pytest.param([{"kty": "RSA", "kid": "e-1", "n": "AQAB", "e": "AQAB"}], ["good"],
                 ["a key with kid 'e-1', kty 'RSA'"], id="rsa-e-out-of-range"),
    pytest.param([ECKey.generate_key("P-256", parameters={"kid": "private"}).as_dict(private=True)], ["good"],
                 ["a key with kid 'private', kty 'EC', crv 'P-256'"], id="a-private-key"),
    pytest.param([{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, 42, {}], ["good"],
                 ["a key with kty 'OKP', crv 'Ed25519'", "an entry that is a JSON int, not an object",
                  "a key with no kid, kty or crv"], id="other-types"),
    pytest.param([{**BP_256, "kid": "\x1b[2J\u202e" + "k" * 60}], ["good"],
                 [r"a key with kid '\x1b[2J\u202e" + "k" * 35 + "'…, kty 'EC', crv 'BP-256'"], id="kid-escaped"),
    pytest.param([{**ECKey.generate_key("P-256").as_dict(private=False), "kid": "enc", "use": "enc"}], ["good"], [],
                 id="encryption-keys-left-out-silently"),
]


@pytest.mark.parametrize(("others", "kids", "skipped"), KEY_SETS)
def test_a_key_ccweb_cannot_use_is_skipped_and_named_once(
        others: list[Any], kids: list[str], skipped: list[str], caplog: pytest.LogCaptureFixture) -> None:
    answers = Answers({"keys": [GOOD.as_dict(private=False), *others]})

    async def scenario(keys: IssuerKeys, now: list[float]) -> None:
        for kid in kids:
            assert await keys.candidates(kid), kid
        assert keys.state()["state"] == "ok"
        now[0] += 3601
        await keys.refresh()

    with caplog.at_level(logging.INFO, logger="ccweb.tokens"):
        fetching(answers, scenario)
    assert answers.fetches == 2
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    if skipped:
        assert lines == [f"issuer corp: {len(skipped)} key(s) of the key set skipped, which ccweb cannot use: "
                         + "; ".join(skipped)] * 2  # once for each fetch
    else:
        assert lines == []


@pytest.mark.parametrize("entries", [
    pytest.param([], id="empty"),
    pytest.param([{**GOOD.as_dict(private=False), "use": "enc"}], id="encryption-keys-only"),
    pytest.param([BP_256, {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}], id="no-key-ccweb-can-use"),
])
def test_a_key_set_with_no_usable_key_keeps_the_keys_fetched_before(entries: list[Any]) -> None:
    answers, metrics = Answers({"keys": [GOOD.as_dict(private=False)]}), Metrics()

    async def scenario(keys: IssuerKeys, now: list[float]) -> None:
        assert await keys.candidates("good")
        answers.answer = {"keys": entries}
        now[0] += 3601  # past the key set's age
        assert await keys.candidates("good"), "the keys fetched before still verify"
        assert keys.state() == {"state": "stale", "keys_loaded": True, "keys_age_seconds": 3601,
                                "last_error": f"{JWKS_URI} holds no RSA or EC signature key that ccweb can use"}
        assert errors_counted(metrics) == 1

    fetching(answers, scenario, metrics)
    assert answers.fetches == 2


def test_a_first_key_set_with_no_usable_key_leaves_the_issuer_unavailable() -> None:
    async def scenario(keys: IssuerKeys, now: list[float]) -> None:
        await keys.warm(5.0)
        assert keys.state()["state"] == "unavailable"
        with pytest.raises(UpstreamUnavailable):
            await keys.candidates("good")

    fetching(Answers({"keys": [BP_256]}), scenario)


# --- where the keys may be fetched from: a remote issuer never sends ccweb to the pod's own loopback ------------

REMOTE = "https://login.example.com"
DISCOVERY = f"{REMOTE}/.well-known/openid-configuration"


@contextlib.contextmanager
def loopback_keys() -> Iterator[tuple[str, list[str]]]:
    """A real loopback server standing for what listens in the pod (the cluster-keys proxy, the metrics
    listener): it answers GOOD's key set to every request; yield its URL and the paths it was asked."""
    asked: list[str] = []

    def answer(request: Asked) -> tuple[int, dict[str, Any]]:
        asked.append(request.path)
        return 200, {"keys": [GOOD.as_dict(private=False)]}

    with serve_json(answer) as url:
        yield url, asked


def keys_of(issuer: dict[str, Any], remote: Callable[[httpx.Request], httpx.Response] | None,
            scenario: Callable[[IssuerKeys], Awaitable[None]]) -> None:
    """Run ``scenario`` with the keys of ``issuer`` (a policy's entry): requests to ``REMOTE`` go to ``remote`` (a
    fake transport), all others over the network (loopback only, here)."""
    parsed = parse_config({"issuers": [{"name": "corp", "audiences": ["ccweb"], **issuer}]}).issuers[0]

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"nothing is to be asked of {request.url}")

    async def run() -> None:
        mounts = {REMOTE: httpx.MockTransport(remote or refuse)}
        async with httpx.AsyncClient(mounts=mounts, trust_env=False) as http:
            await scenario(IssuerKeys(parsed, http, lambda: 1000.0))

    asyncio.run(run())


@pytest.mark.parametrize("spelling", [
    pytest.param("http://127.0.0.1:{port}/openid/v1/jwks", id="127.0.0.1"),
    pytest.param("http://localhost:{port}/openid/v1/jwks", id="localhost"),
    pytest.param("http://[::ffff:127.0.0.1]:{port}/openid/v1/jwks", id="ipv4-mapped-ipv6"),
])
def test_a_remote_issuer_naming_an_http_jwks_uri_on_loopback_sends_nothing_there(
        spelling: str, caplog: pytest.LogCaptureFixture) -> None:
    """An https issuer's discovery document (hostile, or answered by someone else) names the pod's own loopback:
    the fetch fails with the usual sentence, and the server there is never asked."""
    with loopback_keys() as (url, asked):
        jwks_uri = spelling.format(port=url.rsplit(":", 1)[1])

        def discovery(request: httpx.Request) -> httpx.Response:
            assert str(request.url) == DISCOVERY
            return httpx.Response(200, json={"issuer": REMOTE, "jwks_uri": jwks_uri})

        async def scenario(keys: IssuerKeys) -> None:
            await keys.warm(5.0)
            assert keys.state() == {"state": "unavailable", "keys_loaded": False, "keys_age_seconds": None,
                                    "last_error": f"{DISCOVERY} names a jwks_uri that is not https"}
            with pytest.raises(UpstreamUnavailable):
                await keys.candidates("good")

        with caplog.at_level(logging.WARNING, logger="ccweb.tokens"):
            keys_of({"issuer": REMOTE}, discovery, scenario)
    assert asked == []
    assert [r.getMessage() for r in caplog.records if r.name == "ccweb.tokens"] == [
        f"issuer corp: no key set yet: {DISCOVERY} names a jwks_uri that is not https"]


def test_a_policy_naming_an_http_jwks_uri_on_loopback_is_followed() -> None:
    """The cluster-keys component: the policy names ``http://127.0.0.1:8001/openid/v1/jwks`` for an https issuer
    (docs/ci.md); the keys come from there, and the issuer's discovery document is not asked for."""
    with loopback_keys() as (url, asked):
        async def scenario(keys: IssuerKeys) -> None:
            assert await keys.candidates("good")
            assert keys.state()["state"] == "ok"

        keys_of({"issuer": REMOTE, "jwks_uri": f"{url}/openid/v1/jwks"}, None, scenario)
    assert asked == ["/openid/v1/jwks"]


def test_a_loopback_issuer_s_http_jwks_uri_is_followed() -> None:
    """The ``ccweb dev`` sandbox's issuer: on loopback itself, over http, its discovery document names its key set
    there too."""
    asked: list[str] = []
    with serve_issuer(asked) as issuer:
        async def scenario(keys: IssuerKeys) -> None:
            assert await keys.candidates(issuer.key.kid)
            assert keys.state()["state"] == "ok"

        keys_of({"issuer": issuer.issuer_url}, None, scenario)
    assert asked == ["/.well-known/openid-configuration", "/jwks"]


NOT_HTTPS = "{d} names a jwks_uri that is not https"
ON_LOOPBACK = "{d} names a jwks_uri on loopback, which only an issuer on loopback may"


@pytest.mark.parametrize(("issuer", "jwks_uri", "refused"), [
    pytest.param(REMOTE, f"{REMOTE}/jwks", None, id="remote-https"),
    pytest.param(REMOTE, "https://keys.example.net:8443/jwks", None, id="remote-naming-another-host"),
    pytest.param(REMOTE, "http://127.0.0.1:8001/openid/v1/jwks", NOT_HTTPS, id="remote-naming-the-cluster-keys-proxy"),
    pytest.param(REMOTE, "http://[::1]:9090/metrics", NOT_HTTPS, id="remote-naming-ipv6-loopback"),
    pytest.param(REMOTE, "http://LocalHost:9090/", NOT_HTTPS, id="remote-naming-localhost"),
    pytest.param(REMOTE, "http://login.example.com/jwks", NOT_HTTPS, id="remote-http"),
    pytest.param(REMOTE, "https://127.0.0.1:8001/openid/v1/jwks", ON_LOOPBACK, id="remote-naming-https-on-loopback"),
    pytest.param(REMOTE, "https://[::ffff:127.0.0.1]:9090/", ON_LOOPBACK, id="remote-naming-ipv4-mapped-loopback"),
    pytest.param("http://127.0.0.1:5556", "http://127.0.0.1:5556/jwks", None, id="loopback-http"),
    pytest.param("http://localhost:5556", "http://127.0.0.1:5557/jwks", None, id="loopback-naming-another-port"),
    pytest.param("https://127.0.0.1:5556", "http://[::1]:5556/jwks", None, id="loopback-https-naming-http"),
    pytest.param("http://127.0.0.1:5556", "https://keys.example.com/jwks", None, id="loopback-naming-remote-https"),
    pytest.param("http://127.0.0.1:5556", "http://keys.example.com/jwks", NOT_HTTPS, id="loopback-naming-remote-http"),
    pytest.param("http://127.0.0.1:5556", "ftp://127.0.0.1/jwks", NOT_HTTPS, id="loopback-naming-ftp"),
])
def test_which_discovered_jwks_uri_may_be_fetched(issuer: str, jwks_uri: str, refused: str | None) -> None:
    """``discovered_jwks_uri`` (pure): http only from an issuer on loopback to loopback; loopback only from one."""
    url = f"{issuer}/.well-known/openid-configuration"
    if refused is None:
        assert discovered_jwks_uri({"issuer": issuer, "jwks_uri": jwks_uri}, issuer, url) == jwks_uri
    else:
        with pytest.raises(DocumentError) as error:
            discovered_jwks_uri({"issuer": issuer, "jwks_uri": jwks_uri}, issuer, url)
        assert str(error.value) == refused.format(d=url)
