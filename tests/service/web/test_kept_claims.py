"""``Policy.kept_claims``: what a web session keeps of an ID token's claims. ``decide`` answers on them exactly as on
all the claims, for every repository and for none, whatever groups and values the token carries; and they hold
nothing else: list elements no condition accepts, claims no rule or deny entry reads, the token's own bookkeeping."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccweb.config import parse_config
from ccweb.policy import Policy, Repository, compile_policy

ROLE = "arn:aws:iam::111122223333:role/"
POLICY = compile_policy(parse_config({
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
}))
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
