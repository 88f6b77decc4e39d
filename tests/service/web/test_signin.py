"""Sign-in at the development issuer, at the protocol level: each person signs in; a callback whose ``state`` is
made up, missing, another browser's, replayed or too old signs no one in (and spends no code); a code that cannot
be one is sent nowhere, and made-up codes beyond the process's budget of exchanges are a 503 that asks the
identity provider nothing; an ID token that the API would refuse, or that is not this sign-in's (nonce, aud, azp,
several audiences without azp), is refused with 401 and its sentence; claims the page cannot hold (not Unicode,
nested too deep) with 400; a suspended identity with 403 and the suspension's sentence."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from ccweb.config import parse_config
from ccweb.web.exchange import BUSY, EXCHANGE_BURST, EXCHANGES_PER_MINUTE
from ccweb.web.session import SIGNED_IN
from ccweb.web.signin import NO_STATE
from websignin import Clock, IdP, Web, message, web_policy


def with_query(url: str, **changes: str | None) -> str:
    """``url`` with its query's fields changed (None: removed)."""
    parts = urlsplit(url)
    query = {**dict(parse_qsl(parts.query)), **changes}
    return parts._replace(query=urlencode({k: v for k, v in query.items() if v is not None})).geturl()


@pytest.mark.parametrize(("user", "identity", "rule"), [
    ("alice", "alice@example.com", "developers"),
    ("bob", "bob@example.com", "contractors"),
    ("mallory", "mallory@example.net", None),
], ids=["alice", "bob", "mallory"])
def test_each_person_signs_in_and_the_session_holds_no_token(web: Web, idp: IdP, user: str, identity: str,
                                                               rule: str | None) -> None:
    browser = web.browser()
    done = browser.sign_in(user)
    assert done.status_code == 303 and done.headers["location"] == "/"
    page = browser.page()
    assert browser.who() == identity
    assert [li.get("data-rule") for li in page.all("li", class_="rule")] == ([rule] if rule else [])
    held = browser.session()
    assert set(held) == {SIGNED_IN}, "the sign-in in progress (state, nonce, code_verifier) is gone"
    [answer] = idp.answers
    kept = str(held)
    for secret in (answer["id_token"], answer["access_token"], idp.client_secret):
        assert secret not in kept
    assert held[SIGNED_IN]["claims"]["email"] == identity and "nonce" not in held[SIGNED_IN]["claims"]


def test_a_made_up_or_missing_state_signs_no_one_in_and_asks_the_idp_for_nothing(web: Web, idp: IdP) -> None:
    browser = web.browser()
    browser.get("/auth/login")  # a sign-in in progress, with a state of its own
    for url in ("/auth/callback?code=x&state=made-up", "/auth/callback?code=x", "/auth/callback"):
        refused = browser.get(url)
        assert refused.status_code == 400, url
        assert message(refused) == NO_STATE
    assert browser.who() is None
    assert "/token" not in idp.asked


def test_a_callback_taken_to_another_browser_is_refused_and_leaves_the_code_unspent(web: Web) -> None:
    attacker, victim = web.browser(), web.browser()
    url = attacker.callback("mallory")  # login CSRF: the attacker's own sign-in, finished in the victim's browser
    refused = victim.get(url)
    assert refused.status_code == 400 and message(refused) == NO_STATE
    assert victim.who() is None
    assert attacker.get(url).status_code == 303, "the refused callback spent nothing"
    assert attacker.who() == "mallory@example.net"


def test_a_replayed_callback_is_refused_and_the_session_stays(web: Web) -> None:
    browser = web.browser()
    url = browser.callback("alice")
    before = dict(browser.client.cookies)  # the cookie that held this sign-in in progress
    assert browser.get(url).status_code == 303
    replayed = browser.get(url)
    assert replayed.status_code == 400 and message(replayed) == NO_STATE
    assert browser.who() == "alice@example.com"
    thief = web.browser()
    thief.client.cookies.update(before)  # the same callback with the cookie from before it: the code is spent
    stolen = thief.get(url)
    assert stolen.status_code == 400
    assert "refused to finish the sign-in" in message(stolen) and "invalid_grant" in message(stolen)
    assert thief.who() is None


def test_a_sign_in_left_at_the_idp_for_more_than_ten_minutes_is_refused(web: Web) -> None:
    browser = web.browser()
    url = browser.callback("alice")
    web.clock.offset += 601
    refused = browser.get(url)
    assert refused.status_code == 400 and message(refused) == NO_STATE
    assert browser.who() is None


