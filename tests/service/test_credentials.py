"""The credential flow end to end in one process: a policy reloaded while STS answers decides again, the route
under a root path, the bearer token read the same way by every route, and one SourceIdentity per identity
(no claim standing in for a rule's missing ``source_identity`` claim, no unverified e-mail)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.metrics import Metrics
from ccweb.reload import RunningPolicy
from ccweb.sandbox.issuer import DevIssuer
from ccweb.sts import BotoSTS, STSClient
from support import RecordingSTS, isolate_aws, serve_issuer, serve_moto

ROLE = "arn:aws:iam::111122223333:role/ccweb-"
BODY = {"protocol": "https", "host": "git-codecommit.us-east-1.amazonaws.com", "path": "v1/repos/secret-repo"}
EVE = {"sub": "u-eve", "email": "eve@example.com"}


def policy(issuer_url: str, *, deny: list[dict[str, Any]] | None = None, repositories: list[str] | None = None,
           extra_rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "issuers": [{"name": "corp", "issuer": issuer_url, "audiences": ["ccweb"]}],
        "deny": deny or [],
        "rules": [{"name": "everyone", "issuer": "corp", "role_arn": ROLE + "all",
                   "repositories": repositories or ["*"], "access": "write"}, *(extra_rules or [])],
    }


@pytest.fixture(scope="module")
def issuer() -> Iterator[DevIssuer]:
    with serve_issuer() as served:
        yield served


async def request_during_a_reload(issuer: DevIssuer, reloaded: dict[str, Any]) -> tuple[httpx.Response, RecordingSTS]:
    """Eve asks for a credential; while STS answers, the policy becomes ``reloaded``; then STS answers."""
    sts = RecordingSTS()
    async with httpx.AsyncClient() as http:  # the app's own client, for the issuer's keys: closed here
        app = create_app(parse_config(policy(issuer.issuer_url)), sts=sts, http=http)
        return await _during_a_reload(app, sts, issuer, reloaded)


async def _during_a_reload(app: FastAPI, sts: RecordingSTS, issuer: DevIssuer,
                           reloaded: dict[str, Any]) -> tuple[httpx.Response, RecordingSTS]:
    running: RunningPolicy = app.state.policy
    sts.hold()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccweb") as client:
        pending = asyncio.ensure_future(client.post(
            "/v1/credentials", json=BODY, headers={"Authorization": f"Bearer {issuer.mint(EVE)}"}))
        for _ in range(10_000):  # until the request waits on STS (a bound against a hang, not a timing)
            if sts.in_flight or pending.done():
                break
            await asyncio.sleep(0.001)
        assert sts.in_flight == 1, "the request reached STS"
        assert running.apply(parse_config(reloaded))
        sts.release()
        return await pending, sts


def test_a_suspension_added_while_sts_answers_applies_to_the_request(issuer: DevIssuer,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    deny = [{"name": "incident", "issuer": "corp", "claims": {"email": "eve@example.com"}}]
    with caplog.at_level(logging.INFO, logger="ccweb.audit"):
        response, _ = asyncio.run(request_during_a_reload(issuer, policy(issuer.issuer_url, deny=deny)))
    assert response.status_code == 403, response.text
    assert "suspended by its operators" in response.json()["detail"]
    outcomes = [r.fields["outcome"] for r in caplog.records if r.name == "ccweb.audit"]  # type: ignore[attr-defined]
    assert outcomes == ["denied"], "one audit line, for what was answered"


def test_a_rule_narrowed_while_sts_answers_no_longer_grants(issuer: DevIssuer) -> None:
    narrowed = policy(issuer.issuer_url, repositories=["public-*"])
    response, _ = asyncio.run(request_during_a_reload(issuer, narrowed))
    assert response.status_code == 403, response.text
    assert "No ccweb rule grants eve@example.com" in response.json()["detail"]


def test_a_reload_that_keeps_the_grant_answers_with_the_session_fetched(issuer: DevIssuer) -> None:
    other = {"name": "readers", "issuer": "corp", "role_arn": ROLE + "read", "repositories": ["docs"]}
    response, sts = asyncio.run(request_during_a_reload(issuer, policy(issuer.issuer_url, extra_rules=[other])))
    assert response.status_code == 200, response.text
    assert response.json()["rule"] == "everyone"
    assert len(sts.requests) == 1, "the same grant's session is the one already fetched"
    assert response.json()["username"].startswith(sts.issued[0].access_key_id + "%")


async def post(issuer: DevIssuer, url: str, headers: dict[str, str], root_path: str = "") -> list[httpx.Response]:
    async with httpx.AsyncClient() as http:
        app = create_app(parse_config(policy(issuer.issuer_url)), sts=RecordingSTS(), http=http)
        transport = httpx.ASGITransport(app=app, root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://ccweb") as client:
            return [await client.post(f"{url}/v1/credentials", json=BODY, headers=headers),
                    await client.get(f"{url}/v1/whoami", headers=headers)]


def test_every_route_is_served_below_a_root_path(issuer: DevIssuer) -> None:
    headers = {"Authorization": f"Bearer {issuer.mint({'sub': 'u-ann'})}"}
    credentials, whoami = asyncio.run(post(issuer, "/api", headers, root_path="/api"))
    assert (credentials.status_code, whoami.status_code) == (200, 200), credentials.text
    assert credentials.json()["repository"] == "secret-repo"


@pytest.mark.parametrize("authorization", ["Bearer {}", "bearer {}", "Bearer  {}", "Bearer {} "],
                         ids=["plain", "lower-case", "two-spaces", "trailing-space"])
def test_every_route_reads_the_bearer_token_alike(issuer: DevIssuer, authorization: str) -> None:
    headers = {"Authorization": authorization.format(issuer.mint({"sub": "u-ann"}))}
    credentials, whoami = asyncio.run(post(issuer, "", headers))
    assert (credentials.status_code, whoami.status_code) == (200, 200), credentials.text


@pytest.mark.parametrize("authorization", ["Basic {}", "Bearer", "{}", "Bearer\t{}"],
                         ids=["basic", "no-token", "no-scheme", "tab"])
def test_every_route_refuses_what_is_not_a_bearer_token(issuer: DevIssuer, authorization: str) -> None:
    headers = {"Authorization": authorization.format(issuer.mint({"sub": "u-ann"}))}
    for response in asyncio.run(post(issuer, "", headers)):
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_token"


SEEN: list[tuple[str, str]] = []


class Recorder:
    """A middleware an operator might add after the app is built: it records what passes through it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            SEEN.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


