"""``Policy.kept_claims`` with claim paths: along a JSON Pointer the session keeps a pruned copy of each object on
the way, and at its end only the list elements a condition accepts; session tag and ``source_identity`` claims
whole; the markers of a claim left out (Entra ID's groups overage) so the page refuses as the API does. ``decide``
answers the same on what is kept, whatever the token nests; the digest moves when any of that changes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccweb.config import parse_config
from ccweb.policy import Distributed, Policy, Repository, compile_policy

ROLE = "arn:aws:iam::111122223333:role/"
SOURCE: dict[str, Any] = {
    "issuers": [{"name": "kc", "issuer": "https://idp.example.com/realms/corp", "audiences": ["ccweb-web"]}],
    "deny": [{"name": "frozen", "claims": {"/realm_access/roles": "frozen"}}],
    "rules": [
        {"name": "developers", "issuer": "kc", "claims": {"/realm_access/roles": "developers"},
         "role_arn": ROLE + "dev", "repositories": ["*"], "session_tags": {"team": "/org/team"}},
        {"name": "writers", "issuer": "kc", "claims": {"/resource_access/ccweb/roles": {"pattern": "writ.*"},
                                                       "groups": "infra"},
         "role_arn": ROLE + "write", "repositories": ["infra-*"], "source_identity": "/ext/employee_id"},
        {"name": "first-team", "issuer": "kc", "claims": {"/teams/0": "app"}, "role_arn": ROLE + "first",
         "repositories": ["app"]},
    ],
}
POLICY = compile_policy(parse_config(SOURCE))
WHERE = [None, Repository("app", "us-east-1"), Repository("infra-net", "us-east-1"), Repository("docs", "us-east-1")]
KEYCLOAK = {
    "iss": "https://idp.example.com/realms/corp", "sub": "u-1", "aud": "ccweb-web", "exp": 2_000_000_000,
    "preferred_username": "ann", "session_state": "s", "acr": "1",
    "realm_access": {"roles": ["offline_access", "developers", "uma_authorization"], "other": "x"},
    "resource_access": {"ccweb": {"roles": ["writer", "reader"]}, "account": {"roles": ["manage-account"]}},
    "org": {"team": "payments", "floor": 3}, "ext": {"employee_id": "e-1", "badge": 9},
    "teams": ["app", "web"], "groups": ["infra", "sales"],
}


def decisions(policy: Policy, claims: dict[str, Any]) -> list[object]:
    return [policy.decide("kc", claims, where) for where in WHERE]


def test_a_pointer_keeps_a_pruned_copy_along_its_path() -> None:
    kept = POLICY.kept_claims("kc", KEYCLOAK)
    assert kept == {
        "iss": KEYCLOAK["iss"], "sub": "u-1", "aud": "ccweb-web", "exp": 2_000_000_000, "preferred_username": "ann",
        "realm_access": {"roles": ["developers"]},
        "resource_access": {"ccweb": {"roles": ["writer"]}},
        "org": {"team": "payments"}, "ext": {"employee_id": "e-1"},
        "teams": ["app", "web"], "groups": ["infra"],
    }
    assert decisions(POLICY, kept) == decisions(POLICY, KEYCLOAK)


def test_the_overage_marker_is_kept_so_the_page_refuses_as_the_api_does() -> None:
    entra = {"sub": "u-2", "hasgroups": True, "_claim_names": {"groups": "src1"}, "realm_access": {"roles": []},
             "resource_access": {"ccweb": {"roles": ["writer"]}}, "ext": {"employee_id": "e-2"}}
    kept = POLICY.kept_claims("kc", entra)
    assert kept["hasgroups"] is True and kept["_claim_names"] == {"groups": "src1"}
    assert isinstance(POLICY.decide("kc", kept, Repository("infra-net", "us-east-1")), Distributed)
    assert decisions(POLICY, kept) == decisions(POLICY, entra)


LEAVES = st.one_of(st.sampled_from(["developers", "frozen", "writer", "app", "infra", "payments", "e-1"]),
                   st.integers(-1, 3), st.booleans(), st.none())
NESTED = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["roles", "ccweb", "team", "employee_id", "0", "x"]), inner, max_size=3)),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(claims=st.dictionaries(st.sampled_from(["sub", "realm_access", "resource_access", "org", "ext", "teams",
                                               "groups", "_claim_names", "hasgroups"]), NESTED, max_size=8))
def test_decide_answers_the_same_for_any_nesting(claims: dict[str, Any]) -> None:
    assert decisions(POLICY, POLICY.kept_claims("kc", claims)) == decisions(POLICY, claims)


def changed(edit: Callable[[dict[str, Any]], None]) -> Policy:
    source = copy.deepcopy(SOURCE)
    edit(source)
    return compile_policy(parse_config(source))


def _rule(index: int, **changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda source: source["rules"][index].update(changes)


@pytest.mark.parametrize("edit", [
    _rule(0, claims={"/realm_access/roles": "admins"}),
    _rule(0, claims={"/realm_access/groups": "developers"}),
    _rule(0, session_tags={"team": "/org/floor"}),
    _rule(0, session_tags={"team": "/org/team", "floor": "/org/floor"}),
    _rule(1, source_identity="/ext/badge"),
    lambda source: source["deny"].append({"claims": {"/org/floor": 3}}),
], ids=["a-pointer-condition", "another-pointer", "a-tag-claim", "a-tag-added", "source-identity", "a-deny-entry"])
def test_what_is_kept_changing_changes_the_digest(edit: Callable[[dict[str, Any]], None]) -> None:
    assert changed(edit).kept_claims_digest("kc") != POLICY.kept_claims_digest("kc")


@pytest.mark.parametrize("edit", [
    _rule(0, repositories=["app"]),
    _rule(0, session_tags={"Team": "/org/team"}),
    _rule(0, claims={"/realm_access/roles": "developers"}, name="devs"),
], ids=["repositories", "the-tag-key", "the-rule-name"])
def test_what_is_kept_the_same_keeps_the_digest(edit: Callable[[dict[str, Any]], None]) -> None:
    other = changed(edit)
    assert other.kept_claims_digest("kc") == POLICY.kept_claims_digest("kc")
    assert other.kept_claims("kc", KEYCLOAK) == POLICY.kept_claims("kc", KEYCLOAK)