def test_a_second_sign_in_replaces_the_first_one_in_progress(web: Web) -> None:
    browser = web.browser()
    first, second = browser.callback("bob"), browser.callback("alice")
    assert browser.get(first).status_code == 400
    assert browser.get(second).status_code == 303
    assert browser.who() == "alice@example.com"


@pytest.mark.parametrize(("error", "shown"), [
    ("access_denied", "The identity provider did not sign you in (access_denied)."),
    ("<script>alert(1)</script>", "The identity provider did not sign you in."),
], ids=["code", "not-a-code"])
def test_the_idps_error_is_a_400_naming_its_code_only_when_it_is_one(web: Web, idp: IdP, error: str,
                                                                    shown: str) -> None:
    browser = web.browser()
    url = with_query(browser.callback("alice"), code=None, error=error, error_description="<b>nope</b>")
    refused = browser.get(url)
    assert refused.status_code == 400
    assert message(refused).startswith(shown)
    assert "<script>" not in refused.text and "nope" not in refused.text
    assert "/token" not in idp.asked


Tamper = Callable[[dict[str, object]], dict[str, object]]


class Minted(NamedTuple):
    """How the issuer's next ID token differs from the sandbox's, and the sentence that refuses it."""

    said: str
    tamper: Tamper | None = None
    audience: str | None = None
    ttl: int = 3600


@pytest.mark.parametrize("minted", [
    Minted("The OIDC token was refused: its nonce is not the one of this browser's sign-in.",
           tamper=lambda c: {**c, "nonce": "another sign-in's"}),
    Minted("The OIDC token was refused: its nonce is not the one of this browser's sign-in.",
           tamper=lambda c: {k: v for k, v in c.items() if k != "nonce"}),
    Minted("The OIDC token was refused: it was not issued to this page's client 'ccweb-web' (its aud).",
           audience="ccweb"),
    Minted("The OIDC token was refused: it was issued to another client than this page's 'ccweb-web' (its azp).",
           tamper=lambda c: {**c, "azp": "ccweb-cli"}),
    Minted("The OIDC token was refused: it is not meant for this service", audience="someone-else"),
    Minted("The OIDC token was refused: it was issued to another application",
           tamper=lambda c: {**c, "azp": "someone-else"}),
    Minted("The OIDC token was refused: it has expired", ttl=-120),
    Minted("The OIDC token was refused: it was issued to several audiences and names none of them as the client it "
           "was issued to (it has no azp).", tamper=lambda c: {**c, "aud": ["ccweb-web", "ccweb"]}),
], ids=["nonce-mismatch", "nonce-missing", "aud-another-audience", "azp-another-audience", "aud-unknown",
        "azp-unknown", "expired", "several-audiences-without-azp"])
def test_an_id_token_not_for_this_sign_in_is_a_401_with_its_sentence(web: Web, idp: IdP, minted: Minted) -> None:
    idp.tamper, idp.audience, idp.ttl = minted.tamper, minted.audience, minted.ttl
    browser = web.browser()
    refused = browser.sign_in("alice")
    assert refused.status_code == 401
    assert message(refused).startswith(minted.said)
    assert browser.who() is None and SIGNED_IN not in browser.session()


def test_a_suspended_identity_is_not_signed_in_and_ends_the_session_before_it(tmp_path: Path, idp: IdP,
                                                                             make_web: Callable[..., Web]) -> None:
    policy = web_policy(idp.url, tmp_path, idp.client_secret)
    policy["deny"] = [{"name": "left", "claims": {"email": "mallory@example.net"}, "reason": "left the company"}]
    web = make_web(policy=policy)
    browser = web.browser()
    assert browser.sign_in("bob").status_code == 303
    refused = browser.sign_in("mallory")
    assert refused.status_code == 403
    assert message(refused) == (
        "Access to ccweb for mallory@example.net (subject 'dev|mallory' of issuer 'dev') is suspended by its "
        "operators (left the company); ask them to lift the suspension.")
    assert browser.who() is None, "bob's session in this browser ended too"
    assert browser.session() == {}


def test_sign_in_of_a_policy_without_it_is_a_404_page(make_web: Callable[..., Web]) -> None:
    web = make_web(policy={"issuers": [{"name": "corp", "issuer": "https://idp.example.com", "audiences": ["x"]}]},
                   secret=None)
    browser = web.browser()
    for path in ("/auth/login", "/auth/callback?code=x&state=y"):
        answer = browser.get(path)
        assert answer.status_code == 404
        assert "no single sign-on" in message(answer)
    assert "set-cookie" not in answer.headers


