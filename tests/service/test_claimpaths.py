"""Claims where identity providers put them: a key starting with ``/`` is a JSON Pointer into the token's claims
(Keycloak's ``realm_access.roles`` and ``resource_access.<client>.roles``, with ``~0``/``~1`` escapes), any other key
one top-level claim, verbatim (Auth0's ``https://example.com/groups``, a claim named ``a.b``); in rules, deny
entries and ``source_identity`` alike. And a claim the token leaves out to be fetched elsewhere (Entra ID's groups
overage): a rule or deny entry that reads it refuses with a 403 that names the overage and the fix, as whoami and
explain say too, and no secret the token or its ``_claim_sources`` carry is ever in the sentence."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.explain import explain
from ccweb.policy import Distributed, Granted, NoRule, Policy, Repository, Suspended, Unidentified, compile_policy
from ccweb.policytest import Case, differences
from ccweb.sandbox.issuer import DevIssuer
from support import RecordingSTS, serve_issuer

ROLE = "arn:aws:iam::111122223333:role/"
HERE = Repository("app", "us-east-1")
ISSUER = "https://idp.example.com"


def rule(name: str, claims: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "issuer": "corp", "claims": claims, "role_arn": ROLE + name, "repositories": ["*"],
            **extra}


def compiled(*rules: dict[str, Any], deny: list[dict[str, Any]] | None = None, url: str = ISSUER) -> dict[str, Any]:
    return {"issuers": [{"name": "corp", "issuer": url, "audiences": ["ccweb"]}], "deny": deny or [],
            "rules": list(rules)}


def policy(*rules: dict[str, Any], deny: list[dict[str, Any]] | None = None) -> Policy:
    return compile_policy(parse_config(compiled(*rules, deny=deny)))


def granted_by(decision: object) -> str | None:
    if isinstance(decision, NoRule):
        return None
    assert isinstance(decision, Granted), decision
    return decision.rule.name


KEYCLOAK = policy(
    rule("realm-developers", {"/realm_access/roles": "developers"}),
    rule("ccweb-writers", {"/resource_access/ccweb/roles": {"pattern": "writ.*"}}),
)
MATCHES = {
    "realm role": ({"realm_access": {"roles": ["offline_access", "developers"]}}, "realm-developers"),
    "realm role as a string": ({"realm_access": {"roles": "developers"}}, "realm-developers"),
    "client role": ({"resource_access": {"ccweb": {"roles": ["writer"]}}}, "ccweb-writers"),
    "client role of another client": ({"resource_access": {"account": {"roles": ["writer"]}}}, None),
    "the same role at the top": ({"roles": ["developers"], "realm_access": {}}, None),
    "a flat claim spelt like the path": ({"realm_access.roles": ["developers"]}, None),
    "no realm_access": ({}, None),
    "realm_access a list": ({"realm_access": [{"roles": ["developers"]}]}, None),
    "roles an object": ({"realm_access": {"roles": {"developers": True}}}, None),
}


@pytest.mark.parametrize(("claims", "rule_name"), MATCHES.values(), ids=MATCHES.keys())
def test_a_pointer_rule_matches_keycloak_roles_where_keycloak_puts_them(claims: dict[str, Any],
                                                                      rule_name: str | None) -> None:
    assert granted_by(KEYCLOAK.decide("corp", {"sub": "u-1", **claims}, HERE)) == rule_name


VERBATIM = {
    "escaped slash": ("/a~1b", {"a/b": "x"}, True),
    "escaped tilde": ("/m~0n", {"m~n": "x"}, True),
    "escapes in order": ("/~01", {"~1": "x"}, True),
    "escaped slash is not a level": ("/a~1b", {"a": {"b": "x"}}, False),
    "a list index": ("/teams/1", {"teams": ["a", "x"]}, True),
    "an index past the end": ("/teams/2", {"teams": ["a", "x"]}, False),
    "auth0 namespaced claim": ("https://example.com/groups", {"https://example.com/groups": ["x"]}, True),
    "auth0 namespaced claim is not a path": ("https://example.com/groups",
                                             {"https:": {"": {"example.com": {"groups": ["x"]}}}}, False),
    "a claim named a.b": ("a.b", {"a.b": "x"}, True),
    "a.b is not a path": ("a.b", {"a": {"b": "x"}}, False),
}


@pytest.mark.parametrize(("key", "claims", "matches"), VERBATIM.values(), ids=VERBATIM.keys())
def test_names_are_verbatim_and_pointers_unescape(key: str, claims: dict[str, Any], matches: bool) -> None:
    decision = policy(rule("r", {key: "x"})).decide("corp", {"sub": "u-1", **claims}, HERE)
    assert granted_by(decision) == ("r" if matches else None)


def test_a_deny_entry_on_a_pointer_suspends_whom_it_names() -> None:
    guarded = policy(rule("everyone", {}), deny=[{"name": "frozen", "claims": {"/realm_access/roles": "frozen"}}])
    frozen = guarded.decide("corp", {"sub": "u-1", "realm_access": {"roles": ["developers", "frozen"]}}, HERE)
    assert isinstance(frozen, Suspended) and frozen.entry.label == "frozen"
    other = guarded.decide("corp", {"sub": "u-2", "realm_access": {"roles": ["developers"]}, "frozen": "frozen"},
                           HERE)
    assert granted_by(other) == "everyone"


def test_source_identity_by_pointer() -> None:
    named = policy(rule("named", {}, source_identity="/ext/employee~1id"))
    decision = named.decide("corp", {"sub": "u-1", "ext": {"employee/id": 4711}}, HERE)
    assert isinstance(decision, Granted)
    assert decision.request.source_identity == decision.request.session_name == "4711"
    missing = named.decide("corp", {"sub": "u-1", "ext": {"employee_id": 4711}}, HERE)
    assert isinstance(missing, Unidentified) and missing.claim == "/ext/employee~1id"


def test_explain_shows_what_each_pointer_found() -> None:
    claims = {"iss": ISSUER, "sub": "u-1", "realm_access": {"roles": ["offline_access", "developers"]},
              "resource_access": {"ccweb": {"roles": ["reader"]}}}
    lines = explain(KEYCLOAK, claims, "app", "us-east-1").lines()
    assert '      - claim /realm_access/roles = ["offline_access", "developers"]' in lines, lines
    refused = explain(KEYCLOAK, {**claims, "realm_access": {"roles": []}}, "app", "us-east-1").lines()
    assert ('      - claim /resource_access/ccweb/roles = ["reader"]: no element matches the pattern \'writ.*\''
            in refused), refused
    assert "      - claim /realm_access/roles = []: no element equals \"developers\"" in refused


# Entra ID v2 for a person in more groups than a token holds: no groups, a marker naming where to fetch them.
PLANTED = "PLANTEDGRAPHTOKEN"
OVERAGE = {"sub": "u-ovr", "email": "olga@example.com", "_claim_names": {"groups": "src1"},
           "_claim_sources": {"src1": {"endpoint": "https://graph.windows.net/t/users/o/getMemberObjects",
                                       "access_token": PLANTED}}}
THE_FIX = "Groups assigned to the application"


def test_the_overage_refuses_a_rule_on_groups_but_not_a_rule_it_does_not_reach() -> None:
    entra = policy(rule("engineering", {"groups": "g-1"}, repositories=["app"]),
                   rule("handbook", {"email": {"pattern": r".+@example\.com"}}, repositories=["*"]))
    decision = entra.decide("corp", OVERAGE, HERE)
    assert isinstance(decision, Distributed) and decision.rule is not None
    assert (decision.rule.name, decision.claim, decision.key) == ("engineering", "groups", "groups")
    assert granted_by(entra.decide("corp", OVERAGE, Repository("docs", "us-east-1"))) == "handbook"
    assert granted_by(entra.decide("corp", {**OVERAGE, "groups": ["g-1"]}, HERE)) == "engineering", (
        "groups carried beside the marker decide")
    other_condition = policy(rule("engineering", {"groups": "g-1", "email": "x@example.com"}))
    assert isinstance(other_condition.decide("corp", OVERAGE, HERE), NoRule), "a condition that fails decides"
    hasgroups = {"sub": "u-h", "hasgroups": True}
    assert isinstance(entra.decide("corp", hasgroups, HERE), Distributed)


def test_a_deny_entry_that_cannot_be_told_fails_closed() -> None:
    guarded = policy(rule("everyone", {}), deny=[{"claims": {"groups": "quarantine"}}])
    decision = guarded.decide("corp", OVERAGE, HERE)
    assert isinstance(decision, Distributed) and decision.entry is not None
    assert isinstance(guarded.decide("corp", OVERAGE, None), Distributed)
    lines = explain(guarded, {**OVERAGE, "iss": ISSUER}, "app", "us-east-1").lines()
    start = lines.index("  deny[0]: cannot be told")
    assert lines[start + 1:start + 3] == [
        "      - claim groups cannot be told: the token names groups as distributed (_claim_names) instead of "
        "carrying it",
        "rules, first match wins:"]
    assert "  rules[0] 'everyone': not reached" in lines
    assert lines[-1].startswith('denied: deny list, checked before every rule, reads the claim "groups", but the '
                                "token carries Entra ID's groups overage marker") and THE_FIX in lines[-1], lines
    assert PLANTED not in "\n".join(lines)


@pytest.fixture(scope="module")
def idp() -> Iterator[DevIssuer]:
    with serve_issuer() as served:
        yield served


async def ask(idp: DevIssuer, source: dict[str, Any], claims: dict[str, Any]) -> tuple[httpx.Response, httpx.Response,
                                                                                          RecordingSTS]:
    """``POST /v1/credentials`` for app, then ``GET /v1/whoami``, with a token of ``claims``."""
    sts = RecordingSTS()
    token = idp.mint(claims)
    async with httpx.AsyncClient() as http:
        app = create_app(parse_config(source), sts=sts, http=http)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccweb") as client:
            headers = {"Authorization": f"Bearer {token}"}
            credentials = await client.post("/v1/credentials", headers=headers, json={
                "protocol": "https", "host": "git-codecommit.us-east-1.amazonaws.com", "path": "v1/repos/app"})
            whoami = await client.get("/v1/whoami", headers=headers)
    assert token not in credentials.text + whoami.text
    return credentials, whoami, sts


def sentence(response: httpx.Response) -> str:
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "access_denied"
    detail: str = response.json()["detail"]
    assert PLANTED not in detail
    return detail


def test_the_service_answers_the_overage_of_a_rule_with_its_sentence(
        idp: DevIssuer, caplog: pytest.LogCaptureFixture) -> None:
    source = compiled(rule("engineering", {"groups": "g-1"}), url=idp.issuer_url)
    with caplog.at_level(logging.INFO, logger="ccweb.audit"):
        credentials, whoami, sts = asyncio.run(ask(idp, source, OVERAGE))
    assert sentence(credentials) == (
        "The ccweb rule 'engineering' reads the claim \"groups\", but your token (subject 'u-ovr' of issuer 'corp') "
        "carries Entra ID's groups overage marker instead of the groups claim (you are in more groups than a token "
        "holds); ask your identity provider's administrators to emit only the groups assigned to the application "
        "(Entra ID: the app registration's Token configuration → groups claim → Groups assigned to the "
        "application).")
    assert sts.requests == [], "STS is not asked"
    [line] = [r.fields for r in caplog.records if r.name == "ccweb.audit"]  # type: ignore[attr-defined]
    assert (line["outcome"], line["reason"], line["rule"]) == ("denied", "distributed_claim", "engineering")
    assert PLANTED not in caplog.text
    [summary] = whoami.json()["rules"]
    assert summary["rule"] == "engineering" and summary["session_tags"] == {}
    assert "groups overage" in summary["refused"] and THE_FIX in summary["refused"]
    assert PLANTED not in whoami.text


def test_the_service_answers_the_overage_of_a_deny_entry_with_its_sentence(idp: DevIssuer) -> None:
    source = compiled(rule("everyone", {}), deny=[{"name": "quarantine", "claims": {"groups": "quarantine"}}],
                      url=idp.issuer_url)
    credentials, whoami, sts = asyncio.run(ask(idp, source, OVERAGE))
    detail = sentence(credentials)
    assert detail.startswith(
        "The ccweb deny list, checked before every rule, reads the claim \"groups\", but your token (subject 'u-ovr' "
        "of issuer 'corp') carries Entra ID's groups overage marker"), detail
    assert THE_FIX in detail and "quarantine" not in detail, "the entry's name and value are not the person's to see"
    assert sts.requests == []
    body = whoami.json()
    assert body["rules"] == [] and body["suspended"] is None
    assert body["refused"] == detail
    listed, _, _ = asyncio.run(ask(idp, source, {**OVERAGE, "groups": ["engineering"]}))
    assert listed.status_code == 200, "a token that carries its groups is decided on them"


def test_a_pointer_into_a_distributed_claim_names_it(idp: DevIssuer) -> None:
    source = compiled(rule("members", {"/memberships/teams": "app"}), url=idp.issuer_url)
    credentials, _, _ = asyncio.run(ask(idp, source, {"sub": "u-d", "_claim_names": {"memberships": "src1"}}))
    assert sentence(credentials) == (
        "The ccweb rule 'members' reads the claim \"/memberships/teams\", but your token (subject 'u-d' of issuer "
        "'corp') names the claim \"memberships\" as distributed (_claim_names: to be fetched from elsewhere) instead "
        "of carrying it; ask your identity provider's administrators to put the claim in the token itself.")


def test_test_policy_expects_the_overage_as_denied_saying_why() -> None:
    entra = policy(rule("engineering", {"groups": "g-1"}))
    case = Case(name="olga, in too many groups", claims=OVERAGE, repository="app", expect="engineering")
    [line] = differences(entra, [case])
    assert line.startswith("cases[0] 'olga, in too many groups': expected engineering, got denied (rule "
                           "'engineering' reads the claim \"groups\", but the token carries Entra ID's groups overage")
    assert differences(entra, [case.model_copy(update={"expect": "denied"})]) == []


def test_a_later_deny_entry_that_suspends_says_so_though_an_earlier_one_cannot_be_told() -> None:
    guarded = policy(rule("everyone", {}), deny=[{"claims": {"groups": "quarantine"}},
                                                 {"name": "olga", "claims": {"email": "olga@example.com"},
                                                  "reason": "on leave"}])
    decision = guarded.decide("corp", OVERAGE, HERE)
    assert isinstance(decision, Suspended) and decision.entry.label == "olga"
    result = explain(guarded, {**OVERAGE, "iss": ISSUER}, "app", "us-east-1")
    assert result.decision == decision
    assert [step.outcome for step in result.deny] == ["does not apply", "applies"]
    assert result.deny[0].reasons == ("claim groups cannot be told: the token names groups as distributed "
                                      "(_claim_names) instead of carrying it",)
    other = explain(guarded, {**OVERAGE, "iss": ISSUER, "email": "ann@example.com"}, "app", "us-east-1")
    assert [step.outcome for step in other.deny] == ["cannot be told", "does not apply"]
    assert [step.outcome for step in other.rules] == ["not reached"]
