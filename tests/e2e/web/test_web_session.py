"""The page's session and headers as a real browser holds and receives them: the cookie's flags over http and
behind https (a test certificate on loopback), the session ending with the sign-in, a copy of the cookie taken
before sign-out ending there too, and the security headers.

Where a test needs the service's clock or TLS, it serves the service (with its page) on a port of its own,
signing in at the sandbox's issuer as the sandbox's own page does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from selenium.webdriver import Chrome

from browser import (
    OpenBrowser,
    element,
    elements,
    page_loaded_from,
    received,
    session_cookies,
    sign_in,
    signed_in_as,
    wait,
)
from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.limits import SERVER_OPTIONS
from ccweb.sandbox.dev import Sandbox, sandbox_policy, sandbox_web
from ccweb.webconfig import MIN_SESSION_SECRET_BYTES, read_secret
from support import RecordingSTS, self_signed

CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
PAGE_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def own_page(box: Sandbox, *, clock: Callable[[], float] = time.time, tls: Path | None = None,
             **web: Any) -> Iterator[str]:
    """The service with its page on a port of its own (its URL), signing in at ``box``'s issuer as the sandbox's
    page does, with ``web`` over the sandbox's ``web:`` settings; ``clock``: the service's time; ``tls``: a
    directory for a test certificate, then served over https (and ``public_url`` is https)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{sock.getsockname()[1]}"
    config = parse_config(sandbox_policy(box.issuer_url, box.git_host, {**sandbox_web(url, box.workdir), **web}))
    assert config.web.session_secret is not None
    secret = read_secret(config.web.session_secret, "web.session_secret", minimum=MIN_SESSION_SECRET_BYTES)
    app = create_app(config, sts=RecordingSTS(), clock=clock, web_session_secret=secret)
    certificate = None if tls is None else str(self_signed(tls)[0])  # its key beside it, key.pem
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", http="h11",
                                    ssl_certfile=certificate, ssl_keyfile=tls and str(tls / "key.pem"),
                                    **SERVER_OPTIONS))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(sockets=[sock]),), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60  # a bound against a hang: a busy machine may take seconds to start it
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            threading.Event().wait(0.01)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)
        loop.close()
        sock.close()


def session_content(cookie: str) -> dict[str, Any]:
    """What a session cookie's value holds (signed, not encrypted: its holder can read it)."""
    payload = cookie.split(".", 1)[0]
    content: dict[str, Any] = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
    return content


def page_cookies(browser: Chrome) -> list[dict[str, Any]]:
    """The cookies the browser holds for the page's host (127.0.0.1: the sandbox's issuer sets none)."""
    return [c for c in session_cookies(browser) if c["domain"] == "127.0.0.1"]


def test_the_session_cookie_is_httponly_and_samesite_lax(sandbox: Sandbox, browser: Chrome) -> None:
    sign_in(browser, f"{sandbox.api_url}/", "alice")
    [cookie] = page_cookies(browser)
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # plain http on loopback: a Secure cookie would not come back
    assert cookie["path"] == "/"
    assert cookie["session"] or cookie["expires"] <= time.time() + 8 * 3600 + 60, "it outlives the longest session"
    assert browser.execute_script("return document.cookie") == "", "the page's scripts can read the session"


def test_behind_https_the_cookie_is_secure_and_host_only(sandbox: Sandbox, tmp_path: Path,
                                                          open_browser: OpenBrowser) -> None:
    with own_page(sandbox, tls=tmp_path) as url:
        secure = open_browser(trust=(tmp_path / "cert.pem").read_bytes())
        secure.get(f"{url}/")
        assert received(secure, f"{url}/").headers.get("strict-transport-security", "").startswith("max-age=")
        element(secure, "a#sign-in").click()  # the session starts here: it holds the sign-in's state
        page_loaded_from(secure, f"{sandbox.issuer_url}/authorize")
        [cookie] = page_cookies(secure)
    assert cookie["name"].startswith("__Host-"), cookie["name"]
    assert cookie["secure"] is True
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/"


