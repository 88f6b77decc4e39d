"""A signed-in session under a policy that changes, and a cookie another application signed; and the page deciding
as the API does on what the session kept: the groups overage, a pointer, session tags.

A reload that reads claims the session did not keep (a deny entry on a claim or a list element it dropped) ends
the session with a sentence, and signing in again meets the new policy; a reload of anything else (what a rule
grants, its role) keeps it and the page decides anew. A reload that turns sign-in off, moves it to another issuer
or client, or takes the client out of the issuer's audiences ends it too. And a cookie signed with the session
secret as it is (what another Starlette application given the same secret makes) signs no one in."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from itsdangerous import TimestampSigner

from ccweb.config import parse_config
from ccweb.policy import Suspended
from ccweb.web.routes import session_key
from ccweb.web.session import POLICY_CHANGED, SIGN_IN_CHANGED, SIGNED_IN
from webpage import Page
from websignin import SESSION_SECRET, IdP, Web, message, shown, web_policy

Policy = dict[str, Any]


@pytest.fixture
def policy(tmp_path: Path, idp: IdP) -> Policy:
    """The sandbox's policy with sign-in, as the test's app starts with it."""
    return web_policy(idp.url, tmp_path, idp.client_secret)


def reload(web: Web, policy: Policy) -> None:
    assert web.app.state.policy.apply(parse_config(policy))


@pytest.mark.parametrize("deny", [
    {"name": "offboarded", "claims": {"groups": "offboarded"}, "reason": "offboarded"},
    {"name": "closed", "claims": {"department": "gone"}, "reason": "department closed"},
], ids=["a-list-element-not-kept", "a-claim-not-kept"])
def test_a_reload_that_reads_claims_the_session_did_not_keep_ends_it(
        make_web: Callable[..., Web], idp: IdP, policy: Policy, deny: dict[str, Any]) -> None:
    idp.users = {**idp.users, "bob": {**idp.users["bob"], "groups": ["contractors", "offboarded"],
                                      "department": "gone"}}
    web = make_web(policy=policy)
    browser = web.browser()
    assert browser.sign_in("bob").status_code == 303
    assert browser.who() == "bob@example.com"
    token = idp.answers[0]["id_token"]
    reload(web, {**policy, "deny": [deny]})
    running = web.app.state.policy.current
    verified = web.run(running.verifier.verify(token))
    assert isinstance(running.policy.decide("dev", verified.claims, None), Suspended), "the API refuses bob now"
    assert shown(browser) == (None, POLICY_CHANGED)
    assert shown(browser) == (None, None), "said once"
    assert SIGNED_IN not in browser.session()
    assert browser.sign_in("bob").status_code == 403, "signing in again meets the deny entry"


def test_a_reload_of_what_the_rules_grant_keeps_the_session_and_the_page_decides_anew(
        make_web: Callable[..., Web], policy: Policy) -> None:
    web = make_web(policy=policy)
    browser = web.browser()
    assert browser.sign_in("bob").status_code == 303
    changed = copy.deepcopy(policy)
    changed["rules"][1].update(repositories=["demo", "docs"], access="write")
    changed["rules"][0]["role_arn"] = changed["rules"][0]["role_arn"] + "-2"
    reload(web, changed)
    page = browser.page()
    assert browser.who() == "bob@example.com"
    [contractors] = page.all("li", data_rule="contractors")
    assert contractors.get("data-access") == "write" and "docs" in contractors.all_text
    assert page.by_id("notice") is None and page.by_id("policy-changed") is None


def _sign_in_off(policy: Policy) -> None:
    policy["web"] = {"public_url": policy["web"]["public_url"]}


def _another_issuer(policy: Policy) -> None:
    policy["issuers"].append({"name": "corp", "issuer": "https://idp.example.com", "audiences": ["ccweb-web"]})
    policy["web"]["issuer"] = "corp"


def _client_revoked(policy: Policy) -> None:
    policy["issuers"][0]["audiences"] = ["ccweb", "ccweb-cli", "ccweb-web-2"]
    policy["web"]["client_id"] = "ccweb-web-2"


@pytest.mark.parametrize("edit", [_sign_in_off, _another_issuer, _client_revoked],
                         ids=["sign-in-off", "another-issuer", "client-out-of-the-audiences"])
def test_a_reload_that_changes_the_sign_in_ends_the_sessions_it_made(
        make_web: Callable[..., Web], policy: Policy, edit: Callable[[Policy], None]) -> None:
    web = make_web(policy=policy)
    browser = web.browser()
    assert browser.sign_in("alice").status_code == 303
    changed = copy.deepcopy(policy)
    edit(changed)
    reload(web, changed)
    assert shown(browser) == (None, SIGN_IN_CHANGED)
    assert SIGNED_IN not in browser.session()
    assert not browser.page().all("form", id="sign-out")


def resigned(browser_cookie: str, key: bytes) -> str:
    """The cookie's content, signed again with ``key`` as Starlette's SessionMiddleware signs."""
    payload = browser_cookie.split(".", maxsplit=1)[0]
    content = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
    return TimestampSigner(key.decode("latin-1")).sign(base64.b64encode(json.dumps(content).encode())).decode()


def test_a_cookie_signed_with_the_session_secret_itself_signs_no_one_in(web: Web) -> None:
    browser = web.browser()
    assert browser.sign_in("mallory").status_code == 303
    cookie = browser.client.cookies["ccweb"]
    elsewhere = web.browser()  # what another application given the same secret would make of the same session
    elsewhere.client.cookies.set("ccweb", resigned(cookie, SESSION_SECRET), domain="127.0.0.1")
    assert elsewhere.who() is None
    ours = web.browser()
    ours.client.cookies.set("ccweb", resigned(cookie, session_key(SESSION_SECRET)), domain="127.0.0.1")
    assert ours.who() == "mallory@example.net", "the key the service signs with"


OVERAGE_MARKER = {"_claim_names": {"groups": "src1"},
                  "_claim_sources": {"src1": {"endpoint": "https://graph.example/getMemberObjects",
                                              "access_token": "PLANTEDGRAPHTOKEN"}}}


def overage(claims: dict[str, Any]) -> dict[str, Any]:
    """``claims`` as Entra ID shapes them for a person in too many groups: no groups, the overage marker."""
    return {**{k: v for k, v in claims.items() if k != "groups"}, **OVERAGE_MARKER}


def test_the_groups_overage_on_a_rule_decides_on_the_page_as_in_the_api(web: Web, idp: IdP) -> None:
    idp.tamper = overage
    browser = web.browser()
    assert browser.sign_in("alice").status_code == 303
    running = web.app.state.policy.current
    verified = web.run(running.verifier.verify(idp.answers[0]["id_token"]))
    kept = browser.session()[SIGNED_IN]["claims"]
    assert "_claim_names" in kept and "groups" not in kept and "PLANTEDGRAPHTOKEN" not in json.dumps(kept)
    assert running.policy.decide("dev", kept, None) == running.policy.decide("dev", verified.claims, None)
    page = browser.page()
    [developers] = page.all("li", data_rule="developers")
    [refused] = [e for e in developers.walk() if e.get("class") == "refused"]
    assert "groups overage" in refused.all_text and "Groups assigned to the application" in refused.all_text
    answer = browser.get("/", params={"repo": "demo"})
    assert "groups overage" in Page.of(answer).text_of("reach-answer"), "the reach box says it too"


def test_the_groups_overage_on_a_deny_entry_refuses_the_sign_in(make_web: Callable[..., Web], idp: IdP,
                                                                policy: Policy) -> None:
    web = make_web(policy={**policy, "deny": [{"name": "frozen", "claims": {"groups": "frozen"}}]})
    idp.tamper = overage
    answer = web.browser().sign_in("bob")
    assert answer.status_code == 403
    sentence = message(answer)
    assert "groups overage" in sentence and "PLANTEDGRAPHTOKEN" not in sentence and "frozen" not in sentence


def test_the_page_shows_the_session_tags_a_request_would_carry(make_web: Callable[..., Web], idp: IdP,
                                                                policy: Policy) -> None:
    tagged = copy.deepcopy(policy)
    tagged["rules"][0]["session_tags"] = {"team": "/org/team", "dept": "department"}
    idp.users = {**idp.users, "alice": {**idp.users["alice"], "org": {"team": "payments", "size": 12},
                                        "department": 42}}
    browser = make_web(policy=tagged).browser()
    assert browser.sign_in("alice").status_code == 303
    assert browser.session()[SIGNED_IN]["claims"]["org"] == {"team": "payments"}, "a pruned copy along the path"
    [developers] = browser.page().all("li", data_rule="developers")
    [tags] = [e for e in developers.walk() if e.get("class") == "session-tags"]
    assert tags.all_text == "team=payments, dept=42"
