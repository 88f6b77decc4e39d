"""`ccweb test-policy`: a policy checked against a table of cases, as the service would decide them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ccweb.cli import main

ROLE = "arn:aws:iam::111122223333:role/ccweb-"
POLICY: dict[str, Any] = {
    "issuers": [{"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]},
                {"name": "ci", "issuer": "https://token.actions.githubusercontent.com", "audiences": ["ccweb"]}],
    "deny": [{"name": "offboarded", "issuer": "corp", "claims": {"email": "eve@example.com"}}],
    "rules": [
        {"name": "developers", "issuer": "corp", "claims": {"groups": "engineering"}, "role_arn": ROLE + "dev",
         "repositories": ["us-east-1/app-*", "docs"], "access": "write"},
        {"name": "ci-main", "issuer": "ci", "claims": {"repository": "acme/app"}, "role_arn": ROLE + "ci",
         "repositories": ["app-web"]},
    ],
}
ALICE = {"sub": "alice", "groups": ["engineering"], "email": "alice@example.com"}
HOLDING = [
    {"name": "alice writes app", "issuer": "corp", "claims": ALICE, "repository": "app-web", "expect": "developers"},
    {"name": "not in eu", "issuer": "corp", "claims": ALICE, "repository": "app-web", "region": "eu-west-1",
     "expect": "denied"},
    {"name": "eve is out", "issuer": "corp", "claims": {**ALICE, "email": "eve@example.com"}, "repository": "docs",
     "expect": "suspended"},
    {"name": "ci reads", "issuer": "ci", "claims": {"sub": "repo:acme/app", "repository": "acme/app"},
     "repository": "app-web", "expect": "ci-main"},
]


def run(tmp_path: Path, cases: Any, policy: dict[str, Any] = POLICY) -> int:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump(cases))
    return main(["test-policy", "--config", str(tmp_path / "policy.yaml"), str(tmp_path / "cases.yaml")])


def test_every_case_holds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, {"cases": HOLDING}) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "4 of 4 case(s) hold: the policy decides as expected"
    assert err == ""


def test_one_line_per_case_that_decides_otherwise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [*HOLDING,
             {"name": "alice in eu", "issuer": "corp", "claims": ALICE, "repository": "app-web", "region": "eu-west-1",
              "expect": "developers"},
             {"name": "eve writes", "issuer": "corp", "claims": {**ALICE, "email": "eve@example.com"},
              "repository": "docs", "expect": "developers"}]
    assert run(tmp_path, {"cases": cases}) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "cases[4] 'alice in eu': expected developers, got denied (no rule grants 'app-web' in eu-west-1)",
        "cases[5] 'eve writes': expected developers, got suspended (deny entry 'offboarded' suspends "
        "eve@example.com)",
    ]
    assert "4 of 6 case(s) hold" in err


def test_the_issuer_may_be_left_out_when_the_policy_has_one(tmp_path: Path) -> None:
    one = {**POLICY, "issuers": POLICY["issuers"][:1], "rules": POLICY["rules"][:1]}
    case = {"name": "alice", "claims": ALICE, "repository": "app-web", "expect": "developers"}
    assert run(tmp_path, {"cases": [case]}, one) == 0


@pytest.mark.parametrize(("cases", "message"), [
    pytest.param({"cases": [{**HOLDING[0], "expect": "admins"}]},
                 "cases[0].expect: 'admins' is no rule of the policy, nor 'denied', 'suspended' or 'unidentified'",
                 id="unknown-rule"),
    pytest.param({"cases": [{k: v for k, v in HOLDING[0].items() if k != "issuer"}]},
                 "cases[0].issuer: the policy has several issuers (corp, ci); name the token's", id="which-issuer"),
    pytest.param({"cases": [{**HOLDING[0], "issuer": "okta"}]}, "cases[0].issuer: no issuer is named 'okta'",
                 id="unknown-issuer"),
    pytest.param({"cases": [{**HOLDING[0], "region": "mars-1"}]}, "cases[0].region: String should match pattern",
                 id="bad-region"),
    pytest.param({"cases": [{**HOLDING[0], "repository": "a/b"}]}, "cases[0].repository: String should match",
                 id="bad-repository"),
    pytest.param({"cases": [{**HOLDING[0], "expected": "denied"}]}, "cases[0].expected: unknown key",
                 id="unknown-key"),
    pytest.param({"cases": []}, "cases: List should have at least 1 item", id="no-cases"),
    pytest.param({"cases": [{**HOLDING[0], "repository": ".."}]}, "cases[0].repository: '..' is not a repository",
                 id="dot-dot"),
    pytest.param({"cases": [{**HOLDING[0], "claims": {"groups": ["engineering"]}}]},
                 "cases[0].claims: a token's claims have a sub", id="no-sub"),
    pytest.param({"cases": [{**HOLDING[0], "claims": {**ALICE, "sub": 7}}]}, "cases[0].claims: a token's claims",
                 id="sub-not-a-string"),
    pytest.param(["not", "a", "mapping"], "(top level): the cases file must be a mapping", id="not-a-mapping"),
])
def test_a_bad_cases_file_is_refused_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    cases: Any, message: str) -> None:
    assert run(tmp_path, cases) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{tmp_path / 'cases.yaml'} is not valid:" in err
    assert message in err
    assert "Traceback" not in err


def test_a_bad_policy_is_refused_before_any_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = {**POLICY, "rules": [{**POLICY["rules"][0], "role_arn": "arn:aws:iam::1:role/x"}]}
    assert run(tmp_path, {"cases": HOLDING}, broken) == 2
    assert "rules[0].role_arn: not an IAM role ARN" in capsys.readouterr().err


def test_a_case_written_twice_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    (tmp_path / "cases.yaml").write_text("cases:\n  - name: a\n    expect: denied\n    expect: developers\n")
    assert main(["test-policy", "--config", str(tmp_path / "policy.yaml"), str(tmp_path / "cases.yaml")]) == 2
    assert "the key 'expect' is written twice in one mapping" in capsys.readouterr().err


def test_claims_nested_too_deeply_to_read_are_a_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    deep = "[" * 5000 + "]" * 5000
    (tmp_path / "cases.yaml").write_text(f"cases:\n  - name: a\n    claims: {{groups: {deep}}}\n    expect: denied\n")
    assert main(["test-policy", "--config", str(tmp_path / "policy.yaml"), str(tmp_path / "cases.yaml")]) == 2
    assert "the cases file nests lists or mappings too deeply to read" in capsys.readouterr().err


def test_an_unreadable_cases_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    assert main(["test-policy", "--config", str(tmp_path / "policy.yaml"), str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read the cases file" in capsys.readouterr().err


STAFF_RULE = {"name": "staff", "issuer": "corp", "claims": {"groups": "staff"}, "role_arn": ROLE + "staff",
              "repositories": ["handbook"], "source_identity": "employee_id"}
BOB = {"sub": "bob", "groups": ["staff"], "email": "bob@example.com"}


def test_a_token_without_the_rules_source_identity_claim_is_its_own_outcome(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = {**POLICY, "rules": [*POLICY["rules"], STAFF_RULE]}
    cases = [
        {"name": "bob without an employee id", "issuer": "corp", "claims": BOB, "repository": "handbook",
         "expect": "unidentified"},
        {"name": "bob with one", "issuer": "corp", "claims": {**BOB, "employee_id": 4711}, "repository": "handbook",
         "expect": "staff"},
        {"name": "carol has a list", "issuer": "corp", "claims": {**BOB, "sub": "carol", "employee_id": [1]},
         "repository": "handbook", "expect": "staff"},
    ]
    assert run(tmp_path, {"cases": cases}, policy) == 1
    assert capsys.readouterr().out.splitlines() == [
        "cases[2] 'carol has a list': expected staff, got unidentified (rule 'staff' takes the SourceIdentity from "
        'the claim "employee_id", which the token carries as a list, not as a non-empty string or an integer)',
    ]


def test_no_rule_may_be_named_as_the_new_outcome(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = {**POLICY, "rules": [*POLICY["rules"], {**STAFF_RULE, "name": "unidentified"}]}
    assert run(tmp_path, {"cases": HOLDING}, policy) == 2
    assert "rules[2].name: 'unidentified' is reserved for an outcome" in capsys.readouterr().err
