"""The decision core: first match in file order, claim conditions, repository globs, identities, session policies,
the deny list first, what a grant asks STS for, and the refusal when a rule's ``source_identity`` claim is
missing (the names themselves: test_iam.py)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from ccweb.config import parse_config
from ccweb.iam import sts_name
from ccweb.policy import Entitled, Granted, NoRule, Policy, Repository, Suspended, Unidentified, compile_policy

ACCOUNT = "111122223333"


def config(*rules: dict[str, Any], deny: list[dict[str, Any]] | None = None) -> Policy:
    return compile_policy(parse_config({
        "issuers": [{"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]},
                    {"name": "ci", "issuer": "https://token.actions.githubusercontent.com", "audiences": ["ccweb"]}],
        "deny": deny or [],
        "rules": [{"issuer": "corp", "role_arn": f"arn:aws:iam::{ACCOUNT}:role/r", "repositories": ["*"],
                   **rule} for rule in rules],
    }))


POLICY = config(
    {"name": "admins", "claims": {"groups": "admins"}, "access": "write"},
    {"name": "app-team", "claims": {"groups": "app", "email": {"pattern": r"[a-z]+@example\.com"}},
     "repositories": ["us-east-1/app-*", "shared-?"], "access": "write"},
    {"name": "verified-readers", "claims": {"email_verified": True, "level": 3}, "repositories": ["docs"]},
    {"name": "ci-main", "issuer": "ci", "claims": {"repository": "acme/app", "ref": "refs/heads/main"},
     "repositories": ["app-web"], "access": "write", "source_identity": "job_workflow_ref"},
)

CASES = [
    pytest.param("corp", {"groups": ["staff", "admins"]}, "anything", "eu-west-1", "admins", id="list-claim-any"),
    pytest.param("corp", {"groups": "admins"}, "x", "us-east-1", "admins", id="string-claim"),
    pytest.param("corp", {"groups": ["admins", "app"], "email": "a@example.com"}, "app-web", "us-east-1", "admins",
                 id="first-match-wins"),
    pytest.param("corp", {"groups": ["app"], "email": "ann@example.com"}, "app-web", "us-east-1", "app-team",
                 id="pattern-and-group"),
    pytest.param("corp", {"groups": ["app"], "email": "ann@example.com"}, "app-web", "eu-west-1", None,
                 id="glob-region-limits"),
    pytest.param("corp", {"groups": ["app"], "email": "ann@example.com"}, "shared-1", "eu-west-1", "app-team",
                 id="glob-question-mark"),
    pytest.param("corp", {"groups": ["app"], "email": "ann@example.com"}, "shared-10", "eu-west-1", None,
                 id="question-mark-is-one-character"),
    pytest.param("corp", {"groups": ["app"], "email": "ann@example.com.evil.net"}, "app-web", "us-east-1", None,
                 id="pattern-is-full-match"),
    pytest.param("corp", {"groups": ["app"], "email": "x-ann@example.com"}, "app-web", "us-east-1", None,
                 id="pattern-is-anchored-at-start"),
    pytest.param("corp", {"groups": ["app"]}, "app-web", "us-east-1", None, id="missing-claim-never-matches"),
    pytest.param("corp", {"groups": "Admins"}, "x", "us-east-1", None, id="case-sensitive"),
    pytest.param("corp", {"groups": ["admin"]}, "x", "us-east-1", None, id="no-substring-match"),
    pytest.param("corp", {"email_verified": True, "level": 3}, "docs", "us-east-1", "verified-readers",
                 id="boolean-and-integer"),
    pytest.param("corp", {"email_verified": "true", "level": 3}, "docs", "us-east-1", None,
                 id="string-true-is-not-true"),
    pytest.param("corp", {"email_verified": True, "level": True}, "docs", "us-east-1", None,
                 id="true-is-not-one"),
    pytest.param("corp", {"email_verified": True, "level": "3"}, "docs", "us-east-1", None,
                 id="string-three-is-not-three"),
    pytest.param("corp", {"email_verified": True, "level": 3}, "Docs", "us-east-1", None, id="names-case-sensitive"),
    pytest.param("ci", {"repository": "acme/app", "ref": "refs/heads/main", "job_workflow_ref": "acme/app/ci.yml@main"},
                 "app-web", "us-east-1", "ci-main", id="ci-rule"),
    pytest.param("corp", {"repository": "acme/app", "ref": "refs/heads/main"}, "app-web", "us-east-1", None,
                 id="other-issuer-never-matches"),
    pytest.param("ci", {"groups": "admins"}, "app-web", "us-east-1", None, id="claims-of-wrong-issuer"),
    pytest.param("ci", {"repository": "acme/app", "ref": "refs/heads/feature"}, "app-web", "us-east-1", None,
                 id="every-condition-must-hold"),
]


@pytest.mark.parametrize(("issuer", "claims", "repository", "region", "rule"), CASES)
def test_decide(issuer: str, claims: dict[str, Any], repository: str, region: str, rule: str | None) -> None:
    decision = POLICY.decide(issuer, {"sub": "s", **claims}, Repository(repository, region))
    assert (decision.rule.name if isinstance(decision, Granted) else None) == rule
    assert isinstance(decision, Granted if rule else NoRule)


def test_without_a_repository_every_matching_rule_in_order() -> None:
    claims = {"sub": "s", "groups": ["admins", "app"], "email": "ann@example.com"}
    decision = POLICY.decide("corp", claims, None)
    assert isinstance(decision, Entitled)
    assert [r.name for r in decision.rules] == ["admins", "app-team"]
    assert isinstance(POLICY.decide("corp", {"sub": "s", "groups": ["staff"]}, None), NoRule)


def test_a_grant_carries_the_assume_role_request_and_the_session_key() -> None:
    claims = {"sub": "repo:acme/app:ref:refs/heads/main", "repository": "acme/app", "ref": "refs/heads/main",
              "job_workflow_ref": "acme/app/.github/workflows/ci.yml@main"}
    decision = POLICY.decide("ci", claims, Repository("app-web", "eu-west-1"))
    assert isinstance(decision, Granted)
    rule = decision.rule
    assert decision.identity == "acme/app/.github/workflows/ci.yml@main"
    assert decision.source_identity == sts_name(decision.identity)
    assert decision.request.role_arn == rule.role_arn == f"arn:aws:iam::{ACCOUNT}:role/r"
    assert decision.request.session_name == decision.request.source_identity == decision.source_identity
    assert decision.request.duration_seconds == 3600
    assert json.loads(decision.request.policy)["Statement"][0]["Resource"] == [
        f"arn:aws:codecommit:*:{ACCOUNT}:app-web"]
    assert decision.session_key == (rule.session_key, "ci", decision.identity, "")  # no session tags
    assert (decision.request.tags, decision.request.transitive_tag_keys) == ((), ())
    assert rule.session_key.startswith("ci-main#")


def test_the_session_key_changes_with_the_rule_its_issuer_and_its_duration() -> None:
    base: dict[str, Any] = {"name": "r", "claims": {"groups": "g"}}
    variants: list[tuple[list[str], dict[str, Any]]] = [
        (["ccweb"], {}), (["ccweb", "other"], {}), (["ccweb"], {"access": "write"}),
        (["ccweb"], {"session_duration": 900}),
    ]
    keys = {
        compile_policy(parse_config({
            "issuers": [{"name": "corp", "issuer": "https://login.example.com", "audiences": audiences}],
            "rules": [{"issuer": "corp", "role_arn": f"arn:aws:iam::{ACCOUNT}:role/r", "repositories": ["*"],
                       **base, **extra}],
        })).rules[0].session_key
        for audiences, extra in variants
    }
    assert len(keys) == 4


DENY = [{"name": "eve", "issuer": "corp", "claims": {"email": "eve@example.com"}, "reason": "left"}]


@pytest.mark.parametrize("where", [Repository("app", "us-east-1"), None], ids=["a-repository", "every-repository"])
def test_the_deny_list_comes_first_in_every_decision(where: Repository | None) -> None:
    policy = config({"name": "everyone", "access": "write"}, deny=DENY)
    decision = policy.decide("corp", {"sub": "u-eve", "email": "eve@example.com"}, where)
    assert isinstance(decision, Suspended)
    assert (decision.entry.label, decision.entry.reason, decision.identity) == ("eve", "left", "eve@example.com")
    assert not isinstance(policy.decide("corp", {"sub": "u-ann", "email": "ann@example.com"}, where), Suspended)


def test_the_compiled_policy_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.rules = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.rules[0].role_arn = "arn:aws:iam::999999999999:role/x"  # type: ignore[misc]


WORKFLOW = {"job_workflow_ref": "acme/app/.github/workflows/ci.yml@main"}


@pytest.mark.parametrize(("rule_index", "claims", "identity"), [
    (0, {"sub": "u-1", "email": "ann@example.com"}, "ann@example.com"),
    (0, {"sub": "u-1"}, "u-1"),
    (0, {"sub": "u-1", "email": 7}, "u-1"),
    (0, {"sub": "u-1", "email": ""}, "u-1"),
    (0, {"sub": "u-1", "email": "ann@example.com", "email_verified": True}, "ann@example.com"),
    (0, {"sub": "u-1", "email": "ann@example.com", "email_verified": "true"}, "ann@example.com"),
    (0, {"sub": "u-1", "email": "ann@example.com", "email_verified": False}, "u-1"),
    (0, {"sub": "u-1", "email": "ann@example.com", "email_verified": "false"}, "u-1"),
    (0, {"sub": "u-1", "email": "ann@example.com", "email_verified": "False"}, "u-1"),
    (0, {"sub": "u-1", "email": "ann@example.com", "email_verified": None}, "u-1"),
    (3, {"sub": "repo:acme/app:ref:refs/heads/main", **WORKFLOW}, "acme/app/.github/workflows/ci.yml@main"),
    (3, {"sub": "u-1", "job_workflow_ref": 1234}, "1234"),
    (3, {"sub": "u-1", "email": "ann@example.com", "email_verified": False, **WORKFLOW},
     "acme/app/.github/workflows/ci.yml@main"),
], ids=["email", "sub-without-email", "non-string-email", "empty-email", "verified", "verified-as-string",
        "unverified", "unverified-as-string", "unverified-capitalised", "verified-null", "rule-claim",
        "rule-claim-integer", "rule-claim-whatever-the-email"])
def test_identity(rule_index: int, claims: dict[str, Any], identity: str) -> None:
    assert POLICY.rules[rule_index].identity(claims) == identity


def test_an_unverified_email_never_names_anyone_in_any_decision() -> None:
    claims = {"sub": "u-mallory", "email": "ann@example.com", "email_verified": False, "groups": "admins"}
    granted = POLICY.decide("corp", claims, Repository("app", "us-east-1"))
    assert isinstance(granted, Granted)
    assert (granted.identity, granted.source_identity) == ("u-mallory", sts_name("u-mallory"))
    assert granted.session_key[2] == "u-mallory"
    entitled = POLICY.decide("corp", claims, None)
    assert isinstance(entitled, Entitled)
    assert entitled.identity == "u-mallory"
    refused = POLICY.decide("corp", {**claims, "groups": []}, Repository("app", "us-east-1"))
    assert isinstance(refused, NoRule)
    assert refused.identity == "u-mallory"


def test_the_deny_list_still_matches_an_unverified_email() -> None:
    policy = config({"name": "everyone"}, deny=DENY)
    decision = policy.decide("corp", {"sub": "u-eve", "email": "eve@example.com", "email_verified": False},
                             Repository("app", "us-east-1"))
    assert isinstance(decision, Suspended)
    assert decision.identity == "u-eve"


CI_REQUEST = {"sub": "repo:acme/app:ref:refs/heads/main", "repository": "acme/app", "ref": "refs/heads/main",
              "email": "ci@example.com"}


@pytest.mark.parametrize(("value", "held"), [
    (None, None), ("", "an empty string"), ("  ", "a string with no visible character"),
    ("\u200b\u3000\t", "a string with no visible character"), (["a", "b"], "a list"),
    ({"a": 1}, "an object"), (True, "a boolean"), (1.5, "a decimal number"),
], ids=["missing", "empty", "blank", "invisible", "list", "object", "boolean", "float"])
def test_a_rules_source_identity_claim_that_names_no_one_refuses_without_a_fallback(value: object,
                                                                                     held: str | None) -> None:
    claims = CI_REQUEST if value is None else {**CI_REQUEST, "job_workflow_ref": value}
    decision = POLICY.decide("ci", claims, Repository("app-web", "us-east-1"))
    assert isinstance(decision, Unidentified)
    assert (decision.rule.name, decision.claim, decision.held) == ("ci-main", "job_workflow_ref", held)
    assert decision.identity == "ci@example.com", "who was refused, for the audit line"
    assert 'takes the SourceIdentity from the claim "job_workflow_ref", which the token ' in decision.sentence(
        "the token")


def test_a_rule_that_does_not_cover_the_repository_needs_no_source_identity_claim() -> None:
    decision = POLICY.decide("ci", CI_REQUEST, Repository("other", "us-east-1"))
    assert isinstance(decision, NoRule)
    entitled = POLICY.decide("ci", CI_REQUEST, None)
    assert isinstance(entitled, Entitled)
    assert ([r.name for r in entitled.rules], entitled.identity) == (["ci-main"], "ci@example.com")


def test_distinct_subjects_get_distinct_source_identities_in_the_request() -> None:
    policy = config({"name": "everyone", "source_identity": "sub"})
    subjects = ["repo:acme/app:ref:refs/heads/release/1.0", "repo:acme/app:ref:refs/heads/release-1.0",
                "jörg@example.com", "j-rg@example.com", "a" * 64 + "1", "a" * 64 + "2"]
    requests = []
    for subject in subjects:
        decision = policy.decide("corp", {"sub": subject}, Repository("app", "us-east-1"))
        assert isinstance(decision, Granted)
        requests.append(decision.request)
    assert len({r.source_identity for r in requests}) == len(subjects)
    assert all(r.session_name == r.source_identity for r in requests)


def statement(rule_name: str, policy: Policy = POLICY) -> dict[str, Any]:
    rule = policy.rule_named(rule_name)
    assert rule is not None
    document = json.loads(rule.session_policy)
    assert len(document["Statement"]) == 1
    return dict(document["Statement"][0])


def test_read_rule_session_policy_allows_only_pull() -> None:
    assert statement("verified-readers") == {
        "Effect": "Allow", "Action": ["codecommit:GitPull"],
        "Resource": [f"arn:aws:codecommit:*:{ACCOUNT}:docs"],
    }


def test_write_rule_session_policy_adds_push_and_keeps_regions_and_account() -> None:
    found = statement("app-team")
    assert found["Action"] == ["codecommit:GitPull", "codecommit:GitPush"]
    assert found["Resource"] == [f"arn:aws:codecommit:*:{ACCOUNT}:shared-?",
                                 f"arn:aws:codecommit:us-east-1:{ACCOUNT}:app-*"]


def test_session_policy_follows_the_role_partition() -> None:
    china = compile_policy(parse_config({
        "issuers": [{"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]}],
        "rules": [{"name": "cn", "issuer": "corp", "role_arn": f"arn:aws-cn:iam::{ACCOUNT}:role/r",
                   "repositories": ["cn-north-1/*"]}],
    }))
    assert statement("cn", china)["Resource"] == [f"arn:aws-cn:codecommit:cn-north-1:{ACCOUNT}:*"]
