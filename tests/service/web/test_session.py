"""The page's session: it ends with the ID token (or ``session_max_seconds``), by the app's clock; its cookie's flags
and size; sign-out only from the page's own form; the security headers on every web answer and none on the
API's, another method's 405 and an unexpected error's 500 included; and no token, code, code_verifier or client
secret in any log line, answer or cookie."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ccweb.config import ConfigError, parse_config
from ccweb.web.session import SESSION_ENDED, SIGNED_IN, SIGNED_OUT
from ccweb.web.signin import MAX_SESSION_BYTES
from support import RecordingSTS
from websignin import PAGE_HEADERS, SESSION_SECRET, Clock, IdP, Web, app_log, message, shown, web_policy


@pytest.mark.parametrize(("ttl", "max_seconds", "lasts"), [(600, 28800, 600), (3600, 300, 300)],
                         ids=["the-id-token-ends-it", "session_max_seconds-ends-it"])
def test_the_session_ends_when_the_id_token_does_or_sooner_by_the_apps_clock(
        make_web: Callable[..., Web], idp: IdP, ttl: int, max_seconds: int, lasts: int) -> None:
    idp.ttl = ttl
    web = make_web(session_max_seconds=max_seconds)
    browser = web.browser()
    assert browser.sign_in("alice").status_code == 303
    web.clock.offset += lasts - 5
    assert browser.who() == "alice@example.com"
    web.clock.offset += 10
    assert shown(browser) == (None, SESSION_ENDED)
    assert shown(browser) == (None, None), "said once"
    assert SIGNED_IN not in browser.session()


def test_a_session_cookie_changed_in_the_browser_is_no_session(web: Web) -> None:
    browser = web.browser()
    browser.sign_in("mallory")
    cookie = browser.client.cookies["ccweb"]
    payload, rest = cookie.split(".", 1)
    forged = base64.b64encode(base64.b64decode(payload + "==").replace(b"mallory@example.net",
                                                                       b"alice@example.com\x20\x20")).decode()
    browser.client.cookies.set("ccweb", f"{forged}.{rest}", domain="127.0.0.1")
    assert browser.who() is None


def set_cookie(response: httpx.Response) -> str:
    [cookie] = response.headers.get_list("set-cookie")
    return cookie


def test_the_cookie_is_httponly_lax_path_root_and_lasts_session_max_seconds_on_loopback_http(
        make_web: Callable[..., Web]) -> None:
    web = make_web(session_max_seconds=3600)
    browser = web.browser()
    for answer in (browser.get("/auth/login"), browser.sign_in("alice")):
        cookie = set_cookie(answer)
        assert cookie.startswith("ccweb=")
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert attributes == {"path=/", "max-age=3600", "httponly", "samesite=lax"}, "not Secure over http"


def test_behind_https_the_cookie_is_secure_and_named_host(make_web: Callable[..., Web]) -> None:
    web = make_web(public_url="https://ccweb.example.com")
    browser = web.browser("https://ccweb.example.com")
    answer = browser.get("/auth/login")
    assert answer.status_code == 302
    assert "redirect_uri=https%3A%2F%2Fccweb.example.com%2Fauth%2Fcallback" in answer.headers["location"]
    cookie = set_cookie(answer)
    assert cookie.startswith("__Host-ccweb=")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert attributes == {"path=/", "max-age=28800", "httponly", "samesite=lax", "secure"}
    assert answer.headers["strict-transport-security"] == "max-age=31536000"


def test_a_member_of_hundreds_of_groups_fits_a_cookie_and_keeps_what_the_rules_read(web: Web, idp: IdP) -> None:
    groups = [f"team-{n:04d}-with-a-long-group-name" for n in range(250)]
    idp.users = {**idp.users, "alice": {**idp.users["alice"], "groups": [*groups, "engineering"]}}
    browser = web.browser()
    done = browser.sign_in("alice")
    assert done.status_code == 303
    assert len(idp.answers[0]["id_token"]) > 3 * MAX_SESSION_BYTES, "the token itself would not fit"
    assert len(set_cookie(done).split(";")[0]) <= MAX_SESSION_BYTES
    assert browser.session()[SIGNED_IN]["claims"]["groups"] == ["engineering"]
    assert [li.get("data-rule") for li in browser.page().all("li", class_="rule")] == ["developers"]


def test_claims_the_rules_read_that_no_cookie_can_hold_refuse_the_sign_in_with_a_sentence(web: Web,
                                                                                         idp: IdP) -> None:
    idp.users = {**idp.users, "bob": {**idp.users["bob"], "email": "bob" + "b" * 4000 + "@example.com"}}
    browser = web.browser()
    refused = browser.sign_in("bob")
    assert refused.status_code == 400
    assert "more than a browser keeps in a cookie" in message(refused)
    assert browser.who() is None


def test_sign_out_needs_the_pages_own_form(web: Web) -> None:
    browser = web.browser()
    browser.sign_in("alice")
    csrf = browser.csrf()
    tried = [
        browser.request("POST", "/auth/logout"),
        browser.request("POST", "/auth/logout", data={"csrf": "guessed"}),
        browser.request("POST", "/auth/logout", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}),
        browser.request("POST", "/auth/logout", data={"csrf": csrf}, headers={"Origin": "http://127.0.0.1:8701"}),
        browser.request("POST", "/auth/logout", content="&".join(["a=b"] * 20) + f"&csrf={csrf}",
                        headers={"Content-Type": "application/x-www-form-urlencoded"}),
    ]
    assert [answer.status_code for answer in tried] == [403] * len(tried)
    assert "still signed in" in message(tried[1])
    assert browser.who() == "alice@example.com"
    assert browser.get("/auth/logout").status_code == 405, "a link cannot sign anyone out"
    too_large = browser.request("POST", "/auth/logout", data={"csrf": csrf, "pad": "x" * 2000})
    assert too_large.status_code == 413
    assert browser.who() == "alice@example.com"
    out = browser.request("POST", "/auth/logout", data={"csrf": csrf}, headers={"Origin": "http://127.0.0.1:8700"})
    assert out.status_code == 303 and out.headers["location"] == "/"
    assert shown(browser) == (None, SIGNED_OUT)
    stranger = web.browser()  # a sign-out without a session (a cross-site form carries no Lax cookie) sets none
    again = stranger.request("POST", "/auth/logout", data={"csrf": csrf})
    assert again.status_code == 303 and "set-cookie" not in again.headers


def test_every_web_answer_carries_the_page_headers_and_the_apis_none(web: Web) -> None:
    browser = web.browser()
    browser.get("/")
    browser.request("HEAD", "/")
    browser.get("/auth/callback?state=made-up")
    browser.sign_in("bob")
    browser.get("/?repo=demo")
    browser.request("POST", "/auth/logout", data={"csrf": "wrong"})
    browser.get("/auth/logout")
    statuses = {answer.status_code for answer in browser.seen}
    assert statuses == {200, 302, 303, 400, 403, 405}
    for answer in browser.seen:
        for name, value in PAGE_HEADERS.items():
            assert answer.headers.get(name) == value, (answer.request.url, name)
        assert answer.headers["cache-control"] == "no-store", answer.request.url
        assert "strict-transport-security" not in answer.headers, "plain http on loopback"
    static = browser.get("/static/ccweb.css")
    assert static.headers["content-security-policy"] == PAGE_HEADERS["content-security-policy"]
    assert static.headers["cache-control"] == "public, max-age=3600"
    paths = browser.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path == "/" or path.startswith(("/auth", "/static"))]
    for path in ("/healthz", "/openapi.json", "/nowhere"):
        api = browser.get(path)
        assert "set-cookie" not in api.headers, "the API's answers never touch the session"
        assert not set(PAGE_HEADERS) & set(api.headers), path


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("POST", "/", "GET, HEAD"),
    ("OPTIONS", "/", "GET, HEAD"),
    ("PUT", "/auth/login", "GET, HEAD"),
    ("POST", "/auth/callback", "GET, HEAD"),
    ("DELETE", "/auth/logout", "GET, HEAD, POST"),
    ("POST", "/static/ccweb.css", "GET, HEAD"),
], ids=["post-page", "options-page", "put-login", "post-callback", "delete-logout", "post-static"])
def test_another_method_on_a_web_path_is_a_405_page_with_the_page_headers(web: Web, method: str, path: str,
                                                                          allow: str) -> None:
    browser = web.browser()
    browser.sign_in("alice")
    answer = browser.request(method, path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == allow
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert {name: answer.headers.get(name) for name in PAGE_HEADERS} == PAGE_HEADERS
    assert message(answer).startswith(f"This address answers {allow.rsplit(', ', 1)[0]} and ")
    assert browser.who() == "alice@example.com", "nothing changed"


class Failing(Clock):
    """A clock that fails when told to: an error no web route expects."""

    failing = False

    def now(self) -> float:
        if self.failing:
            raise RuntimeError("the clock stopped")
        return super().now()


def test_an_unexpected_error_in_a_web_route_is_a_500_page_logged_once(tmp_path: Path, idp: IdP,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    clock = Failing()
    web = Web(web_policy(idp.url, tmp_path, idp.client_secret), clock=clock)
    try:
        browser = web.browser()
        clock.failing = True
        with caplog.at_level(logging.ERROR):
            answer = browser.get("/")
    finally:
        web.close()
    assert answer.status_code == 500
    assert message(answer) == "ccweb failed unexpectedly; the operators can find why in its log."
    assert {name: answer.headers.get(name) for name in PAGE_HEADERS} == PAGE_HEADERS
    assert answer.headers["cache-control"] == "no-store"
    assert "the clock stopped" not in answer.text
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.getMessage() for record in errors] == ["unexpected error: RuntimeError"]
    assert errors[0].exc_info is not None, "the log has the traceback"


def test_no_token_code_verifier_or_secret_is_logged_shown_or_kept(web: Web, idp: IdP,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    browser = web.browser()
    url = browser.callback("alice")
    [verifier] = [held["data"]["code_verifier"] for key, held in browser.session().items()
                  if key.startswith("_state_ccweb_")]
    code = dict(re.findall(r"[?&](\w+)=([^&]+)", url))["code"]
    assert browser.get(url).status_code == 303
    browser.get("/?repo=demo")
    browser.request("POST", "/auth/logout", data={"csrf": browser.csrf()})
    [answer] = idp.answers
    basic = base64.b64encode(f"ccweb-web:{idp.client_secret}".encode()).decode()
    secrets = {"id token": answer["id_token"], "access token": answer["access_token"], "code": code,
               "code_verifier": verifier, "client secret": idp.client_secret, "client secret (Basic)": basic}
    logged = app_log(caplog.records)
    assert "signed in on the page" in logged, "the log does say who signed in"
    answers = [answer.text + str(answer.headers) for answer in browser.seen]
    for name, secret in secrets.items():
        assert secret not in logged, name
        for text in answers:
            assert secret not in text, name
    assert browser.session() == {"notice": SIGNED_OUT}, "signed out: the cookie keeps only the sentence"


def test_without_its_session_secret_an_app_with_sign_in_is_not_built(tmp_path: Path, idp: IdP) -> None:
    from ccweb.app import create_app

    with pytest.raises(ConfigError, match=r"web\.session_secret: sign-in \(web\.issuer\) needs the session secret"):
        create_app(parse_config(web_policy(idp.url, tmp_path, idp.client_secret)), sts=RecordingSTS())


def test_the_session_secret_is_what_signs_the_cookie(make_web: Callable[..., Web]) -> None:
    first, second = make_web(), make_web(secret=SESSION_SECRET[::-1])
    browser = first.browser()
    browser.sign_in("alice")
    elsewhere = second.browser()
    elsewhere.client.cookies.update(browser.client.cookies)
    assert elsewhere.who() is None, "a replica with another secret signs no one in"
    again = make_web().browser()
    again.client.cookies.update(browser.client.cookies)
    assert again.who() == "alice@example.com", "a replica with the same secret does"
