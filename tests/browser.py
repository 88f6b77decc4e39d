"""A real browser for the web page's tests: the system's chromium, driven through the system's chromedriver by
Selenium. Nothing is downloaded and nothing leaves the machine.

Both programs are given by path, so Selenium Manager has nothing to find (and ``SE_OFFLINE`` forbids it to fetch
anything should it run). The browser runs headless, with a fresh profile each time, no proxy, no background
networking, no component updates and no sync: its only traffic is to the loopback servers a test sends it to.

    chromium(...)               one browser (a context manager); BrowserUnavailable when it cannot start
    responses(browser)          what it received (status and headers, from its performance log)
    sign_in(browser, url, who)  through the page's "Sign in" and the sandbox issuer's pick-a-user page
    save_failure(browser, ...)  a screenshot and the page source, for a failing test

``CCWEB_BROWSER_REQUIRED=1`` (scripts/test sets it when chromium and chromedriver are installed) turns "no browser"
into a failure instead of a skip. Run as a script it takes the README's screenshot (scripts/screenshot).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selenium.common.exceptions import WebDriverException
from selenium.webdriver import Chrome, ChromeOptions
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
REQUIRED = "CCWEB_BROWSER_REQUIRED"
WAIT_SECONDS = 30
"""The longest any wait on the page takes (a busy 2-core machine may take seconds to start a browser)."""
DESKTOP = (1280, 900)
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                   "NO_PROXY")

# Debian's chromium: /usr/bin/chromium is a launcher script that adds a desktop's flags (remote extensions, the
# Google API keys), so the browser itself, /usr/lib/chromium/chromium, is preferred when it is there.
BROWSERS = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
DRIVERS = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver", "chromedriver")
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--no-proxy-server", "--no-default-browser-check", "--disable-default-apps", "--disable-extensions",
    "--disable-domain-reliability", "--disable-client-side-phishing-detection", "--metrics-recording-only",
    "--password-store=basic", "--use-mock-keychain", "--hide-scrollbars", "--lang=en-US",
)


OpenBrowser = Callable[..., Chrome]
"""The ``open_browser`` fixture: ``open_browser(javascript=True, size=(w, h), trust=cert_pem)`` (see ``chromium``)."""


class BrowserUnavailable(Exception):
    """No browser to test with: a sentence saying what is missing or why it did not start."""


def required() -> bool:
    """Whether a missing browser fails the browser tests (else they are skipped)."""
    return os.environ.get(REQUIRED, "") not in ("", "0")


def _program(candidates: tuple[str, ...]) -> str | None:
    """The first of ``candidates`` (absolute paths, or names looked up on PATH) that is an executable file."""
    for candidate in candidates:
        found = shutil.which(candidate)
        if found is not None:
            return found
    return None


def programs() -> tuple[str, str]:
    """(chromium, chromedriver) as installed on this machine, else BrowserUnavailable."""
    browser, driver = _program(BROWSERS), _program(DRIVERS)
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if path is None]
    if browser is None or driver is None:
        raise BrowserUnavailable(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed "
                                 "(Debian: apt-get install chromium chromium-driver; scripts/test does, as root)")
    return browser, driver


def spki_digest(cert_pem: bytes) -> str:
    """The base64 SHA-256 of a certificate's public key, as chromium's ``--ignore-certificate-errors-spki-list``
    takes it: that one test certificate is then trusted, and the origin is https as any other."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = x509.load_pem_x509_certificate(cert_pem).public_key()
    return base64.b64encode(hashlib.sha256(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
                            .digest()).decode()


@dataclass(frozen=True)
class Received:
    """One response the browser received, redirects included."""

    url: str
    status: int
    headers: dict[str, str]  # names in lower case


_EVENTS: weakref.WeakKeyDictionary[Chrome, list[dict[str, Any]]] = weakref.WeakKeyDictionary()


def network_events(browser: Chrome) -> list[dict[str, Any]]:
    """Every network event of ``browser`` so far (its performance log is drained on each read: they are kept)."""
    events = _EVENTS.setdefault(browser, [])
    for entry in browser.get_log("performance"):  # type: ignore[no-untyped-call]  # (Selenium leaves it untyped)
        message = json.loads(entry["message"])["message"]
        if str(message.get("method", "")).startswith("Network."):
            events.append(message)
    return events


def responses(browser: Chrome) -> list[Received]:
    """Every response ``browser`` received, in order: redirects (from the request that followed) and final ones."""
    found: list[Received] = []
    for event in network_events(browser):
        params = event.get("params", {})
        method = event["method"]
        response = (params.get("redirectResponse") if method == "Network.requestWillBeSent"
                    else params.get("response") if method == "Network.responseReceived" else None)
        if response:
            headers = {str(k).lower(): str(v) for k, v in response.get("headers", {}).items()}
            found.append(Received(response["url"], int(response["status"]), headers))
    return found


def received(browser: Chrome, url: str) -> Received:
    """The last response to ``url`` (whatever its query)."""
    answers = responses(browser)
    matches = [r for r in answers if r.url.split("?", 1)[0] == url]
    assert matches, f"the browser received nothing from {url}, only from {[r.url for r in answers]}"
    return matches[-1]


def _options(profile: Path, *, javascript: bool, size: tuple[int, int], trust: bytes | None) -> ChromeOptions:
    options = ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={size[0]},{size[1]}")
    if trust is not None:
        options.add_argument(f"--ignore-certificate-errors-spki-list={spki_digest(trust)}")
    options.add_experimental_option("prefs", {
        "profile.managed_default_content_settings.javascript": 1 if javascript else 2,
        "credentials_enable_service": False,
        "profile.password_manager_enabled": False,
    })
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return options


@contextlib.contextmanager
def _selenium_environment() -> Iterator[dict[str, str]]:
    """No proxy for Selenium's own client (it honours the proxy variables, and its server is on loopback) and
    Selenium Manager offline; yields the environment chromedriver (and so chromium) gets."""
    saved = {k: os.environ.pop(k) for k in PROXY_VARIABLES if k in os.environ}
    offline = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"
    try:
        yield dict(os.environ)
    finally:
        os.environ.update(saved)
        if offline is None:
            del os.environ["SE_OFFLINE"]
        else:
            os.environ["SE_OFFLINE"] = offline


@contextlib.contextmanager
def chromium(*, javascript: bool = True, size: tuple[int, int] = DESKTOP, trust: bytes | None = None,
             ) -> Iterator[Chrome]:
    """A headless chromium with a fresh profile, closed (and its profile removed) on exit.

    ``javascript``: False turns scripts off for every page; ``size``: the window's; ``trust``: a PEM certificate
    the browser then accepts (a test server's own). BrowserUnavailable when it cannot start."""
    browser, driver_path = programs()
    with tempfile.TemporaryDirectory(prefix="ccweb-chromium-") as profile:
        options = _options(Path(profile), javascript=javascript, size=size, trust=trust)
        options.binary_location = browser
        log = Path(profile) / "chromedriver.log"
        with _selenium_environment() as env:
            try:
                driver = Chrome(service=Service(executable_path=driver_path, env=env, log_output=str(log)),
                                options=options)
            except WebDriverException as exc:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise BrowserUnavailable(f"chromium ({browser}) did not start through {driver_path}: "
                                         f"{exc.msg or exc}\n{tail}") from None
        try:
            driver.set_page_load_timeout(WAIT_SECONDS)
            yield driver
        finally:
            driver.quit()


def wait(browser: Chrome, seconds: float = WAIT_SECONDS) -> WebDriverWait[Chrome]:
    """A Selenium wait on the page (``wait(b).until(condition)``), never a sleep."""
    return WebDriverWait(browser, seconds)


def element(browser: Chrome, css: str) -> WebElement:
    """The element ``css`` finds, once it is on the page."""
    return wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def elements(browser: Chrome, css: str) -> list[WebElement]:
    """Every element ``css`` finds now (possibly none)."""
    return list(browser.find_elements(By.CSS_SELECTOR, css))


def page_loaded_from(browser: Chrome, url: str) -> None:
    """Wait until the browser shows a page of ``url`` (a prefix), loaded."""
    wait(browser).until(lambda b: b.current_url.startswith(url)
                        and b.execute_script("return document.readyState") == "complete")


def pick_user(browser: Chrome, user: str) -> None:
    """On the sandbox issuer's sign-in page (already shown): choose ``user``."""
    element(browser, f"button[name='user'][value='{user}']").click()


def signed_in_as(browser: Chrome) -> str:
    """The identity the page says is signed in (as AWS sees it), once it says one; it is shown, not only held."""
    identity = str(element(browser, "#who [data-identity]").get_attribute("data-identity"))
    shown = element(browser, "#who").text
    assert identity and identity in shown, f"{identity!r} is not shown in: {shown}"
    return identity


def sign_in(browser: Chrome, page_url: str, user: str) -> None:
    """Open the page at ``page_url``, follow its Sign in, pick ``user`` at the sandbox issuer, and wait until the
    page says who is signed in."""
    browser.get(page_url)
    element(browser, "a#sign-in").click()
    pick_user(browser, user)
    page_loaded_from(browser, page_url)
    element(browser, "#who")


def session_cookies(browser: Chrome) -> list[dict[str, Any]]:
    """Every cookie the browser holds, with its flags (``httpOnly``, ``secure``, ``sameSite``, ``expires``), from
    every site: the devtools' view, which a page's scripts do not have."""
    cookies: list[dict[str, Any]] = browser.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
    return cookies


def artifact_name(node_id: str) -> str:
    """A file name for a test id: ``tests/e2e/web/test_x.py::test_y[bob]`` → ``e2e-web-test_x.py--test_y-bob``."""
    text = node_id.removeprefix("tests/")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.replace("::", "--")).strip("-")[:180]


