"""A scripted browser for the login tests: ``BROWSER="python browser.py"`` (or run it with ``--user-code``).

It opens the address it is given, keeps cookies, follows redirects, and submits every form the identity
provider shows — oidc-provider's development login page (any name, any password), its consent page, and
for the device flow its code entry and confirmation pages — until it lands on the helper's loopback
callback or on a page without a form. ``TEST_BROWSER_LOGIN`` names the account (default alice);
``TEST_BROWSER_LOG`` names a file that gets one line per run, so tests can count browser runs;
``TEST_BROWSER_PROXY`` names the proxy it takes to https pages (none by default, whatever the environment says).
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from urllib.parse import urlencode, urljoin, urlsplit

MAX_STEPS = 20


class Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, object]] = []
        self._current: dict[str, object] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = {"action": values.get("action", ""), "method": values.get("method", "get").lower(),
                             "inputs": []}
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and values.get("name"):
            inputs = self._current["inputs"]
            assert isinstance(inputs, list)
            inputs.append((values["name"], values.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def run(url: str, login: str, user_code: str | None) -> str:
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"https": os.environ["TEST_BROWSER_PROXY"]} if os.environ.get("TEST_BROWSER_PROXY")
                                    else {}),
        urllib.request.HTTPCookieProcessor(CookieJar()),
    )
    request: urllib.request.Request = urllib.request.Request(url)
    for _ in range(MAX_STEPS):
        with opener.open(request, timeout=30) as answer:
            landed = answer.geturl()
            page: str = answer.read().decode("utf-8", "replace")
        if urlsplit(landed).path == "/callback":
            return page
        parser = Forms()
        parser.feed(page)
        forms = [f for f in parser.forms if f["method"] == "post"]
        if not forms:
            return page
        form = forms[0]
        filled = {"login": login, "password": "any-password"}
        fields = []
        for name, value in form["inputs"]:  # type: ignore[attr-defined]
            if name == "user_code" and not value:
                fields.append((name, user_code or ""))
            else:
                fields.append((name, filled.get(name, value)))
        request = urllib.request.Request(urljoin(landed, str(form["action"])), data=urlencode(fields).encode(),
                                         method="POST")
    raise RuntimeError("too many steps")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--user-code")
    parser.add_argument("url")
    options = parser.parse_args()
    log = os.environ.get("TEST_BROWSER_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write("opened\n")
    try:
        page = run(options.url, os.environ.get("TEST_BROWSER_LOGIN", "alice"), options.user_code)
    except urllib.error.HTTPError as exc:
        print(f"browser: HTTP {exc.code} at {urlsplit(exc.geturl()).path}", file=sys.stderr)
        return 1
    print(f"browser: done ({len(page)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
