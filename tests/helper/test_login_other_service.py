"""A service whose identity provider the person signed in to for another service gets no sign-in from ``get``,
even with a person at the terminal (a live session at the identity provider would complete it unasked); and
which services such a login was made for, as ``ccweb-helper login`` names them before signing in on purpose."""

from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import Any

import pytest

from ccweb_helper.cache import Cache
from ccweb_helper.client import HelperError
from ccweb_helper.discovery import LoginIssuer
from ccweb_helper.login import NOT_HERE, token_for
from ccweb_helper.login_tokens import entry_key, logins, others

CLIENT_ID = "ccweb-cli"
NOW = 1_800_000_000
COMPANY = "https://ccweb.example.com"
PARTNER = "https://ccweb.partner.example"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"  # what is cached does not matter here


def unreachable_issuer() -> LoginIssuer:
    """An issuer nothing listens at: a sign-in or renewal that started would fail to reach it, not be refused."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    return LoginIssuer("corp", f"http://127.0.0.1:{port}", CLIENT_ID, ("openid",))


def login_entry(login: LoginIssuer, service: str | None, **changes: Any) -> dict[str, Any]:
    entry = {"name": "corp", "issuer": login.issuer, "client_id": CLIENT_ID, "id_token": TOKEN,
             "expires_at": NOW + 3600, "refresh_token": "rt-1", **changes}
    return entry if service is None else {**entry, "service": service}


@pytest.mark.parametrize("service", [COMPANY, None], ids=["another-service", "cached-before-logins-had-one"])
def test_get_at_a_terminal_starts_no_sign_in_for_a_service_the_login_was_not_made_for(tmp_path: Path,
                                                                                      service: str | None) -> None:
    issuer = unreachable_issuer()
    store = Cache(tmp_path)
    planted = login_entry(issuer, service)
    key = entry_key(issuer, service) if service else f"{issuer.issuer} {CLIENT_ID}"
    store.write({"version": 1, "logins": {key: planted}})
    stderr = io.StringIO()
    with pytest.raises(HelperError) as raised:
        token_for([issuer], store, {}, 5.0, service=PARTNER, stderr=stderr, interactive=True, clock=lambda: NOW)
    assert raised.value.message == NOT_HERE.format(service=PARTNER) == (
        f"you have not signed in for the ccweb service at {PARTNER} (a login is used only with the service it was "
        f"made for); run `ccweb-helper login --url {PARTNER}`."
    )
    assert stderr.getvalue() == "", "no sign-in was started nor announced"
    assert logins(store.read()) == {key: planted}


def test_an_expired_login_of_the_service_itself_is_signed_in_again_at_a_terminal(tmp_path: Path) -> None:
    """Its own login, gone: the person signed in for this service before, so a new sign-in is no surprise (it
    starts here, and fails only because nothing listens at the issuer)."""
    issuer = unreachable_issuer()
    store = Cache(tmp_path)
    store.write({"version": 1, "logins": {
        entry_key(issuer, COMPANY): login_entry(issuer, COMPANY),
        entry_key(issuer, PARTNER): login_entry(issuer, PARTNER, expires_at=NOW - 10, refresh_token=None),
    }})
    stderr = io.StringIO()
    with pytest.raises(HelperError, match="cannot reach the identity provider 'corp'"):
        token_for([issuer], store, {}, 5.0, service=PARTNER, stderr=stderr, interactive=True, clock=lambda: NOW)
    assert stderr.getvalue() == "ccweb: your login has expired; signing in again.\n"


OTHER_ISSUER = LoginIssuer("other", "https://login.other.example", CLIENT_ID, ("openid",))
ISSUER = LoginIssuer("corp", "https://login.example.com", CLIENT_ID, ("openid",))


@pytest.mark.parametrize(("entries", "found"), [
    ({}, []),
    ({"a": login_entry(ISSUER, PARTNER)}, []),
    ({"a": login_entry(ISSUER, COMPANY)}, [COMPANY]),
    ({"a": login_entry(ISSUER, COMPANY), "b": login_entry(ISSUER, "https://z.example")}, [COMPANY, "https://z.example"]),
    ({"a": login_entry(ISSUER, None)}, [""]),
    ({"a": login_entry(ISSUER, COMPANY, issuer=ISSUER.issuer + "/")}, [COMPANY]),
    ({"a": login_entry(ISSUER, COMPANY, client_id="other-client")}, []),
    ({"a": login_entry(OTHER_ISSUER, COMPANY)}, []),
    ({"a": "not an entry", "b": ["x"]}, []),
], ids=["none", "only-this-service", "another", "two-others-sorted", "before-logins-had-a-service",
        "issuer-with-slash", "another-client", "another-issuer", "damaged"])
def test_the_other_services_a_login_to_the_same_issuer_and_client_was_made_for(entries: dict[str, Any],
                                                                                found: list[str]) -> None:
    assert others(entries, [ISSUER], PARTNER) == found