def test_a_middleware_added_later_wraps_the_credentials_route_too(issuer: DevIssuer) -> None:
    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient() as http:
            app = create_app(parse_config(policy(issuer.issuer_url)), sts=RecordingSTS(), http=http)
            app.add_middleware(Recorder)
            headers = {"Authorization": f"Bearer {issuer.mint({'sub': 'u-ann'})}"}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccweb") as client:
                return [await client.post("/v1/credentials", json=BODY, headers=headers),
                        await client.get("/v1/credentials"), await client.get("/healthz")]

    SEEN.clear()
    posted, wrong_method, health = asyncio.run(scenario())
    assert (posted.status_code, wrong_method.status_code, health.status_code) == (200, 405, 200)
    assert wrong_method.json()["error"] == "method_not_allowed"
    assert SEEN == [("POST", "/v1/credentials"), ("GET", "/v1/credentials"), ("GET", "/healthz")]


async def ask_as(issuer: DevIssuer, config: dict[str, Any], *tokens_claims: dict[str, Any],
                 metrics: Metrics | None = None) -> tuple[list[httpx.Response], RecordingSTS]:
    """``POST /v1/credentials`` for secret-repo once with a token of each of ``tokens_claims``, in turn."""
    sts = RecordingSTS()
    return await _ask_with(sts, issuer, config, tokens_claims, metrics), sts


async def _ask_with(sts: STSClient, issuer: DevIssuer, config: dict[str, Any],
                    tokens_claims: tuple[dict[str, Any], ...], metrics: Metrics | None = None) -> list[httpx.Response]:
    async with httpx.AsyncClient() as http:
        app = create_app(parse_config(config), sts=sts, http=http, metrics=metrics)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccweb") as client:
            return [await client.post("/v1/credentials", json=BODY,
                                      headers={"Authorization": f"Bearer {issuer.mint(claims)}"})
                    for claims in tokens_claims]


NEAR_SUBJECTS = [
    "repo:acme/app:ref:refs/heads/release/1.0", "repo:acme/app:ref:refs/heads/release-1.0",
    "repo:acme/app:ref:refs/heads/release:1.0", "jörg@example.com", "j-rg@example.com", "jérg@example.com",
    "a" * 64 + "/one", "a" * 64 + "/two", "repo-acme-app-ref-refs-heads-release-1.0=96818b6222f003e2072b",
]
"""Subjects a character apart (``/``, ``:`` or a non-ASCII letter against ``-``), long ones with a common start,
and one that is literally the name the first subject is given."""