@pytest.mark.parametrize(("web", "lasts"), [
    pytest.param({}, 3600, id="the-ID-token-expires"),
    pytest.param({"session_max_seconds": 300}, 300, id="web.session_max_seconds-passes"),
])
def test_the_session_ends_with_the_sign_in(sandbox: Sandbox, browser: Chrome, web: dict[str, Any],
                                           lasts: int) -> None:
    at: list[float | None] = [None]  # the service's time: this machine's until the test sets it
    with own_page(sandbox, clock=lambda: time.time() if at[0] is None else at[0], **web) as url:
        sign_in(browser, f"{url}/", "bob")
        [cookie] = page_cookies(browser)
        held = session_content(cookie["value"])["signed_in"]
        ends = held["expires_at"]  # the ID token's exp is in whole seconds, minted moments before the sign-in
        assert lasts - 5 < ends - held["signed_in_at"] <= lasts
        at[0] = ends - 1
        browser.refresh()
        assert signed_in_as(browser) == "bob@example.com"
        at[0] = ends
        browser.refresh()
        assert "session ended" in element(browser, "#notice").text
        assert element(browser, "a#sign-in").is_displayed()
        assert not elements(browser, "#who")
        browser.get(f"{url}/?repo=demo")  # the reach box answers no one
        element(browser, "a#sign-in")
        assert not elements(browser, "#reach-answer")


def test_sign_out_signs_the_browser_out_and_a_copy_of_its_cookie_ends_with_the_session(
        sandbox: Sandbox, browser: Chrome) -> None:
    """The session is a signed cookie the service does not store: sign-out makes the browser forget it, and a copy
    taken before (from the browser's disk, say) signs its holder in until the session's end — the ID token's
    expiry — and not a moment after."""
    at: list[float | None] = [None]  # the service's time: this machine's until the test sets it
    with own_page(sandbox, clock=lambda: time.time() if at[0] is None else at[0]) as url:
        page = f"{url}/"
        sign_in(browser, page, "alice")
        [copied] = page_cookies(browser)
        ends = session_content(copied["value"])["signed_in"]["expires_at"]
        element(browser, "form#sign-out button[type='submit']").click()
        page_loaded_from(browser, page)
        assert element(browser, "#notice").text == "You are signed out."
        browser.refresh()
        element(browser, "a#sign-in")
        assert not elements(browser, "#who, form#sign-out"), "the browser itself is signed out"
        assert copied["value"] not in [c["value"] for c in page_cookies(browser)]

        browser.delete_all_cookies()
        browser.add_cookie({k: copied[k] for k in ("name", "value", "path", "httpOnly", "secure")})
        at[0] = ends - 1
        browser.get(page)
        assert signed_in_as(browser) == "alice@example.com", "the copy, until the session's end"
        at[0] = ends
        browser.refresh()
        assert "session ended" in element(browser, "#notice").text
        assert not elements(browser, "#who")
        browser.get(f"{page}?repo=demo")
        element(browser, "a#sign-in")
        assert not elements(browser, "#reach-answer")


def test_the_page_comes_with_its_security_headers(sandbox: Sandbox, browser: Chrome) -> None:
    page = f"{sandbox.api_url}/"
    browser.get(page)
    element(browser, "a#sign-in")
    signed_out = received(browser, page).headers
    assert {k: signed_out.get(k) for k in PAGE_HEADERS} == PAGE_HEADERS
    assert "strict-transport-security" not in signed_out  # plain http

    sign_in(browser, page, "alice")
    signed_in = received(browser, page).headers
    assert {k: signed_in.get(k) for k in PAGE_HEADERS} == PAGE_HEADERS

    stylesheet = received(browser, f"{sandbox.api_url}/static/ccweb.css")
    assert stylesheet.status == 200
    assert stylesheet.headers["cache-control"] == "public, max-age=3600"
    assert wait(browser).until(lambda b: b.execute_script(
        "return [...document.styleSheets].some(s => s.href && s.href.endsWith('/static/ccweb.css'))"))
