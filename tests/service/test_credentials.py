"""The credential flow end to end in one process: a policy reloaded while STS answers decides again, the route
under a root path, and the bearer token read the same way by every route."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.reload import RunningPolicy
from ccweb.sandbox.issuer import DevIssuer
from support import RecordingSTS, serve_issuer

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
