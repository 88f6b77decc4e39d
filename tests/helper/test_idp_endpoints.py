"""An identity provider's endpoints, as its OpenID configuration names them, are shown to the person (the
sign-in address), opened in a browser and posted to. Each is checked first — printable ASCII without spaces,
https (http on loopback), no user name, password or fragment — so an endpoint that holds escape sequences
(a window title, a clipboard write with OSC 52, an erased line with a fake address printed over it) is refused
in one sentence and never reaches the terminal."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccweb_helper import login_idp
from ccweb_helper.client import MAX_ENDPOINT_CHARACTERS, HelperError, endpoint_problem
from ccweb_helper.discovery import LoginIssuer
from support import Asked, home_env, serve_json

# The attack: the sign-in address rewrites the terminal, and the clipboard, while it is printed.
ESCAPES = ("https://login.evil.example/a\x1b]0;pwned-title\x07\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2K\r\x1b[1A"
           "https://login.company.example/authorize")


@pytest.mark.parametrize(("url", "problem"), [
    ("https://login.example.com/authorize", None),
    ("https://login.example.com/oauth2/v2.0/authorize?p=b2c_1_signin", None),
    ("http://127.0.0.1:8080/authorize", None),
    ("http://[::1]:8080/token", None),
    (ESCAPES, "is not printable ASCII without spaces"),
    ("https://login.example.com/\u202eexe.txt", "is not printable ASCII without spaces"),
    ("https://lógin.example.com/authorize", "is not printable ASCII without spaces"),
    ("https://login.example.com/a b", "is not printable ASCII without spaces"),
    ("https://login.example.com/a\tb", "is not printable ASCII without spaces"),
    ("https://login.example.com/" + "a" * MAX_ENDPOINT_CHARACTERS, f"is longer than {MAX_ENDPOINT_CHARACTERS}"),
    ("https://login.example.com:99999/x", "is not a URL"),
    ("https://[::1/x", "is not a URL"),
    ("javascript:alert(1)", "is not an https:// URL"),
    ("/authorize", "is not an https:// URL"),
    ("http://login.example.com/authorize", "is plain http:// to a host other than loopback"),
    ("https://user:pass@login.example.com/authorize", "holds a user name or password"),
    ("https://:pass@login.example.com/authorize", "holds a user name or password"),
    ("https://@login.example.com/authorize", "holds a user name or password"),
    ("https://login.example.com/authorize#x", "has a fragment (#)"),
    ("https://login.example.com/authorize#", "has a fragment (#)"),
], ids=["https", "with-query", "loopback-http", "loopback-ipv6", "escape-sequences", "bidi", "non-ascii-host",
        "space", "tab", "too-long", "bad-port", "unclosed-bracket", "javascript", "relative", "plain-http",
        "userinfo", "password-only", "empty-userinfo", "fragment", "empty-fragment"])
def test_an_endpoint_must_be_a_plain_https_url(url: str, problem: str | None) -> None:
    found = endpoint_problem(url)
    assert found == problem if problem is None else found is not None and found.startswith(problem)


@contextlib.contextmanager
def identity_provider(**configuration: Any) -> Iterator[str]:
    """A stand-in issuer whose OpenID configuration names sane endpoints, but for ``configuration``."""
    issuer = ""

    def answer(asked: Asked) -> tuple[int, dict[str, Any]]:
        if asked.path != "/.well-known/openid-configuration":
            return 404, {}
        return 200, {"issuer": issuer, "authorization_endpoint": issuer + "/authorize",
                     "token_endpoint": issuer + "/token", "device_authorization_endpoint": None, **configuration}

    with serve_json(answer) as url:
        issuer = url
        yield url


ENDPOINTS = ["authorization_endpoint", "token_endpoint", "device_authorization_endpoint", "revocation_endpoint"]


@pytest.mark.parametrize("name", ENDPOINTS)
def test_an_endpoint_holding_escape_sequences_is_refused_in_a_sentence(name: str) -> None:
    with identity_provider(**{name: ESCAPES}) as issuer, pytest.raises(HelperError) as raised:
        login_idp.identity_provider(LoginIssuer("Corp", issuer, "ccweb", ("openid",)), 10)
    assert raised.value.message == (
        f"the {name} in the OpenID configuration of the identity provider 'Corp' is not printable ASCII without "
        "spaces; check the identity provider's configuration."
    )


def test_endpoints_that_are_absent_are_none_and_sane_ones_are_kept() -> None:
    with identity_provider(device_authorization_endpoint="", revocation_endpoint=7) as issuer:
        idp = login_idp.identity_provider(LoginIssuer("Corp", issuer, "ccweb", ("openid",)), 10)
    assert (idp.authorization_endpoint, idp.token_endpoint) == (issuer + "/authorize", issuer + "/token")
    assert (idp.device_endpoint, idp.revocation_endpoint) == (None, None)


@contextlib.contextmanager
def ccweb_service(issuer: str) -> Iterator[str]:
    """A stand-in ccweb service whose discovery offers sign-in at ``issuer``."""
    document = {"audience": "ccweb", "git_endpoints": [],
                "login": [{"name": "Corp", "issuer": issuer, "client_id": "ccweb"}]}
    with serve_json(lambda _: (200, document)) as url:
        yield url


def test_a_sign_in_address_holding_escape_sequences_never_reaches_the_terminal(home: Path) -> None:
    with identity_provider(authorization_endpoint=ESCAPES) as issuer, ccweb_service(issuer) as url:
        run = subprocess.run(
            [sys.executable, "-m", "ccweb_helper", "login", "--browser", "--url", url], capture_output=True,
            env=home_env(home, CCWEB_CACHE_DIR=str(home / "cache"), BROWSER="true %s", DISPLAY=":0"),
            stdin=subprocess.DEVNULL, timeout=60, check=False,
        )
    assert run.returncode != 0
    assert b"\x1b" not in run.stderr + run.stdout and b"\x07" not in run.stderr + run.stdout
    assert run.stderr.decode() == (
        "ccweb: the authorization_endpoint in the OpenID configuration of the identity provider 'Corp' is not "
        "printable ASCII without spaces; check the identity provider's configuration.\n"
    )