def test_subjects_a_character_apart_never_share_a_source_identity(issuer: DevIssuer) -> None:
    responses, sts = asyncio.run(ask_as(issuer, policy(issuer.issuer_url), *({"sub": s} for s in NEAR_SUBJECTS)))
    assert [r.status_code for r in responses] == [200] * len(NEAR_SUBJECTS), responses[0].text
    names = [request.source_identity for request in sts.requests]
    assert len(set(names)) == len(NEAR_SUBJECTS), names
    assert all(re.fullmatch(r"[A-Za-z0-9_+=,.@-]{2,64}", name) for name in names)
    assert [request.session_name for request in sts.requests] == names
    assert "j-rg@example.com" in names, "a name STS accepts is kept as it is"
    assert names[0] == NEAR_SUBJECTS[-1], "the last subject claims the first one's name, and gets its own"


STAFF = {"name": "staff", "issuer": "corp", "claims": {"groups": "staff"}, "role_arn": ROLE + "staff",
         "repositories": ["*"], "source_identity": "employee_id"}


@pytest.mark.parametrize(("extra", "carried"), [
    ({}, "does not carry"),
    ({"employee_id": ["e-1", "e-2"]}, "carries as a list, not as a non-empty string or an integer"),
    ({"employee_id": ""}, "carries as an empty string, not as a non-empty string or an integer"),
], ids=["missing", "a-list", "empty"])
def test_a_missing_source_identity_claim_is_a_403_naming_it_and_no_sts_call(
        issuer: DevIssuer, caplog: pytest.LogCaptureFixture, extra: dict[str, Any], carried: str) -> None:
    config = {**policy(issuer.issuer_url), "rules": [STAFF]}
    metrics = Metrics()
    claims = {"sub": "u-bob", "email": "bob@example.com", "groups": ["staff"], **extra}
    with caplog.at_level(logging.INFO, logger="ccweb.audit"):
        [response], sts = asyncio.run(ask_as(issuer, config, claims, metrics=metrics))
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "access_denied"
    detail = response.json()["detail"]
    assert f"rule 'staff' takes the SourceIdentity from the claim \"employee_id\", which your token (subject " \
           f"'u-bob' of issuer 'corp') {carried}" in detail
    assert "bob@example.com" not in detail, "the e-mail does not stand in for the claim"
    assert sts.requests == []
    [line] = [r.fields for r in caplog.records if r.name == "ccweb.audit"]  # type: ignore[attr-defined]
    assert {k: line.get(k) for k in ("outcome", "reason", "rule", "identity", "source_identity")} == {
        "outcome": "denied", "reason": "no_source_identity", "rule": "staff", "identity": "bob@example.com",
        "source_identity": None}
    assert 'ccweb_decisions_total{outcome="denied",rule="staff"} 1.0' in metrics.exposition().decode()


def test_the_claim_once_present_is_the_source_identity(issuer: DevIssuer) -> None:
    config = {**policy(issuer.issuer_url), "rules": [STAFF]}
    claims = {"sub": "u-bob", "email": "bob@example.com", "groups": ["staff"]}
    responses, sts = asyncio.run(ask_as(issuer, config, {**claims, "employee_id": 4711},
                                        {**claims, "employee_id": "E 4711"}))
    assert [r.status_code for r in responses] == [200, 200]
    assert sts.requests[0].source_identity == "4711"
    assert sts.requests[1].source_identity.startswith("E-4711=")


@pytest.mark.parametrize("verified", [False, "false"], ids=["boolean", "string"])
def test_an_email_the_idp_marks_unverified_is_never_the_source_identity(issuer: DevIssuer,
                                                                         verified: object) -> None:
    mallory = {"sub": "u-mallory", "email": "eve@example.com", "email_verified": verified}
    responses, sts = asyncio.run(ask_as(issuer, policy(issuer.issuer_url), mallory,
                                        {**mallory, "email_verified": True}, {"sub": "u-ann", "email": "ann@x.org"}))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.source_identity for r in sts.requests] == ["u-mallory", "eve@example.com", "ann@x.org"]


@pytest.mark.parametrize("email", [
    " ", "\t", "\u3000", "\u200b", "", "@", "ann@", "@example.com", "ann@@example.com", "ann @example.com",
    "ann@example.com\u200b", "ann\u00a0@example.com",
], ids=["space", "tab", "ideographic-space", "zero-width-space", "empty", "at-alone", "no-domain", "no-local-part",
        "two-ats", "inner-space", "trailing-zero-width-space", "no-break-space"])
def test_an_email_that_is_not_an_address_is_never_the_source_identity(issuer: DevIssuer, email: str) -> None:
    """Two people whose IdP gives them the same blank or invisible e-mail are told apart by ``sub``: each gets a
    SourceIdentity and a session of their own."""
    responses, sts = asyncio.run(ask_as(issuer, policy(issuer.issuer_url), {"sub": "u-alice", "email": email},
                                        {"sub": "u-bob", "email": email}, {"sub": "u-ann", "email": "ann@x.org"}))
    assert [r.status_code for r in responses] == [200, 200, 200], responses[0].text
    assert [r.source_identity for r in sts.requests] == ["u-alice", "u-bob", "ann@x.org"]
    assert len({r.json()["username"].split("%", 1)[0] for r in responses}) == 3, "a session each"


