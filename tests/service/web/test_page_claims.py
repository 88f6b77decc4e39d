"""The page with claims no sign-in should have let through: it still answers, never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx

from webpage import Page, PageClient, policy


class AsciiJsonPageClient(PageClient):
    """``PageClient`` sending JSON bodies ASCII-escaped, as an identity provider may write them: a lone surrogate in
    a claim (``"\\ud800"``) reaches the session as the JSON holds it."""

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if "json" in kwargs:
            kwargs["content"], kwargs["headers"] = json.dumps(kwargs.pop("json")), {"content-type": "application/json"}
        return super().request(method, path, **kwargs)


NOT_UNICODE = {"sub": "u-\ud800", "email": "eve\udfff@example.net", "email_verified": True, "name": "\udc80x",
               "groups": ["contractors"]}


def test_a_claim_that_is_not_unicode_is_shown_replaced_never_a_500() -> None:
    """The sign-in refuses such claims, but a page holding them (a session begun before that check) still answers:
    each lone surrogate shown as U+FFFD, the replacement character, and the rest of the page as it is."""
    page = AsciiJsonPageClient(policy())
    try:
        page.sign_in(NOT_UNICODE)
        response = page.get(repo="demo")
    finally:
        page.close()
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    shown = Page.of(response)
    who = shown.text_of("who")
    assert "eve\ufffd@example.net" in who and "\ufffdx" in who and "u-\ufffd" in who
    assert 'claim email = "eve\ufffd@example.net" does not match the pattern' in shown.text_of("reach-answer")
    assert shown.by_id("no-access") is not None
