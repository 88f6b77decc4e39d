"""Where the web page's sign-in may send people and its code exchange, as a discovery document names them.

An identity provider elsewhere (or whoever answers for its discovery URL) must not make every replica post the
code exchange, with the client's credentials, to its own pod's loopback listeners (the metrics port, the
cluster-keys ``kubectl proxy``): https only, and loopback only for an issuer that is itself on loopback (the
``ccweb dev`` sandbox, tests), which may then use plain http too.
"""

from __future__ import annotations

import pytest

from ccweb.config import Issuer
from ccweb.keys import DocumentError
from ccweb.web.oidc import discovered_endpoints

REMOTE = Issuer(name="corp", issuer="https://login.example.com", audiences=["ccweb-web"])
LOCAL = Issuer(name="dev", issuer="http://127.0.0.1:8123", audiences=["ccweb-web"])


def document(issuer: Issuer, token: str, authorize: str = "") -> dict[str, str]:
    return {"issuer": issuer.issuer, "authorization_endpoint": authorize or f"{issuer.issuer}/authorize",
            "token_endpoint": token}


@pytest.mark.parametrize(("token", "problem"), [
    ("http://127.0.0.1:9090/metrics", "names a token_endpoint that is not an https URL"),
    ("https://127.0.0.1:8001/token", "names a token_endpoint on loopback, which only an issuer on loopback may"),
    ("https://localhost/token", "names a token_endpoint on loopback, which only an issuer on loopback may"),
    ("https://[::1]:9090/token", "names a token_endpoint on loopback, which only an issuer on loopback may"),
    ("http://idp.example/token", "names a token_endpoint that is not an https URL"),
])
def test_a_remote_issuer_cannot_send_the_code_exchange_to_loopback_or_over_http(token: str, problem: str) -> None:
    with pytest.raises(DocumentError) as refused:
        discovered_endpoints(document(REMOTE, token), REMOTE, "https://login.example.com/.well-known/x")
    assert problem in str(refused.value)


def test_a_remote_issuer_cannot_send_people_to_their_own_loopback_either() -> None:
    with pytest.raises(DocumentError, match="authorization_endpoint on loopback"):
        discovered_endpoints(document(REMOTE, "https://login.example.com/token", "https://127.0.0.1/authorize"),
                             REMOTE, "https://login.example.com/.well-known/x")


def test_a_remote_issuers_https_endpoints_are_used() -> None:
    found = discovered_endpoints(document(REMOTE, "https://login.example.com/oauth2/token"), REMOTE, "x")
    assert (found.authorization, found.token) == ("https://login.example.com/authorize",
                                                  "https://login.example.com/oauth2/token")


def test_an_issuer_on_loopback_may_use_plain_http_on_loopback() -> None:
    found = discovered_endpoints(document(LOCAL, "http://127.0.0.1:8123/token"), LOCAL, "x")
    assert found.token == "http://127.0.0.1:8123/token"
