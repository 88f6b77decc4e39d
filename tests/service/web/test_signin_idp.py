"""Sign-in against an identity provider that fails: one that cannot be reached, names another issuer or an endpoint
ccweb will not use, answers the code with an error, with something that is not a token response (too large,
nested too deep, a number no clock holds) or without an ID token, hides its key set, or hands out an ID token of
another trusted issuer. Each is a message page with the status the person needs (400, 401, 502, 503) and signs no
one in. Sign-ins that wait on a slow discovery document share one fetch of it. A loopback stand-in plays the
identity provider (``support.serve_json``), a public client this time: no secret is sent, the PKCE verifier is."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from ccweb.sandbox.issuer import DevIssuer
from support import Asked, serve_issuer, serve_json
from websignin import APP_URL, Web, message

Answer = tuple[int, bytes | dict[str, Any] | list[Any]]


@dataclass
class StandIn:
    """An identity provider whose discovery document, token endpoint and key set answer as the test says."""

    url: str = ""
    signer: DevIssuer | None = None
    discovery: Callable[[StandIn], Answer] | None = None
    token: Callable[[StandIn, dict[str, str]], Answer] | None = None
    jwks: Answer | None = None
    asked: list[Asked] = field(default_factory=list)
    nonce: str = ""

    def answer(self, asked: Asked) -> Answer:
        self.asked.append(asked)
        path = urlsplit(asked.path).path
        if path == "/.well-known/openid-configuration":
            if self.discovery is not None:
                return self.discovery(self)
            return 200, {"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
                         "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks"}
        if path == "/token":
            form = dict(parse_qsl(asked.body.decode()))
            if self.token is not None:
                return self.token(self, form)
            return 200, {"access_token": "at", "token_type": "Bearer", "id_token": self.id_token()}
        if path == "/jwks":
            return self.jwks or (200, self.signer_.jwks())
        return 404, {"error": "not_found"}

    @property
    def signer_(self) -> DevIssuer:
        if self.signer is None:
            self.signer = DevIssuer(self.url)
        return self.signer

    def id_token(self, **claims: Any) -> str:
        return self.signer_.mint({"sub": "u-1", "email": "alice@example.com", "groups": ["engineering"],
                                  "nonce": self.nonce, **claims}, audience="ccweb-web")


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    idp = StandIn()
    with serve_json(idp.answer) as url:
        idp.url = url
        yield idp


def policy(issuer_url: str, *extra_issuers: dict[str, Any]) -> dict[str, Any]:
    return {
        "issuers": [{"name": "corp", "issuer": issuer_url, "audiences": ["ccweb", "ccweb-web"]}, *extra_issuers],
        "rules": [{"name": "developers", "issuer": "corp", "claims": {"groups": "engineering"},
                   "role_arn": "arn:aws:iam::111122223333:role/dev", "repositories": ["*"], "access": "write"}],
        "web": {"issuer": "corp", "client_id": "ccweb-web", "public_url": APP_URL,
                "session_secret": {"env": "CCWEB_TEST_UNUSED"}},  # create_app is handed the secret itself
    }


def back_from(web: Web, idp: StandIn) -> tuple[int, str]:
    """Sign in at the stand-in (which signs in at once): the callback's status and sentence (or its location)."""
    browser = web.browser()
    login = browser.get("/auth/login")
    assert login.status_code == 302, login.text
    sent = dict(parse_qsl(urlsplit(login.headers["location"]).query))
    idp.nonce = sent["nonce"]
    done = browser.get("/auth/callback", params={"code": "the-code", "state": sent["state"]})
    assert browser.who() is None or done.status_code == 303
    return done.status_code, done.headers["location"] if done.status_code == 303 else message(done)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_public_client_sends_its_code_verifier_and_no_secret(make_web: Callable[..., Web],
                                                                stand_in: StandIn) -> None:
    web = make_web(policy=policy(stand_in.url))
    assert back_from(web, stand_in) == (303, "/")
    [token] = [asked for asked in stand_in.asked if asked.path == "/token"]
    form = dict(parse_qsl(token.body.decode()))
    assert form["grant_type"] == "authorization_code" and form["client_id"] == "ccweb-web"
    assert len(form["code_verifier"]) >= 43 and form["redirect_uri"] == f"{APP_URL}/auth/callback"
    assert "client_secret" not in form and token.headers.get("Authorization") is None


