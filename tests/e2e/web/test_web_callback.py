"""Sign-in's return trip, attacked in a real browser: a callback with a made-up ``state``, a real code with a state
the browser never sent, someone else's callback, and a callback visited a second time. Each is refused with a
sentence and signs no one in; the good callback, taken by the browser that started the sign-in, still works.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from selenium.webdriver import Chrome

from browser import OpenBrowser, element, elements, page_loaded_from, received, responses, sign_in, signed_in_as
from ccweb.sandbox.dev import Sandbox


def start_sign_in(browser: Chrome, box: Sandbox) -> None:
    """Follow the page's Sign in up to the issuer's pick-a-user page."""
    browser.get(f"{box.api_url}/")
    element(browser, "a#sign-in").click()
    page_loaded_from(browser, f"{box.issuer_url}/authorize")


def issued_callback(browser: Chrome, user: str) -> str:
    """The callback URL the issuer gives for ``user`` on the sign-in page ``browser`` shows, taken without the
    browser (which so never visits it): a good code and the state the browser's sign-in sent."""
    parts = urlsplit(browser.current_url)
    form = {**dict(parse_qsl(parts.query)), "user": user}
    with httpx.Client(trust_env=False, timeout=30) as client:
        answer = client.post(f"{parts.scheme}://{parts.netloc}{parts.path}", data=form)
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert "code=" in location, location
    return location


def with_state(url: str, state: str) -> str:
    parts = urlsplit(url)
    query = {**dict(parse_qsl(parts.query)), "state": state}
    return parts._replace(query=urlencode(query)).geturl()


def assert_refused(browser: Chrome, url: str, box: Sandbox) -> str:
    """The browser shows a page of one sentence (answered 400), and is not signed in; the sentence."""
    assert received(browser, url).status == 400
    sentence = element(browser, "p#message").text
    assert sentence.endswith("."), sentence
    assert element(browser, "h1").text
    assert not elements(browser, "#who")
    browser.get(f"{box.api_url}/")
    element(browser, "a#sign-in")
    assert not elements(browser, "#who")
    return sentence


def test_a_made_up_callback_is_refused_with_a_sentence(sandbox: Sandbox, browser: Chrome) -> None:
    url = f"{sandbox.api_url}/auth/callback?code=x&state=made-up"
    browser.get(url)
    assert_refused(browser, f"{sandbox.api_url}/auth/callback", sandbox)


def test_a_good_code_with_a_state_the_browser_never_sent_is_refused(sandbox: Sandbox, browser: Chrome) -> None:
    start_sign_in(browser, sandbox)
    good = issued_callback(browser, "alice")
    browser.get(with_state(good, "made-up"))
    assert_refused(browser, f"{sandbox.api_url}/auth/callback", sandbox)

    browser.get(good)  # the refusal was the state's: the code was good, and the browser's own sign-in goes on
    page_loaded_from(browser, f"{sandbox.api_url}/")
    assert signed_in_as(browser) == "alice@example.com"


def test_someone_elses_callback_signs_no_one_in(sandbox: Sandbox, open_browser: OpenBrowser) -> None:
    """Login CSRF: mallory starts a sign-in and sends her callback to alice, whose browser started none."""
    mallory, alice = open_browser(), open_browser()
    start_sign_in(mallory, sandbox)
    trap = issued_callback(mallory, "mallory")
    alice.get(trap)
    assert_refused(alice, f"{sandbox.api_url}/auth/callback", sandbox)

    start_sign_in(alice, sandbox)  # nor when her own sign-in is under way
    alice.get(trap)
    assert_refused(alice, f"{sandbox.api_url}/auth/callback", sandbox)

    mallory.get(trap)
    page_loaded_from(mallory, f"{sandbox.api_url}/")
    assert signed_in_as(mallory) == "mallory@example.net"


def test_a_callback_visited_twice_is_refused_the_second_time(sandbox: Sandbox, browser: Chrome) -> None:
    sign_in(browser, f"{sandbox.api_url}/", "bob")
    [callback] = [r.url for r in responses(browser) if "/auth/callback?" in r.url]
    assert received(browser, f"{sandbox.api_url}/auth/callback").status == 303

    browser.get(callback)
    assert received(browser, f"{sandbox.api_url}/auth/callback").status == 400
    assert element(browser, "p#message").text.endswith(".")