def test_sign_in_added_by_a_reload_to_a_service_started_without_a_session_secret_is_a_503_page(
        tmp_path: Path, idp: IdP, make_web: Callable[..., Web]) -> None:
    policy = web_policy(idp.url, tmp_path, idp.client_secret)
    web = make_web(policy={k: v for k, v in policy.items() if k != "web"}, secret=None)
    assert web.app.state.policy.apply(parse_config(policy))
    browser = web.browser()
    answer = browser.get("/auth/login")
    assert answer.status_code == 503
    assert message(answer).startswith("Sign-in needs the session secret, which this service did not read when it "
                                      "started")
    assert "set-cookie" not in answer.headers and "/authorize" not in idp.asked


def test_an_id_token_for_several_audiences_that_names_this_client_its_azp_signs_in(web: Web, idp: IdP) -> None:
    idp.tamper = lambda c: {**c, "aud": ["ccweb-web", "ccweb"], "azp": "ccweb-web"}
    browser = web.browser()
    assert browser.sign_in("alice").status_code == 303
    assert browser.who() == "alice@example.com"


@pytest.mark.parametrize("code", ["c" * 2049, "caf\u00e9", "a\tb", "a\x00b", "\u202ea"],
                         ids=["too-long", "not-ascii", "tab", "nul", "bidi"])
def test_a_code_that_cannot_be_one_is_refused_before_any_exchange(web: Web, idp: IdP, code: str) -> None:
    browser = web.browser()
    refused = browser.get(with_query(browser.callback("alice"), code=code))
    assert refused.status_code == 400
    assert message(refused).startswith("The identity provider came back with a code that cannot be one")
    assert "/token" not in idp.asked
    assert browser.who() is None


class Stopped(Clock):
    """The app's clock, standing still but for what the test moves it by."""

    def __init__(self) -> None:
        super().__init__()
        self.at = time.time()

    def now(self) -> float:
        return self.at + self.offset


def test_exchanges_beyond_the_budget_are_a_503_that_asks_the_idp_nothing(tmp_path: Path, idp: IdP) -> None:
    web = Web(web_policy(idp.url, tmp_path, idp.client_secret), clock=Stopped())
    try:
        attacker = web.browser()

        def made_up_callback() -> httpx.Response:  # a sign-in started, and a code of the attacker's own
            login = attacker.get("/auth/login")
            state = dict(parse_qsl(urlsplit(login.headers["location"]).query))["state"]
            return attacker.get("/auth/callback", params={"state": state, "code": "made-up"})

        assert {made_up_callback().status_code for _ in range(EXCHANGE_BURST)} == {400}
        assert idp.asked.count("/token") == EXCHANGE_BURST
        busy = made_up_callback()
        assert busy.status_code == 503 and message(busy) == BUSY
        assert idp.asked.count("/token") == EXCHANGE_BURST
        web.clock.offset += 60 / EXCHANGES_PER_MINUTE  # one more exchange's worth of time
        person = web.browser()
        assert person.sign_in("alice").status_code == 303
        assert made_up_callback().status_code == 503
        assert idp.asked.count("/token") == EXCHANGE_BURST + 1
    finally:
        web.close()


def nested(depth: int) -> Any:
    """A JSON value of ``depth`` lists, one inside the other."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(("claims", "problem"), [
    ({"name": "Alice \ud800"}, "text that is not valid Unicode"),
    ({"sub": "dev|\udfff"}, "text that is not valid Unicode"),
    ({"email": "alice\ud800@example.com"}, "text that is not valid Unicode"),
    ({"name": nested(64)}, "values nested more than 64 deep"),
    ({"name": nested(900)}, "values nested more than 64 deep"),
], ids=["name", "sub", "email", "nested-65", "nested-900"])
def test_claims_the_page_cannot_hold_refuse_the_sign_in_with_a_sentence(web: Web, idp: IdP, claims: dict[str, Any],
                                                                       problem: str) -> None:
    idp.escaped, idp.tamper = True, lambda c: {**c, **claims}
    browser = web.browser()
    refused = browser.sign_in("alice")
    assert refused.status_code == 400
    assert message(refused).startswith(f"Your sign-in carries claims this page cannot hold ({problem})")
    assert browser.who() is None and SIGNED_IN not in browser.session()


def test_what_the_session_does_not_keep_may_hold_anything(web: Web, idp: IdP) -> None:
    idp.escaped = True
    idp.tamper = lambda c: {**c, "groups": ["engineering", "\ud800"], "name": nested(63), "extra": nested(900)}
    browser = web.browser()
    assert browser.sign_in("alice").status_code == 303
    assert browser.who() == "alice@example.com"
    assert browser.session()[SIGNED_IN]["claims"]["groups"] == ["engineering"]
