"""The page in a real browser as people meet it: a sign-in whose claims hold HTML (shown as text, no script runs),
JavaScript turned off (everything still works), and a phone's width (nothing scrolls sideways)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium.webdriver import Chrome

from browser import (
    OpenBrowser,
    element,
    elements,
    network_events,
    page_loaded_from,
    received,
    sign_in,
    signed_in_as,
    wait,
)
from ccweb.sandbox.dev import Sandbox
from ccweb.sandbox.issuer import DEMO_USERS, DevIssuer

NAME = "<script>document.title='name ran'</script>"
EMAIL = "eve<img/src=x/onerror=document.title='email-ran'>@example.com"
EVE = {"email": EMAIL, "name": NAME, "groups": ["contractors"]}


class IssuerWithEve(DevIssuer):
    """The sandbox's issuer with one more user, eve, whose name and e-mail address hold HTML."""

    def __init__(self, issuer_url: str, *, web_client_secret: str) -> None:
        super().__init__(issuer_url, web_client_secret=web_client_secret)
        self.login.users = {**DEMO_USERS, "eve": EVE}

    def _mint_login(self, user: str, audience: str, nonce: str | None) -> str:
        claims = {"sub": f"dev|{user}", **self.login.users[user], **({"nonce": nonce} if nonce else {})}
        return self.mint(claims, ttl=self.login.id_token_ttl, audience=audience)


@pytest.fixture(scope="module")
def with_eve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox(port=0, workdir=tmp_path_factory.mktemp("sandbox"))
    box.issuer = IssuerWithEve(box.issuer_url, web_client_secret=box.issuer.web_client_secret)
    with box.running() as running:
        yield running


def test_claims_holding_html_are_shown_as_text_and_run_nothing(with_eve: Sandbox, browser: Chrome) -> None:
    sign_in(browser, f"{with_eve.api_url}/", "eve")
    title = browser.title
    who = element(browser, "#who")
    assert NAME in who.text
    assert EMAIL in who.text
    assert not who.find_elements("css selector", "img, script"), who.get_attribute("innerHTML")
    signed_in_as(browser)

    browser.get(f"{with_eve.api_url}/?repo=other")
    answer = element(browser, "#reach-answer")
    assert answer.get_attribute("data-outcome") == "denied"
    assert EMAIL in answer.text  # the explanation quotes the address the contractors rule matched
    assert not answer.find_elements("css selector", "img, script")
    assert browser.title == title, "a claim's script ran"
    assert not elements(browser, "main img, main script")


def test_without_javascript_signing_in_asking_and_signing_out_work(sandbox: Sandbox,
                                                                   open_browser: OpenBrowser) -> None:
    scripted, browser = open_browser(), open_browser(javascript=False)
    scripted.get(f"{sandbox.api_url}/")
    wait(scripted).until(lambda b: elements(b, "#setup button.copy"))  # made by the page's script (copy.js)

    sign_in(browser, f"{sandbox.api_url}/", "bob")
    assert signed_in_as(browser) == "bob@example.com"
    assert not elements(browser, "button.copy"), "the page's script ran"
    assert element(browser, "#setup pre code").text.strip()  # the set-up, to select and copy by hand

    element(browser, "input#reach-repo").send_keys("demo")
    element(browser, "form#reach button[type='submit']").click()
    wait(browser).until(lambda b: "repo=demo" in b.current_url)
    assert element(browser, "#reach-answer").get_attribute("data-outcome") == "granted"

    element(browser, "form#sign-out button[type='submit']").click()
    page_loaded_from(browser, f"{sandbox.api_url}/")
    assert element(browser, "#notice").text == "You are signed out."
    assert received(browser, f"{sandbox.api_url}/auth/logout").status == 303


def test_the_page_loads_nothing_from_elsewhere(sandbox: Sandbox, browser: Chrome) -> None:
    sign_in(browser, f"{sandbox.api_url}/", "alice")
    browser.get(f"{sandbox.api_url}/?repo=demo")
    element(browser, "#reach-answer")
    wait(browser).until(lambda b: elements(b, "button.copy"))  # its script has run
    asked = {urlsplit(str(event["params"]["request"]["url"])) for event in network_events(browser)
             if event["method"] == "Network.requestWillBeSent"}
    over_the_network = {f"{u.scheme}://{u.netloc}" for u in asked if u.scheme in ("http", "https", "ws", "wss")}
    assert over_the_network == {sandbox.api_url, sandbox.issuer_url}  # (chrome:// and data: are the browser's own)
    assert {u.path for u in asked if u.path.startswith("/static/")} >= {"/static/ccweb.css", "/static/copy.js"}


PHONE = {"width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True}


def sideways(browser: Chrome) -> dict[str, Any]:
    """How wide the page lays out and how wide it is drawn, at the phone's width."""
    found: dict[str, Any] = browser.execute_script(
        "const wide = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > "
        "window.innerWidth + 1 && getComputedStyle(e).position !== 'fixed' && !e.closest('pre, .table'));"
        "return {viewport: window.innerWidth, page: document.documentElement.scrollWidth,"
        " wide: wide.slice(0, 5).map(e => e.outerHTML.slice(0, 120))};")
    return found


def test_at_a_phones_width_nothing_scrolls_sideways(sandbox: Sandbox, browser: Chrome) -> None:
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    browser.get(f"{sandbox.api_url}/")
    element(browser, "a#sign-in")
    assert sideways(browser) == {"viewport": 375, "page": 375, "wide": []}

    sign_in(browser, f"{sandbox.api_url}/", "alice")
    browser.get(f"{sandbox.api_url}/?repo={sandbox.repo_url('demo')}")  # the longest answer: a clone URL, explained
    element(browser, "#reach-answer")
    assert sideways(browser) == {"viewport": 375, "page": 375, "wide": []}
    sign_out = element(browser, "form#sign-out button")
    assert sign_out.is_displayed()
    assert sign_out.rect["x"] + sign_out.rect["width"] <= 375
