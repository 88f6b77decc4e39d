"""The page as alice, bob and mallory see it in the sandbox (`ccweb dev`), signed in through the sandbox
issuer's pick-a-user page in a real browser: who they are, what they are granted, what the "can I reach …?" box
answers; then signing out, and the keyboard alone doing all of it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from browser import (
    OpenBrowser,
    element,
    elements,
    page_loaded_from,
    pick_user,
    received,
    sign_in,
    signed_in_as,
    wait,
)
from ccweb.sandbox.dev import ACCOUNT, Sandbox


@dataclass(frozen=True)
class Person:
    identity: str
    rules: dict[str, tuple[str, str]]  # rule name -> (access, role)


PEOPLE = {
    "alice": Person("alice@example.com", {"developers": ("write", f"arn:aws:iam::{ACCOUNT}:role/ccweb-developers")}),
    "bob": Person("bob@example.com", {"contractors": ("read", f"arn:aws:iam::{ACCOUNT}:role/ccweb-readers")}),
    "mallory": Person("mallory@example.net", {}),
}


def ask(browser: Chrome, repository: str) -> tuple[str, str]:
    """Ask the reach box about ``repository``: (its outcome, the answer's text)."""
    box = element(browser, "input#reach-repo")
    box.clear()
    box.send_keys(repository)
    element(browser, "form#reach button[type='submit']").click()
    wait(browser).until(lambda b: parse_qs(urlsplit(b.current_url).query).get("repo") == [repository],
                        f"the page did not answer for {repository!r}")
    answer = element(browser, "#reach-answer")
    return str(answer.get_attribute("data-outcome")), answer.text


@pytest.mark.parametrize("user", list(PEOPLE))
def test_each_person_sees_who_they_are_and_what_they_are_granted(sandbox: Sandbox, browser: Chrome,
                                                                 user: str) -> None:
    sign_in(browser, f"{sandbox.api_url}/", user)
    person = PEOPLE[user]
    assert signed_in_as(browser) == person.identity
    assert element(browser, "#who [data-issuer]").get_attribute("data-issuer") == "dev"
    assert sandbox.issuer_url in element(browser, "#who [data-issuer]").text
    assert not elements(browser, "a#sign-in"), "signed in, the page still offers Sign in"
    rules = elements(browser, "#access li.rule")
    shown = {str(r.get_attribute("data-rule")): (str(r.get_attribute("data-access")), str(r.get_attribute("data-role")))
             for r in rules}
    assert shown == person.rules, element(browser, "#access").text
    for rule in rules:  # what the attributes say is what the person reads
        name = str(rule.get_attribute("data-rule"))
        assert all(fact in rule.text for fact in (name, *person.rules[name])), rule.text
    if not person.rules:
        assert element(browser, "#no-access").is_displayed()
    assert elements(browser, "form#sign-out")


def test_the_reach_box_answers_alice_bob_and_mallory_with_the_reasons(sandbox: Sandbox,
                                                                     open_browser: OpenBrowser) -> None:
    alice, bob, mallory = (open_browser() for _ in range(3))
    sign_in(alice, f"{sandbox.api_url}/", "alice")
    outcome, text = ask(alice, "demo")
    assert outcome == "granted", text
    assert "granted: rule 'developers' gives write access" in text

    sign_in(bob, f"{sandbox.api_url}/", "bob")
    outcome, text = ask(bob, "demo")
    assert outcome == "granted", text
    assert "granted: rule 'contractors' gives read access" in text
    outcome, text = ask(bob, "other")
    assert outcome == "denied", text
    assert "denied: no rule grants 'other' in us-east-1" in text
    assert "repository 'other' is not in its repositories ('demo')" in text  # why contractors did not apply
    assert 'no element equals "engineering"' in text  # why developers did not
    outcome, text = ask(bob, f"{sandbox.repo_url('demo')}")  # a clone URL is understood too
    assert outcome == "granted", text

    sign_in(mallory, f"{sandbox.api_url}/", "mallory")
    outcome, text = ask(mallory, "demo")
    assert outcome == "denied", text
    assert "denied: no rule grants 'demo' in us-east-1" in text
    assert text.index("deny list") < text.index("rules"), "the deny list comes first"
    outcome, text = ask(mallory, "not a repository!")
    assert outcome == "error", text
    assert "is not a repository name" in text


def sign_out(browser: Chrome, page: str) -> None:
    element(browser, "form#sign-out button[type='submit']").click()
    page_loaded_from(browser, page)
    assert element(browser, "#notice").text == "You are signed out."


def test_signing_out_ends_the_session(sandbox: Sandbox, browser: Chrome) -> None:
    page = f"{sandbox.api_url}/"
    sign_in(browser, page, "alice")
    sign_out(browser, page)
    assert received(browser, f"{sandbox.api_url}/auth/logout").status == 303
    assert element(browser, "a#sign-in").is_displayed()
    assert element(browser, "#intro").is_displayed()
    assert not elements(browser, "#who, form#sign-out")

    browser.refresh()  # the notice is said once
    element(browser, "a#sign-in")
    assert not elements(browser, "#notice, #who")
    browser.get(f"{page}?repo=demo")  # and the reach box answers no one
    element(browser, "a#sign-in")
    assert not elements(browser, "#reach-answer")


def tab_to(browser: Chrome, css: str, presses: int = 80) -> None:
    """Press Tab until the element ``css`` has the focus (at most ``presses`` times)."""
    focused: list[str] = []
    for _ in range(presses):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        if browser.execute_script("return document.activeElement.matches(arguments[0])", css):
            return
        focused.append(str(browser.execute_script("return document.activeElement.outerHTML.slice(0, 80)")))
    raise AssertionError(f"{presses} presses of Tab never reached {css}: {focused[:20]}")


def test_the_keyboard_alone_signs_in_asks_and_signs_out(sandbox: Sandbox, browser: Chrome) -> None:
    browser.get(f"{sandbox.api_url}/")
    tab_to(browser, "a#sign-in")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    pick_user(browser, "bob")
    page_loaded_from(browser, f"{sandbox.api_url}/")
    assert signed_in_as(browser) == "bob@example.com"

    tab_to(browser, "input#reach-repo")
    ActionChains(browser).send_keys("demo", Keys.ENTER).perform()
    wait(browser).until(lambda b: "repo=demo" in b.current_url)
    assert element(browser, "#reach-answer").get_attribute("data-outcome") == "granted"

    tab_to(browser, "form#sign-out button")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert element(browser, "#notice").text == "You are signed out."
    assert not elements(browser, "#who")
    tab_to(browser, "a#sign-in")  # and back to Sign in
