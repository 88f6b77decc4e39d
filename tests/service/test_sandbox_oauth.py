"""The sandbox issuer's interactive login: authorization code + PKCE, device flow, refresh with rotation."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from ccweb.sandbox.issuer import CLIENT_ID, DevIssuer
from support import serve_issuer

REDIRECT = "http://127.0.0.1:53682/callback"


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
    assert location.startswith(REDIRECT + "?")
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