@pytest.mark.parametrize(("token", "status", "said"), [
    (lambda idp, form: (500, {"error": "server_error"}), 502,
     "The identity provider failed to finish the sign-in (HTTP 500)"),
    (lambda idp, form: (400, {"error": "invalid_grant", "error_description": "<b>used</b>"}), 400,
     "The identity provider refused to finish the sign-in (invalid_grant)."),
    (lambda idp, form: (200, {"error": "access_denied"}), 400,
     "The identity provider refused to finish the sign-in (access_denied)."),
    (lambda idp, form: (429, b"<html>slow down</html>"), 400,
     "The identity provider refused to finish the sign-in (HTTP 429)"),
    (lambda idp, form: (200, b"<html>maintenance</html>"), 502,
     "The identity provider answered the sign-in with something that is not a token response"),
    (lambda idp, form: (200, {"access_token": "at", "token_type": "Bearer"}), 502,
     "The identity provider finished the sign-in without an ID token"),
    (lambda idp, form: (200, {"access_token": "at", "token_type": "Bearer", "id_token": idp.id_token(sub="")}),
     401, "The OIDC token was refused: its sub claim is invalid."),
    (lambda idp, form: (429, {}), 400, "The identity provider refused to finish the sign-in (HTTP 429)."),
    (lambda idp, form: (401, {"error_description": "no"}), 400,
     "The identity provider refused to finish the sign-in (HTTP 401)."),
    (lambda idp, form: (302, {}), 502,
     "The identity provider answered the sign-in with HTTP 302, not a token response"),
    (lambda idp, form: (200, b'{"access_token": "at", "token_type": "Bearer", "expires_in": 1e400}'), 502,
     "The identity provider answered the sign-in with something that is not a token response"),
    (lambda idp, form: (200, b"[" * 30000 + b"]" * 30000), 502,
     "The identity provider answered the sign-in with something that is not a token response"),
    (lambda idp, form: (200, {"access_token": "at", "token_type": "Bearer", "id_token": idp.id_token(),
                              "padding": "x" * (64 * 1024)}), 502,
     "The identity provider answered the sign-in with more than 64 KiB"),
], ids=["http-500", "invalid-grant", "error-in-200", "http-429-not-json", "not-json", "no-id-token",
        "no-subject", "http-429-empty-object", "http-401-without-code", "http-302", "expires-in-no-clock-holds",
        "nested-too-deep", "larger-than-64-KiB"])
def test_a_token_endpoint_that_fails_is_a_message_page(make_web: Callable[..., Web], stand_in: StandIn,
                                                       token: Callable[[StandIn, dict[str, str]], Answer],
                                                       status: int, said: str) -> None:
    stand_in.token = token
    answer = back_from(make_web(policy=policy(stand_in.url)), stand_in)
    assert answer[0] == status
    assert answer[1].startswith(said)
    assert "<b>" not in answer[1]


def test_a_key_set_that_cannot_be_had_is_a_503(make_web: Callable[..., Web], stand_in: StandIn) -> None:
    stand_in.jwks = (503, {"error": "busy"})
    status, said = back_from(make_web(policy=policy(stand_in.url)), stand_in)
    assert status == 503
    assert said.startswith(f"ccweb cannot fetch the signing keys of the identity provider {stand_in.url}")


