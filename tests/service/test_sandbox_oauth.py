"""The sandbox issuer's interactive login: authorization code + PKCE, device flow, refresh with rotation for the
public client ``ccweb-cli``; authorization code + PKCE + a client secret for the confidential ``ccweb-web``."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from ccweb.sandbox.issuer import CLIENT_ID, WEB_CLIENT_ID, DevIssuer
from support import serve, serve_issuer

REDIRECT = "http://127.0.0.1:53682/callback"
WEB_REDIRECT = "http://127.0.0.1:8700/auth/callback"
WEB_SECRET = "s3cret: with/odd+chars%and more"  # HTTP Basic: form-urlencoded (RFC 6749 2.3.1) or as it is


@pytest.fixture(scope="module")
def issuer() -> Iterator[tuple[DevIssuer, str]]:
    with serve_issuer() as dev:
        yield dev, dev.issuer_url


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def claims(dev: DevIssuer, token: str) -> dict[str, object]:
    return dict(jwt.decode(token, KeySet.import_key_set(dev.jwks())).claims)  # type: ignore[arg-type]


def authorize(url: str, challenge: str, **extra: str) -> dict[str, str]:
    params = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "response_type": "code", "state": "s-1",
              "nonce": "n-1", "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    page = httpx.get(f"{url}/authorize", params=params)
    assert page.status_code == 200 and "alice" in page.text
    answer = httpx.post(f"{url}/authorize", data={**params, "user": "alice"})
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith(params["redirect_uri"] + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_authorization_code_with_pkce_gives_an_id_token_for_the_cli_client(issuer: tuple[DevIssuer, str]) -> None:
    dev, url = issuer
    verifier, challenge = pkce()
    back = authorize(url, challenge)
    assert back["state"] == "s-1"
    tokens = httpx.post(f"{url}/token", data={"grant_type": "authorization_code", "code": back["code"],
                                              "redirect_uri": REDIRECT, "client_id": CLIENT_ID,
                                              "code_verifier": verifier}).json()
    seen = claims(dev, tokens["id_token"])
    assert seen["aud"] == CLIENT_ID and seen["nonce"] == "n-1" and seen["email"] == "alice@example.com"
    again = httpx.post(f"{url}/token", data={"grant_type": "authorization_code", "code": back["code"],
                                             "redirect_uri": REDIRECT, "client_id": CLIENT_ID,
                                             "code_verifier": verifier})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"  # a code is used once


def test_a_wrong_verifier_is_refused(issuer: tuple[DevIssuer, str]) -> None:
    _, url = issuer
    _, challenge = pkce()
    back = authorize(url, challenge)
    answer = httpx.post(f"{url}/token", data={"grant_type": "authorization_code", "code": back["code"],
                                              "redirect_uri": REDIRECT, "client_id": CLIENT_ID,
                                              "code_verifier": pkce()[0]})
    assert answer.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("redirect", ["https://evil.example/callback", "http://10.0.0.1:8080/callback"])
def test_redirects_away_from_loopback_are_refused(issuer: tuple[DevIssuer, str], redirect: str) -> None:
    _, url = issuer
    page = httpx.get(f"{url}/authorize", params={"client_id": CLIENT_ID, "redirect_uri": redirect,
                                                 "response_type": "code", "code_challenge": pkce()[1],
                                                 "code_challenge_method": "S256"})
    assert page.status_code == 200 and "refused" in page.text and "location" not in page.headers


def test_device_flow_then_refresh_with_rotation(issuer: tuple[DevIssuer, str]) -> None:
    dev, url = issuer
    start = httpx.post(f"{url}/device/code", data={"client_id": CLIENT_ID, "scope": "openid"}).json()
    poll = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": start["device_code"],
            "client_id": CLIENT_ID}
    assert httpx.post(f"{url}/token", data=poll).json()["error"] in ("authorization_pending", "slow_down")
    page = httpx.post(f"{url}/device", data={"user_code": start["user_code"].lower(), "user": "bob"})
    assert "Signed in as bob" in page.text
    tokens = httpx.post(f"{url}/token", data=poll).json()
    assert claims(dev, tokens["id_token"])["email"] == "bob@example.com"
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": CLIENT_ID}
    renewed = httpx.post(f"{url}/token", data=refresh).json()
    assert claims(dev, renewed["id_token"])["sub"] == "dev|bob"
    assert renewed["refresh_token"] != tokens["refresh_token"]
    assert httpx.post(f"{url}/token", data=refresh).json()["error"] == "invalid_grant"  # rotated: used once


@pytest.fixture(scope="module")
def web_issuer() -> Iterator[tuple[DevIssuer, str]]:
    dev = DevIssuer("http://127.0.0.1", web_client_secret=WEB_SECRET)
    with serve(dev.app()) as url:
        dev.issuer_url = dev.login.issuer_url = url
        yield dev, url


def basic(client_id: str, secret: str, *, encoded: bool = True) -> dict[str, str]:
    """``Authorization: Basic`` as RFC 6749 2.3.1 writes it (each part form-urlencoded first), or as many clients
    write it, authlib's among them (``encoded=False``)."""
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}" if encoded else f"{client_id}:{secret}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def web_code(url: str, challenge: str, nonce: str = "n-web") -> str:
    back = authorize(url, challenge, client_id=WEB_CLIENT_ID, redirect_uri=WEB_REDIRECT, nonce=nonce)
    return back["code"]


