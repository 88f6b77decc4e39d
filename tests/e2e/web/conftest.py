"""The web page's browser tests: a real chromium (tests/browser.py) against real servers on loopback.

``open_browser(...)`` starts one more browser for the test (fresh profile each); ``browser`` is the first. Where no
browser can start the test is skipped with the reason, or fails when ``CCWEB_BROWSER_REQUIRED`` is set
(scripts/test sets it when chromium and chromedriver are installed). A failing test leaves a screenshot and the
page source of each of its browsers in test-artifacts/screenshots/, named in its failure report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from typing import Any

import pytest
from selenium.webdriver import Chrome

from browser import BrowserUnavailable, OpenBrowser, artifact_name, chromium, required, save_failure

BROWSERS = pytest.StashKey[list[Chrome]]()


@pytest.fixture
def open_browser(request: pytest.FixtureRequest) -> Iterator[OpenBrowser]:
    """``open_browser(javascript=True, size=(w, h), trust=cert_pem)``: a new headless chromium, closed after the
    test."""
    opened = request.node.stash.setdefault(BROWSERS, [])
    with contextlib.ExitStack() as stack:
        def open_(**options: Any) -> Chrome:
            try:
                browser = stack.enter_context(chromium(**options))
            except BrowserUnavailable as exc:
                unavailable = str(exc)
            else:
                opened.append(browser)
                return browser
            if required():
                pytest.fail(f"no browser, and CCWEB_BROWSER_REQUIRED is set: {unavailable}", pytrace=False)
            pytest.skip(f"no browser: {unavailable}")

        yield open_
        opened.clear()


@pytest.fixture
def browser(open_browser: OpenBrowser) -> Chrome:
    """A headless chromium at a desktop width, JavaScript on."""
    return open_browser()


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: sees the outcome after xfail is applied
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A failing test's browsers: the page each shows, saved as a PNG and its source, the paths in the report."""
    report = yield
    browsers = item.stash.get(BROWSERS, [])
    if report.failed and report.when in ("setup", "call") and browsers:
        saved: list[str] = []
        for number, browser in enumerate(browsers, 1):
            name = artifact_name(item.nodeid) + (f"-browser{number}" if len(browsers) > 1 else "")
            saved += [str(path) for path in save_failure(browser, name)]
        report.sections.append(("browser screenshots", "\n".join(saved) or "none could be taken"))
    return report
