"""What a token's audience says about the service it is for (``ccweb_helper.audience``), as tables: which
audiences are addresses, which address a URL names, which tokens may go to a service, and what the helper says
about one that may not — never the token, and the audience only escaped."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ccweb_helper.audience import MAX_TOKEN_CHARS, foreign, is_url, names, refuse_foreign
from ccweb_helper.client import HelperError

SERVICE = "https://ccweb.example.com"


def token(claims: Any) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.c2lnbmF0dXJl"


@pytest.mark.parametrize(("audience", "url"), [
    ("ccweb", False), ("ccweb-acme", False), ("sts.amazonaws.com", False), ("ccweb:prod", False),
    ("ari:cloud:bitbucket::workspace/{a1}", False), ("c2f0a3d4-7b1e-4a6f-9d2c-0e8b5a4f3c21", False),
    ("https://ccweb.example.com", True), ("http://127.0.0.1:8700", True), ("api://AzureADTokenExchange", True),
    ("HTTPS://X", True), ("1https://x", False), ("://x", False), ("ht tp://x", False),
], ids=str)
def test_an_audience_is_an_address_when_it_has_a_scheme_and_an_authority(audience: str, url: bool) -> None:
    assert is_url(audience) is url


@pytest.mark.parametrize(("audience", "service", "same"), [
    ("https://ccweb.example.com", SERVICE, True),
    ("https://CCWEB.EXAMPLE.COM/", SERVICE, True),
    ("https://ccweb.example.com:443", SERVICE, True),
    ("http://localhost:80/", "http://localhost", True),
    ("http://[::1]:8700/ccweb/", "http://[::1]:8700/ccweb", True),
    ("http://ccweb.example.com", SERVICE, False),
    ("https://ccweb.example.com:444", SERVICE, False),
    ("https://ccweb.example.com.", SERVICE, False),
    ("https://ccweb.example.com@evil.example", SERVICE, False),
    ("https://evil.example@ccweb.example.com", SERVICE, False),
    ("https://ccweb.example.com/?", SERVICE, False),
    ("https://ccweb.example.com:99999", SERVICE, False),
    ("https://[::1", SERVICE, False),
    ("api://ccweb.example.com", SERVICE, False),
], ids=str)
def test_a_url_names_a_service_as_its_address_is_written_for_logins(audience: str, service: str, same: bool) -> None:
    assert names(audience, service) is same


@pytest.mark.parametrize(("aud", "refused"), [
    ("https://ccweb.acme.example", ["https://ccweb.acme.example"]),
    (["https://a.example", "api://AzureADTokenExchange"], ["https://a.example", "api://AzureADTokenExchange"]),
    (["https://a.example", 7, None], ["https://a.example"]),
    ("https://ccweb.example.com/", None),
    (["https://a.example", "https://ccweb.example.com"], None),
    ("ccweb", None),
    (["https://a.example", "ccweb"], None),
    ([], None),
    (42, None),
    (None, None),
], ids=["one-other-url", "other-urls", "other-url-and-no-strings", "this-service", "this-service-among-others",
        "plain-name", "plain-name-among-urls", "empty-list", "a-number", "no-aud"])
def test_a_token_is_refused_only_when_every_audience_is_another_address(aud: Any, refused: list[str] | None) -> None:
    claims = {"iss": "https://issuer.example", "sub": "x"} if aud is None else {"aud": aud}
    assert foreign(token(claims), SERVICE) == refused


FOREIGN = base64.urlsafe_b64encode(b'{"aud": "https://a.example"}').rstrip(b"=").decode()
"""A payload whose audience is another service's address; each case below spoils the token around it."""


@pytest.mark.parametrize("value", [
    f"h.{FOREIGN}", f"h.{FOREIGN}.s.x", f"h.{FOREIGN}==.s", f"h.{FOREIGN[:8]}\n{FOREIGN[8:]}.s",
    f"h.{FOREIGN[:8]} {FOREIGN[8:]}.s", f"h.{FOREIGN[:-1]}.s", "h..s", "h.bm90LWpzb24.s", "h.W10.s",
    "h." + base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("=") + ".s",
    "h." + base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=") + ".s",
], ids=["two-parts", "four-parts", "padded", "line-break", "space", "one-character-too-few", "empty-payload",
        "not-json", "a-list", "not-utf-8", "nested-too-deeply"])
def test_a_token_whose_payload_cannot_be_read_is_left_to_the_service(value: str) -> None:
    assert foreign(f"h.{FOREIGN}.s", SERVICE) == ["https://a.example"], "the payload unspoilt"
    assert foreign(value, SERVICE) is None


def test_a_token_over_the_size_cap_is_not_read() -> None:
    def of_length(length: int) -> str:
        padding = length - len(token({"aud": "https://a.example/"}))
        return token({"aud": "https://a.example/" + "x" * (padding * 3 // 4)})

    largest = of_length(MAX_TOKEN_CHARS)
    assert len(largest) <= MAX_TOKEN_CHARS and foreign(largest, SERVICE) is not None
    too_large = of_length(MAX_TOKEN_CHARS + 8)
    assert len(too_large) > MAX_TOKEN_CHARS and foreign(too_large, SERVICE) is None


def test_the_refusal_names_the_audience_escaped_and_never_the_token() -> None:
    planted = token({"aud": ["https://a.example/\x1b]52;c;cGF5bG9hZA==\x07", "https://b.example\u202e"],
                     "email": "PLANTED-claim"})
    with pytest.raises(HelperError) as raised:
        refuse_foreign(planted, SERVICE, "CCWEB_TOKEN")
    message = raised.value.message
    assert message == (
        "CCWEB_TOKEN holds a token issued for another service's address ('https://a.example/\\x1b]52;c;cGF5bG9hZA==\\x07'"
        ", 'https://b.example\\u202e'), not for the ccweb service at https://ccweb.example.com, so it was not sent."
    )
    assert message.isprintable() and planted not in message and planted.split(".")[1] not in message
    assert "PLANTED-claim" not in message


def test_a_token_that_may_be_sent_comes_back_as_it_is() -> None:
    given = token({"aud": ["ccweb", "https://a.example"]})
    assert refuse_foreign(given, SERVICE, "CCWEB_TOKEN") is given
