"""``Policy.kept_claims``: what a web session keeps of an ID token's claims. ``decide`` answers on them exactly as on
all the claims, for every repository and for none, whatever groups and values the token carries; and they hold
nothing else: list elements no condition accepts, claims no rule or deny entry reads, the token's own bookkeeping.
Their digest (``Policy.kept_claims_digest``) moves with what decides which claims are kept, and with nothing else."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccweb.config import parse_config
from ccweb.policy import Policy, Repository, compile_policy

ROLE = "arn:aws:iam::111122223333:role/"
SOURCE: dict[str, Any] = {
    "issuers": [{"name": "corp", "issuer": "https://idp.example.com", "audiences": ["ccweb-web"]},
                {"name": "ci", "issuer": "https://ci.example.com", "audiences": ["ccweb"]}],
    "deny": [{"name": "left", "claims": {"email": {"pattern": r".+@former\.example"}}},
             {"name": "frozen", "issuer": "corp", "claims": {"groups": "frozen"}},
             {"name": "ci-only", "issuer": "ci", "claims": {"repository_owner": "evil"}}],
    "rules": [
        {"name": "developers", "issuer": "corp", "claims": {"groups": "engineering"}, "role_arn": ROLE + "dev",
         "repositories": ["*"], "access": "write"},
        {"name": "platform", "issuer": "corp", "claims": {"groups": {"pattern": "platform-.*"}, "level": 3},
         "role_arn": ROLE + "platform", "repositories": ["infra-*"], "access": "write",
         "source_identity": "employee_id"},
        {"name": "readers", "issuer": "corp", "claims": {"email_verified": True}, "role_arn": ROLE + "read",
         "repositories": ["docs"]},
        {"name": "jobs", "issuer": "ci", "claims": {"repository": "acme/app"}, "role_arn": ROLE + "ci",
         "repositories": ["app"]},
    ],
}
POLICY = compile_policy(parse_config(SOURCE))
WHERE = [None, Repository("app", "us-east-1"), Repository("infra-net", "eu-west-1"), Repository("docs", "us-east-1")]


def decisions(policy: Policy, claims: dict[str, Any]) -> list[object]:
    return [policy.decide("corp", claims, where) for where in WHERE]


def test_a_list_keeps_only_what_a_condition_accepts_and_unread_claims_go() -> None:
    claims = {"iss": "https://idp.example.com", "sub": "u-1", "aud": ["ccweb-web"], "exp": 2_000_000_000,
              "email": "ann@example.com", "email_verified": True, "name": "Ann", "nonce": "n", "at_hash": "h",
              "groups": ["sales", "engineering", "platform-net", "frozen-not", 7], "level": 3, "employee_id": ["a", 1],
              "repository_owner": "evil", "address": {"street": "x"}}
    kept = POLICY.kept_claims("corp", claims)
    assert kept == {
        "iss": "https://idp.example.com", "sub": "u-1", "aud": ["ccweb-web"], "exp": 2_000_000_000,
        "email": "ann@example.com", "email_verified": True, "name": "Ann",
        "groups": ["engineering", "platform-net"], "level": 3, "employee_id": ["a", 1],
    }
    assert decisions(POLICY, kept) == decisions(POLICY, claims)


def test_a_deny_entry_for_every_issuer_keeps_its_claim_one_for_another_issuer_does_not() -> None:
    claims = {"sub": "u-2", "email": "bob@former.example", "repository_owner": "evil"}
    assert POLICY.kept_claims("corp", claims) == {"sub": "u-2", "email": "bob@former.example"}
    assert POLICY.kept_claims("ci", claims) == claims


@pytest.mark.parametrize("groups", [["frozen", "engineering"], ["platform-db"], [], ["Engineering"]],
                         ids=["frozen", "platform", "none", "case"])
def test_decide_answers_the_same(groups: list[str]) -> None:
    claims = {"sub": "u-3", "email": "cy@example.com", "groups": groups, "level": 3, "employee_id": "e-3"}
    assert decisions(POLICY, POLICY.kept_claims("corp", claims)) == decisions(POLICY, claims)


VALUES = st.one_of(st.text(max_size=12), st.integers(-3, 5), st.booleans(), st.none(),
                   st.sampled_from(["engineering", "frozen", "platform-a", "platform-", "acme/app", "evil"]))


@settings(max_examples=300, deadline=None)
@given(claims=st.dictionaries(
    st.sampled_from(["sub", "email", "email_verified", "groups", "level", "employee_id", "repository", "x"]),
    st.one_of(VALUES, st.lists(VALUES, max_size=6)), max_size=8),
    issuer=st.sampled_from(["corp", "ci"]))
def test_decide_answers_the_same_for_any_claims(claims: dict[str, Any], issuer: str) -> None:
    kept = POLICY.kept_claims(issuer, claims)
    assert set(kept) <= set(claims)
    for where in WHERE:
        assert POLICY.decide(issuer, kept, where) == POLICY.decide(issuer, claims, where)


def changed(edit: Callable[[dict[str, Any]], None]) -> Policy:
    """POLICY's source, changed by ``edit``."""
    source = copy.deepcopy(SOURCE)
    edit(source)
    return compile_policy(parse_config(source))


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """An edit that sets ``path`` (dotted; list indexes as numbers) of the policy's source to ``value``."""
    def edit(source: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = source
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return edit


def _add_deny(entry: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda source: source["deny"].append(entry)


@pytest.mark.parametrize("edit", [
    _set("rules.0.repositories", ["app", "docs"]),
    _set("rules.0.role_arn", ROLE + "other"),
    _set("rules.2.access", "write"),
    lambda source: source["rules"].reverse(),
    _set("rules.0.name", "engineers"),
    _set("deny.0.reason", "left the company"),
    _add_deny({"name": "by-mail", "claims": {"email": "eve@example.com"}}),
    _set("rules.3.claims", {"repository": "acme/other"}),
], ids=["repositories", "role", "access", "order", "rule-name", "deny-reason", "deny-on-a-claim-kept-whole",
        "a-rule-of-another-issuer"])
def test_a_policy_changed_elsewhere_keeps_the_same_claims_and_the_same_digest(
        edit: Callable[[dict[str, Any]], None]) -> None:
    other = changed(edit)
    assert other.kept_claims_digest("corp") == POLICY.kept_claims_digest("corp")
    claims = {"sub": "u-9", "email": "eve@example.com", "groups": ["engineering", "frozen", "x"], "level": 3,
              "employee_id": "e-9", "department": "gone", "repository": "acme/other"}
    assert other.kept_claims("corp", claims) == POLICY.kept_claims("corp", claims)


@pytest.mark.parametrize("edit", [
    _add_deny({"name": "gone", "claims": {"department": "gone"}}),
    _add_deny({"name": "offboarded", "issuer": "corp", "claims": {"groups": "offboarded"}}),
    _set("deny.1.claims", {"groups": {"pattern": "frozen.*"}}),
    _set("rules.1.claims", {"groups": {"pattern": "platform-.*"}, "level": "3"}),
    _set("rules.1.source_identity", "handle"),
    _set("rules.3.issuer", "corp"),
], ids=["deny-on-a-claim-not-kept", "deny-on-a-list-element-not-kept", "a-condition-changed", "a-value-type",
        "source-identity", "a-rule-moved-to-this-issuer"])
def test_a_policy_that_keeps_other_claims_has_another_digest(edit: Callable[[dict[str, Any]], None]) -> None:
    assert changed(edit).kept_claims_digest("corp") != POLICY.kept_claims_digest("corp")