def save_failure(browser: Chrome, name: str, directory: Path = ARTIFACTS) -> list[Path]:
    """The page ``browser`` shows, as ``<name>.png`` and its source as ``<name>.html`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    saved = []
    png, html = directory / f"{name}.png", directory / f"{name}.html"
    with contextlib.suppress(WebDriverException):
        if browser.save_screenshot(str(png)):
            saved.append(png)
    with contextlib.suppress(WebDriverException):
        html.write_text(f"<!-- {browser.current_url} -->\n{browser.page_source}", encoding="utf-8")
        saved.append(html)
    return saved


def screenshot(path: Path) -> Path:
    """The README's picture: the sandbox's page as alice sees it at a desktop width, from the top to her "can I
    reach …?" box answered for ``demo`` (set-up and CI follow on the page), as a PNG at ``path``."""
    from ccweb.sandbox.dev import Sandbox

    with tempfile.TemporaryDirectory(prefix="ccweb-screenshot-") as workdir:
        try:
            box = Sandbox(port=8700, workdir=Path(workdir))  # the port `ccweb dev` shows, when it is free
        except OSError:
            box = Sandbox(port=0, workdir=Path(workdir))
        with box.running(), chromium() as browser:
            sign_in(browser, f"{box.api_url}/", "alice")
            element(browser, "input#reach-repo").send_keys("demo")
            element(browser, "form#reach button[type='submit']").click()
            element(browser, "#reach-answer")
            bottom = browser.execute_script(
                "return Math.ceil(document.querySelector('#reach-section').getBoundingClientRect().bottom"
                " + window.scrollY + 24)")
            shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": DESKTOP[0], "height": int(bottom), "scale": 1},
            })
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "screenshot":
        print("usage: python tests/browser.py screenshot PATH.png", file=sys.stderr)
        return 2
    try:
        print(screenshot(Path(argv[1])))
    except BrowserUnavailable as exc:
        print(f"screenshot: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