def redeem(url: str, code: str, verifier: str, *, headers: dict[str, str] | None = None,
           **form: str) -> httpx.Response:
    return httpx.post(f"{url}/token", headers=headers, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": WEB_REDIRECT, "code_verifier": verifier,
        **form,
    })


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_basic unencoded", "client_secret_post"])
def test_the_web_client_gets_an_id_token_for_itself_with_its_secret(web_issuer: tuple[DevIssuer, str],
                                                                   method: str) -> None:
    dev, url = web_issuer
    verifier, challenge = pkce()
    code = web_code(url, challenge, nonce="n-42")
    if method.startswith("client_secret_basic"):
        headers = basic(WEB_CLIENT_ID, WEB_SECRET, encoded="unencoded" not in method)
        answer = redeem(url, code, verifier, headers=headers)
    else:
        answer = redeem(url, code, verifier, client_id=WEB_CLIENT_ID, client_secret=WEB_SECRET)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    seen = claims(dev, tokens["id_token"])
    assert (seen["aud"], seen["nonce"], seen["sub"], seen["iss"]) == (WEB_CLIENT_ID, "n-42", "dev|alice", url)
    assert "refresh_token" not in tokens  # a web page signs in again; it keeps nothing to renew with
    assert answer.headers["cache-control"] == "no-store"


AUTH_REFUSALS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "no secret": ({}, {"client_id": WEB_CLIENT_ID}),
    "no client at all": ({}, {}),
    "a wrong secret in the form": ({}, {"client_id": WEB_CLIENT_ID, "client_secret": WEB_SECRET + "x"}),
    "an empty secret in the form": ({}, {"client_id": WEB_CLIENT_ID, "client_secret": ""}),
    "a wrong secret in Basic": (basic(WEB_CLIENT_ID, WEB_SECRET[:-1]), {}),
    "a wrong secret unencoded in Basic": (basic(WEB_CLIENT_ID, WEB_SECRET + "+", encoded=False), {}),
    "Basic that is not base64": ({"Authorization": "Basic ???"}, {}),
    "Basic without a colon": ({"Authorization": "Basic " + base64.b64encode(WEB_CLIENT_ID.encode()).decode()}, {}),
    "another scheme": ({"Authorization": "Bearer " + WEB_SECRET}, {}),
    "Basic and the form both": (basic(WEB_CLIENT_ID, WEB_SECRET), {"client_secret": WEB_SECRET}),
    "Basic for one client, the form naming another": (basic(WEB_CLIENT_ID, WEB_SECRET), {"client_id": CLIENT_ID}),
    "an unknown client": (basic("ccweb-other", WEB_SECRET), {}),
    "the public client with a secret": ({}, {"client_id": CLIENT_ID, "client_secret": WEB_SECRET}),
}


@pytest.mark.parametrize(("headers", "form"), AUTH_REFUSALS.values(), ids=AUTH_REFUSALS.keys())
def test_a_token_request_without_the_web_client_s_secret_is_refused_and_the_code_kept(
        web_issuer: tuple[DevIssuer, str], headers: dict[str, str], form: dict[str, str]) -> None:
    _, url = web_issuer
    verifier, challenge = pkce()
    code = web_code(url, challenge)
    refused = redeem(url, code, verifier, headers=headers, **form)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert WEB_SECRET not in refused.text
    assert refused.headers["www-authenticate"].startswith("Basic ")
    # Refused before the code was looked at: the web client, authenticated, still redeems it.
    assert redeem(url, code, verifier, headers=basic(WEB_CLIENT_ID, WEB_SECRET)).status_code == 200


