"""The sandbox's web page sign-in as ``ccweb dev`` sets it up: its ``web:`` block names the development issuer's
confidential client ``ccweb-web``, whose secret and the session secret are files of the work directory that no
one else may read; an ID token issued to that client is one the API accepts; and signing in on the page as
alice, bob or mallory shows each their own answer (without a browser: tests/e2e/web has the browser's view)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from ccweb.sandbox.dev import Sandbox, sandbox_web, write_web_secrets
from ccweb.sandbox.issuer import DEMO_USERS, WEB_CLIENT_ID
from ccweb.webconfig import MIN_SESSION_SECRET_BYTES, read_secret, redirect_uri


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_policy_names_the_web_client_and_both_secrets_as_private_files(sandbox: Sandbox) -> None:
    web = sandbox.config.web
    assert (web.issuer, web.client_id, web.public_url) == ("dev", WEB_CLIENT_ID, sandbox.api_url)
    assert redirect_uri(web) == f"{sandbox.api_url}/auth/callback"
    assert WEB_CLIENT_ID in sandbox.config.issuers[0].audiences
    assert web.client_secret is not None and web.session_secret is not None
    folder = sandbox.workdir / "web"
    assert mode(folder) == 0o700
    assert [web.client_secret.file, web.session_secret.file] == [str(folder / "client-secret"),
                                                                 str(folder / "session-secret")]
    assert sorted(path.name for path in folder.iterdir()) == ["client-secret", "session-secret"]  # no temp file
    for path in folder.iterdir():
        assert mode(path) == 0o600
    assert read_secret(web.client_secret, "web.client_secret") == sandbox.issuer.web_client_secret.encode()
    session = read_secret(web.session_secret, "web.session_secret", minimum=MIN_SESSION_SECRET_BYTES)
    assert len(session) >= MIN_SESSION_SECRET_BYTES and session != sandbox.issuer.web_client_secret.encode()


def test_each_run_writes_new_secrets_and_narrows_what_was_there(tmp_path: Path) -> None:
    folder = tmp_path / "web"
    folder.mkdir(mode=0o755)
    (folder / "session-secret").write_text("left by someone else")
    (folder / "session-secret").chmod(0o644)
    write_web_secrets(tmp_path, "first")
    first = (folder / "session-secret").read_bytes()
    write_web_secrets(tmp_path, "second")
    assert (folder / "client-secret").read_text() == "second"
    assert first != (folder / "session-secret").read_bytes() != b"left by someone else"
    assert (mode(folder), mode(folder / "session-secret"), mode(folder / "client-secret")) == (0o700, 0o600, 0o600)
    web = sandbox_web("http://127.0.0.1:8700", tmp_path)
    assert web["client_secret"] == {"file": str(folder / "client-secret")}


def test_the_secret_in_the_file_gets_an_id_token_the_api_accepts(sandbox: Sandbox) -> None:
    """What the page's sign-in does, by hand: the issuer's sign-in page, the code redeemed with the client secret
    the sandbox wrote, and the ID token (aud ccweb-web) shown to the API, which names alice."""
    web = sandbox.config.web
    assert web.client_secret is not None and web.client_secret.file is not None
    secret = Path(web.client_secret.file).read_text()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    callback = redirect_uri(web)
    signed_in = httpx.post(f"{sandbox.issuer_url}/authorize", data={
        "client_id": WEB_CLIENT_ID, "redirect_uri": callback, "response_type": "code", "state": "s",
        "nonce": "n", "code_challenge": challenge, "code_challenge_method": "S256", "user": "alice"})
    assert signed_in.status_code == 303 and signed_in.headers["location"].startswith(callback + "?")
    code = parse_qs(urlsplit(signed_in.headers["location"]).query)["code"][0]
    tokens = httpx.post(f"{sandbox.issuer_url}/token", auth=(WEB_CLIENT_ID, secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": callback, "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.text
    whoami = httpx.get(f"{sandbox.api_url}/v1/whoami",
                       headers={"Authorization": f"Bearer {tokens.json()['id_token']}"})
    assert whoami.status_code == 200, whoami.text
    seen = whoami.json()
    assert (seen["identity"], [rule["rule"] for rule in seen["rules"]]) == ("alice@example.com", ["developers"])


ANSWERS = {"alice": ["developers"], "bob": ["contractors"], "mallory": []}


@pytest.mark.parametrize("user", ANSWERS)
def test_each_demo_user_signs_in_on_the_page_and_sees_their_own_rules(sandbox: Sandbox, user: str) -> None:
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        sign_in = browser.get(f"{sandbox.api_url}/auth/login")  # to the development issuer's sign-in page
        assert str(sign_in.url).startswith(f"{sandbox.issuer_url}/authorize?"), sign_in.url
        assert sign_in.url.params["client_id"] == WEB_CLIENT_ID and "Signing in to the ccweb web page" in sign_in.text
        page = browser.post(f"{sandbox.issuer_url}/authorize", data={**sign_in.url.params, "user": user})
    assert (page.status_code, str(page.url)) == (200, f"{sandbox.api_url}/"), page.text
    assert f'data-identity="{DEMO_USERS[user]["email"]}"' in page.text
    assert re.findall(r'<li class="rule" data-rule="([^"]*)"', page.text) == ANSWERS[user]
    assert ('id="no-access"' in page.text) == (not ANSWERS[user])