def test_email_verified_is_true_or_the_string_true_in_any_case(issuer: DevIssuer) -> None:
    values = [True, "true", "TRUE", "True", 1, "yes", "1", None, ["true"]]
    responses, sts = asyncio.run(ask_as(issuer, policy(issuer.issuer_url), *(
        {"sub": f"u-{n}", "email": f"p{n}@example.com", "email_verified": value} for n, value in enumerate(values))))
    assert [r.status_code for r in responses] == [200] * len(values)
    assert [r.source_identity for r in sts.requests] == [
        "p0@example.com", "p1@example.com", "p2@example.com", "p3@example.com", "u-4", "u-5", "u-6", "u-7", "u-8"]


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's STS server on loopback, the service's AWS identity a throwaway one; its URL."""
    isolate_aws(monkeypatch)
    with serve_moto() as url:
        yield url


def test_through_moto_each_subject_is_its_own_assumed_role_session(issuer: DevIssuer, moto_url: str) -> None:
    """The sessions AWS records (moto's state, read from its own API): one RoleSessionName per subject."""
    async def scenario() -> list[httpx.Response]:
        sts = BotoSTS(endpoint_url=moto_url)
        try:
            return await _ask_with(sts, issuer, policy(issuer.issuer_url), tuple({"sub": s} for s in NEAR_SUBJECTS))
        finally:
            await sts.aclose()

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * len(NEAR_SUBJECTS), responses[0].text
    keys = [r.json()["username"].split("%", 1)[0] for r in responses]
    sessions = {s["access_key_id"]: s for s in httpx.get(f"{moto_url}/moto-api/data.json").json()["sts"]["AssumedRole"]}
    arns = [sessions[key]["arn"] for key in keys]
    assert len(set(arns)) == len(NEAR_SUBJECTS), arns
    assert arns[4] == "arn:aws:sts::111122223333:assumed-role/ccweb-all/j-rg@example.com"


def test_whoami_names_the_subject_when_the_email_is_unverified(issuer: DevIssuer) -> None:
    claims = {"sub": "u-mallory", "email": "eve@example.com", "email_verified": False}
    _, whoami = asyncio.run(post(issuer, "", {"Authorization": f"Bearer {issuer.mint(claims)}"}))
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["identity"] == "u-mallory"


async def whoami_and_ask(issuer: DevIssuer, config: dict[str, Any],
                         claims: dict[str, Any]) -> tuple[httpx.Response, httpx.Response, RecordingSTS]:
    """``GET /v1/whoami`` then ``POST /v1/credentials`` with one token of ``claims``."""
    sts = RecordingSTS()
    headers = {"Authorization": f"Bearer {issuer.mint(claims)}"}
    async with httpx.AsyncClient() as http:
        app = create_app(parse_config(config), sts=sts, http=http)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccweb") as client:
            whoami = await client.get("/v1/whoami", headers=headers)
            credentials = await client.post("/v1/credentials", json=BODY, headers=headers)
    return whoami, credentials, sts


def test_whoami_shows_each_rule_s_source_identity_as_sts_receives_it(issuer: DevIssuer) -> None:
    """A person sees, per rule, the name CloudTrail will show; and which rule would refuse for a missing claim."""
    config = {**policy(issuer.issuer_url), "rules": [STAFF, *policy(issuer.issuer_url)["rules"]]}
    claims = {"sub": "u-bob", "email": "bob@example.com", "groups": ["staff"], "employee_id": "E 4711"}
    whoami, credentials, sts = asyncio.run(whoami_and_ask(issuer, config, claims))
    assert (whoami.status_code, credentials.status_code) == (200, 200), whoami.text
    rules = {r["rule"]: (r["source_identity"], r["source_identity_claim"]) for r in whoami.json()["rules"]}
    assert rules == {"staff": (sts.requests[0].source_identity, "employee_id"),
                     "everyone": ("bob@example.com", None)}
    assert rules["staff"][0].startswith("E-4711=")

    del claims["employee_id"]
    whoami, credentials, sts = asyncio.run(whoami_and_ask(issuer, config, claims))
    assert (whoami.status_code, credentials.status_code) == (200, 403)
    rules = {r["rule"]: (r["source_identity"], r["source_identity_claim"]) for r in whoami.json()["rules"]}
    assert rules == {"staff": (None, "employee_id"), "everyone": ("bob@example.com", None)}
    assert sts.requests == []