def test_a_token_endpoint_that_cannot_be_reached_is_a_503(make_web: Callable[..., Web], stand_in: StandIn) -> None:
    port = closed_port()

    def discovery(idp: StandIn) -> Answer:
        return 200, {"issuer": idp.url, "authorization_endpoint": f"{idp.url}/authorize",
                     "token_endpoint": f"http://127.0.0.1:{port}/token"}

    stand_in.discovery = discovery
    status, said = back_from(make_web(policy=policy(stand_in.url)), stand_in)
    assert status == 503
    assert said.startswith("ccweb cannot reach the identity provider to finish the sign-in")


@pytest.mark.parametrize(("document", "problem"), [
    (lambda idp: {"issuer": "https://elsewhere.example", "authorization_endpoint": f"{idp.url}/a",
                  "token_endpoint": f"{idp.url}/t"}, "names a different issuer"),
    (lambda idp: {"issuer": idp.url, "authorization_endpoint": "http://idp.example/authorize",
                  "token_endpoint": f"{idp.url}/t"}, "names a authorization_endpoint that is not an https URL"),
    (lambda idp: {"issuer": idp.url, "authorization_endpoint": f"{idp.url}/a"},
     "names no token_endpoint that is a URL"),
], ids=["another-issuer", "plain-http-elsewhere", "no-token-endpoint"])
def test_a_discovery_document_ccweb_will_not_use_is_a_503_at_sign_in(
        make_web: Callable[..., Web], stand_in: StandIn, document: Callable[[StandIn], dict[str, Any]],
        problem: str) -> None:
    stand_in.discovery = lambda idp: (200, document(idp))
    browser = make_web(policy=policy(stand_in.url)).browser()
    refused = browser.get("/auth/login")
    assert refused.status_code == 503
    assert message(refused).startswith(f"ccweb cannot reach the identity provider {stand_in.url} to sign you in")
    assert problem in message(refused)
    assert "location" not in refused.headers


def test_an_identity_provider_that_cannot_be_reached_is_a_503_and_is_not_asked_again_at_once(
        make_web: Callable[..., Web]) -> None:
    web = make_web(policy=policy(f"http://127.0.0.1:{closed_port()}"))
    browser = web.browser()
    first, second = browser.get("/auth/login"), browser.get("/auth/login")
    assert first.status_code == second.status_code == 503
    assert "could not be fetched (ConnectError)" in message(first)
    assert message(second) == message(first)


def test_an_id_token_of_another_trusted_issuer_is_a_401(make_web: Callable[..., Web], stand_in: StandIn) -> None:
    with serve_issuer() as other:
        stand_in.signer = other  # the stand-in answers with an ID token the partner issuer signed
        other_entry = {"name": "partner", "issuer": other.issuer_url, "audiences": ["ccweb-web"]}
        status, said = back_from(make_web(policy=policy(stand_in.url, other_entry)), stand_in)
    assert status == 401
    assert said == ("The OIDC token was refused: it is from the issuer 'partner', not 'corp' where this sign-in "
                    "started.")


def test_sign_ins_that_wait_on_a_slow_discovery_document_share_one_fetch(make_web: Callable[..., Web],
                                                                        stand_in: StandIn) -> None:
    second = threading.Event()  # set by a second fetch: then every fetch answers at once

    def slow(idp: StandIn) -> Answer:
        if [a.path for a in idp.asked].count("/.well-known/openid-configuration") > 1:
            second.set()
        second.wait(2.0)  # the one fetch is held a while, as an identity provider under load holds it
        return 200, {"issuer": idp.url, "authorization_endpoint": f"{idp.url}/authorize",
                     "token_endpoint": f"{idp.url}/token"}

    stand_in.discovery = slow
    web = make_web(policy=policy(stand_in.url))
    browsers = [web.browser() for _ in range(8)]

    async def all_at_once() -> list[int]:
        answers = await asyncio.gather(*(b.client.get("/auth/login") for b in browsers))
        return [answer.status_code for answer in answers]

    assert web.run(all_at_once()) == [302] * len(browsers)
    assert [a.path for a in stand_in.asked] == ["/.well-known/openid-configuration"]