def test_a_code_is_redeemed_only_by_the_client_it_was_issued_to(web_issuer: tuple[DevIssuer, str]) -> None:
    _, url = web_issuer
    verifier, challenge = pkce()
    cli_code = authorize(url, challenge, redirect_uri=WEB_REDIRECT)["code"]  # issued to ccweb-cli
    stolen = redeem(url, cli_code, verifier, headers=basic(WEB_CLIENT_ID, WEB_SECRET))
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    web = web_code(url, challenge)
    as_public = redeem(url, web, verifier, client_id=CLIENT_ID)  # the public client, which needs no secret
    assert as_public.status_code == 400 and as_public.json()["error"] == "invalid_grant"


def test_the_web_client_needs_pkce_and_its_own_verifier(web_issuer: tuple[DevIssuer, str]) -> None:
    _, url = web_issuer
    params = {"client_id": WEB_CLIENT_ID, "redirect_uri": WEB_REDIRECT, "response_type": "code", "state": "s-9",
              "code_challenge": "x" * 43, "code_challenge_method": "plain", "user": "alice"}
    answer = httpx.post(f"{url}/authorize", data=params)
    assert answer.status_code == 303
    back = parse_qs(urlsplit(answer.headers["location"]).query)
    assert back["error"] == ["invalid_request"] and back["state"] == ["s-9"] and "code" not in back
    _, challenge = pkce()
    wrong = redeem(url, web_code(url, challenge), pkce()[0], headers=basic(WEB_CLIENT_ID, WEB_SECRET))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("redirect", ["https://evil.example/auth/callback", "http://10.0.0.1:8700/auth/callback",
                                      "https://127.0.0.1:8700/auth/callback", "http://127.0.0.1:8700/auth/callback#x"])
def test_the_web_client_is_redirected_to_loopback_http_only(web_issuer: tuple[DevIssuer, str], redirect: str) -> None:
    _, url = web_issuer
    params = {"client_id": WEB_CLIENT_ID, "redirect_uri": redirect, "response_type": "code", "state": "s-1",
              "code_challenge": pkce()[1], "code_challenge_method": "S256"}
    for answer in (httpx.get(f"{url}/authorize", params=params),
                   httpx.post(f"{url}/authorize", data={**params, "user": "alice"})):
        assert answer.status_code == 200 and "refused" in answer.text and "location" not in answer.headers


def test_one_sign_in_page_names_the_client_and_offers_every_demo_user(web_issuer: tuple[DevIssuer, str]) -> None:
    _, url = web_issuer
    pages: dict[str, str] = {}
    for client_id, redirect in ((CLIENT_ID, REDIRECT), (WEB_CLIENT_ID, WEB_REDIRECT)):
        pages[client_id] = httpx.get(f"{url}/authorize", params={
            "client_id": client_id, "redirect_uri": redirect, "response_type": "code", "state": "s-1",
            "code_challenge": pkce()[1], "code_challenge_method": "S256"}).text
    assert "Signing in to the ccweb web page." in pages[WEB_CLIENT_ID]
    assert "Signing in to ccweb-helper." in pages[CLIENT_ID]
    for page in pages.values():
        for user in ("alice", "bob", "mallory"):
            assert f"<button name='user' value='{user}'" in page


def test_the_web_client_may_not_use_the_device_grant_nor_refresh(web_issuer: tuple[DevIssuer, str]) -> None:
    _, url = web_issuer
    started = httpx.post(f"{url}/device/code", data={"client_id": WEB_CLIENT_ID, "scope": "openid"})
    assert started.status_code == 400 and started.json()["error"] == "unauthorized_client"
    device = httpx.post(f"{url}/device/code", data={"client_id": CLIENT_ID, "scope": "openid"}).json()
    authenticated = basic(WEB_CLIENT_ID, WEB_SECRET)
    for form in ({"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": device["device_code"]},
                 {"grant_type": "refresh_token", "refresh_token": "anything"}):
        answer = httpx.post(f"{url}/token", headers=authenticated, data=form)
        assert answer.status_code == 400 and answer.json()["error"] == "unauthorized_client"


def test_discovery_names_both_ways_of_sending_the_secret(web_issuer: tuple[DevIssuer, str]) -> None:
    _, url = web_issuer
    document: dict[str, Any] = httpx.get(f"{url}/.well-known/openid-configuration").json()
    assert set(document["token_endpoint_auth_methods_supported"]) == {"none", "client_secret_basic",
                                                                      "client_secret_post"}
    assert document["code_challenge_methods_supported"] == ["S256"]
