"""The page's copy buttons in a real browser (copy.js): each one's accessible name says which block it copies, so a
screen reader's list of buttons tells them apart."""

from __future__ import annotations

from selenium.webdriver import Chrome

from browser import element, elements, sign_in, wait
from ccweb.sandbox.dev import Sandbox


def test_every_copy_button_is_named_after_its_own_block(sandbox: Sandbox, browser: Chrome) -> None:
    sign_in(browser, f"{sandbox.api_url}/", "alice")
    browser.get(f"{sandbox.api_url}/?repo=demo")
    element(browser, "#reach-answer")
    wait(browser).until(lambda b: elements(b, "button.copy"))
    names = [str(button.get_attribute("aria-label")) for button in elements(browser, "button.copy")]
    assert len(names) == len(elements(browser, "pre[data-copy]")) == 17
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
    assert "Copy: GitLab CI, A job" in names
    assert "Copy: macOS and Linux, With pip, in a checkout of ccweb's source" in names
    assert "Copy: Clone it" in names, "the reach box's git clone"
    assert "Copy: Images without Python" in names
    assert "Copy: Azure Pipelines, On a Windows agent (PowerShell)" in names
