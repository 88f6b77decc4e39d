"""`ccweb explain`: the same decision as the service, and for each deny entry and rule the reason it did not apply."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ccweb.cli import main
from ccweb.config import parse_config
from ccweb.explain import ExplainError, explain, parse_claims, repository_target
from ccweb.iam import sts_name
from ccweb.policy import Granted, Repository, Suspended, Unidentified, compile_policy
from support import clean_env

ROLE = "arn:aws:iam::111122223333:role/ccweb-"
POLICY_DATA: dict[str, Any] = {
    "issuers": [
        {"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]},
        {"name": "ci", "issuer": "https://token.actions.githubusercontent.com", "audiences": ["ccweb"]},
    ],
    "deny": [
        {"name": "offboarded-eve", "issuer": "corp", "claims": {"email": "eve@example.com"},
         "reason": "account under review"},
        {"claims": {"sub": "repo:acme/leaked:ref:refs/heads/main"}},
    ],
    "rules": [
        {"name": "admins", "issuer": "corp", "claims": {"groups": "admins"}, "role_arn": ROLE + "admins",
         "repositories": ["*"], "access": "write"},
        {"name": "app-team", "issuer": "corp",
         "claims": {"groups": "app", "email": {"pattern": r".+@example\.com"}},
         "role_arn": ROLE + "app", "repositories": ["us-east-1/app-*", "docs"], "access": "write"},
        {"name": "verified", "issuer": "corp", "claims": {"email_verified": True, "level": 3},
         "role_arn": ROLE + "verified", "repositories": ["handbook"]},
        {"name": "ci-main", "issuer": "ci", "claims": {"repository": "acme/app"}, "role_arn": ROLE + "ci",
         "repositories": ["app-web"]},
        {"name": "releases", "issuer": "ci", "claims": {"repository": "acme/release"}, "role_arn": ROLE + "ci",
         "repositories": ["release"], "source_identity": "job_workflow_ref"},
    ],
}
POLICY = compile_policy(parse_config(POLICY_DATA))
CORP = {"iss": "https://login.example.com", "aud": "ccweb", "sub": "u1"}
CI = {"iss": "https://token.actions.githubusercontent.com", "aud": ["ccweb"],
      "sub": "repo:acme/app:ref:refs/heads/main"}

# (claims, repository, region, the deciding rule or deny entry, {step label: the reason that must be given})
CASES = [
    pytest.param({**CORP, "groups": ["app"], "email": "ann@example.com"}, "app-web", "us-east-1", "app-team",
                 {"rules[0] 'admins'": 'claim groups = ["app"]: no element equals "admins"',
                  "deny[0] 'offboarded-eve'": 'claim email = "ann@example.com", not equal to "eve@example.com"',
                  "deny[1]": "claim sub = \"u1\", not equal to"}, id="granted-after-an-earlier-rule"),
    pytest.param({**CORP, "groups": "admins"}, "x", "us-east-1", "admins",
                 {"deny[0] 'offboarded-eve'": "claim email is missing"}, id="first-rule"),
    pytest.param({**CORP, "groups": ["app"]}, "app-web", "us-east-1", None,
                 {"rules[1] 'app-team'": "claim email is missing"}, id="claim-missing"),
    pytest.param({**CORP, "groups": ["app"], "email": "ann@example.com.evil.net"}, "app-web", "us-east-1", None,
                 {"rules[1] 'app-team'": "does not match the pattern '.+@example\\.com' (the whole value must match)"},
                 id="pattern-does-not-match"),
    pytest.param({**CORP, "groups": ["app"], "email": ["a@evil.net"]}, "app-web", "us-east-1", None,
                 {"rules[1] 'app-team'": 'claim email = ["a@evil.net"]: no element matches the pattern'},
                 id="pattern-list-claim"),
    pytest.param({**CORP, "groups": ["app"], "email": 7}, "app-web", "us-east-1", None,
                 {"rules[1] 'app-team'": "claim email = 7 is an integer; the pattern '.+@example\\.com' matches "
                  "strings only"}, id="pattern-needs-a-string"),
    pytest.param({**CORP, "groups": ["app"], "email": "ann@example.com"}, "app-web", "eu-west-1", None,
                 {"rules[1] 'app-team'": "region eu-west-1 is not matched: 'app-web' matches 'us-east-1/app-*' "
                  "only in another region"}, id="region-not-matched"),
    pytest.param({**CORP, "groups": ["app"], "email": "ann@example.com"}, "billing", "us-east-1", None,
                 {"rules[1] 'app-team'": "repository 'billing' is not in its repositories ('us-east-1/app-*', "
                  "'docs')"}, id="repository-not-in-globs"),
    pytest.param({**CORP, "email_verified": "true", "level": 3}, "handbook", "us-east-1", None,
                 {"rules[2] 'verified'": 'claim email_verified = "true", not equal to true (a string, not a '
                  "boolean)"}, id="string-is-not-boolean"),
    pytest.param({**CORP, "email_verified": True, "level": 3}, "handbook", "us-east-1", "verified",
                 {}, id="boolean-and-integer"),
    pytest.param({**CORP, "groups": "app", "email": "ann@example.com"}, "app-web", "us-east-1", "app-team",
                 {"rules[3] 'ci-main'": "not reached"}, id="later-rules-not-reached"),
    pytest.param({**CI, "repository": "acme/app"}, "app-web", "us-east-1", "ci-main",
                 {"rules[0] 'admins'": "wrong issuer: the rule is for 'corp', the token is from 'ci'",
                  "deny[0] 'offboarded-eve'": "wrong issuer: the entry is for 'corp', the token is from 'ci'"},
                 id="wrong-issuer"),
    pytest.param({**CI, "repository": "acme/other"}, "app-web", "us-east-1", None,
                 {"rules[3] 'ci-main'": 'claim repository = "acme/other", not equal to "acme/app"'},
                 id="ci-other-repository"),
    pytest.param({**CORP, "email": "eve@example.com", "groups": "admins"}, "x", "us-east-1", "offboarded-eve",
                 {"deny[1]": "not reached", "rules[0] 'admins'": "not reached"}, id="deny-wins-over-rules"),
    pytest.param({**CI, "sub": "repo:acme/leaked:ref:refs/heads/main", "repository": "acme/app"}, "app-web",
                 "us-east-1", "deny[1]", {"deny[0] 'offboarded-eve'": "wrong issuer"}, id="deny-without-issuer"),
]


def step_text(result_lines: list[str], label: str) -> str:
    """The step's line and its reasons."""
    start = next(i for i, line in enumerate(result_lines) if line.startswith(f"  {label}:"))
    end = start + 1
    while end < len(result_lines) and result_lines[end].startswith("      - "):
        end += 1
    return "\n".join(result_lines[start:end])


@pytest.mark.parametrize(("claims", "repository", "region", "decides", "reasons"), CASES)
def test_explanations(claims: dict[str, Any], repository: str, region: str, decides: str | None,
                      reasons: dict[str, str]) -> None:
    result = explain(POLICY, claims, repository, region)
    assert result.issuer is not None
    decision = POLICY.decide(result.issuer.name, claims, Repository(repository, region))
    assert result.decision == decision, "explain decides as the service does"
    decided = (decision.entry.label if isinstance(decision, Suspended)
               else decision.rule.name if isinstance(decision, Granted) else None)
    assert decided == decides
    lines = result.lines()
    for label, reason in reasons.items():
        assert reason in step_text(lines, label)
    assert lines[-1].startswith("granted: " if isinstance(decision, Granted) else "denied: ")
    if isinstance(decision, Suspended):
        assert f"deny entry {decides!r} suspends" in lines[-1]
    for step in (*result.deny, *result.rules):
        assert bool(step.reasons) == (step.outcome == "does not apply"), step


@pytest.mark.parametrize(
    ("claims", "issuer", "refusal"),
    [
        pytest.param({"iss": "https://evil.example.com", "sub": "x"}, None,
                     "its iss \"https://evil.example.com\" is not a configured issuer", id="unknown-iss"),
        pytest.param({**CORP, "aud": "other"}, None, "its aud \"other\" has none of the audiences of 'corp': ccweb",
                     id="wrong-audience"),
        pytest.param({k: v for k, v in CORP.items() if k != "sub"}, None, "it has no sub", id="no-sub"),
        pytest.param({**CORP, "sub": 7}, None, "it has no sub, or one that is not a non-empty string",
                     id="sub-not-a-string"),
    ],
)
def test_tokens_the_service_refuses_before_any_rule(claims: dict[str, Any], issuer: str | None,
                                                    refusal: str) -> None:
    result = explain(POLICY, claims, "x", "us-east-1", issuer)
    assert not result.granted
    assert f"denied: the service refuses this token (401 invalid_token): {refusal}" in result.lines()[-1]


def test_issuer_named_on_the_command_line_needs_no_iss() -> None:
    result = explain(POLICY, {"sub": "u-1", "groups": "admins"}, "x", "us-east-1", "corp")
    assert isinstance(result.decision, Granted) and result.decision.rule.name == "admins"


@pytest.mark.parametrize(
    ("claims", "issuer", "message"),
    [
        pytest.param({"groups": "admins"}, None, "the claims have no 'iss'; name the issuer with --issuer (one of "
                     "'corp', 'ci')", id="no-iss"),
        pytest.param(CORP, "nobody", "--issuer: no issuer is named 'nobody'", id="unknown-issuer-name"),
        pytest.param(CORP, "ci", "--issuer ci: the claims' iss \"https://login.example.com\" is not that issuer's",
                     id="issuer-contradicts-iss"),
    ],
)
def test_bad_issuer_input(claims: dict[str, Any], issuer: str | None, message: str) -> None:
    with pytest.raises(ExplainError, match=message.replace("(", r"\(").replace(")", r"\)")):
        explain(POLICY, claims, "x", "us-east-1", issuer)


def test_claims_from_a_jwt_are_its_payload() -> None:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    token = f"{part({'alg': 'RS256'})}.{part(CORP)}.c2ln"
    assert parse_claims(token + "\n") == CORP


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("[1, 2]", "must be a JSON object", id="not-an-object"),
    pytest.param("{", "not JSON", id="not-json"),
    pytest.param('{"sub": ' + "[" * 100_000, "nest arrays or objects more than 64 deep", id="deeper-than-python-reads"),
    pytest.param('{"a": ' + "[" * 64 + "]" * 64 + "}", "more than 64 deep", id="deeper-than-any-token"),
])
def test_bad_claims(text: str, message: str) -> None:
    with pytest.raises(ExplainError, match=message):
        parse_claims(text)


@pytest.mark.parametrize(
    ("repo", "region", "expected"),
    [
        pytest.param("app-web", None, ("app-web", "us-east-1", True), id="default-region"),
        pytest.param("app-web", "eu-west-1", ("app-web", "eu-west-1", False), id="region"),
        pytest.param("https://git-codecommit.eu-west-1.amazonaws.com/v1/repos/docs", None,
                     ("docs", "eu-west-1", False), id="clone-url"),
    ],
)
def test_repository_target(repo: str, region: str | None, expected: tuple[str, str, bool]) -> None:
    assert repository_target(POLICY.config, repo, region) == expected


@pytest.mark.parametrize(
    ("repo", "region", "message"),
    [
        pytest.param("a/b", None, "--repo: 'a/b' is not a repository name", id="bad-name"),
        pytest.param("app", "mars-1", "--region: 'mars-1' is not an AWS region", id="bad-region"),
        pytest.param("https://git-codecommit.eu-west-1.amazonaws.com.evil.net/v1/repos/x", None,
                     "--repo: 'git-codecommit.eu-west-1.amazonaws.com.evil.net' is neither", id="lookalike-host"),
        pytest.param("https://git-codecommit.eu-west-1.amazonaws.com/v1/repos/x", "us-east-1",
                     "--region us-east-1 contradicts the URL", id="region-contradicts-url"),
        pytest.param("https://[abc/v1/repos/demo", None,
                     r"--repo: 'https://\[abc/v1/repos/demo' is not a clone URL: its host cannot be read",
                     id="url-with-an-unclosed-bracket"),
        pytest.param("https://git-codecommit.us-east-1.amazonaws.com\uff0fx/v1/repos/demo", None,
                     "--repo: .* is not a clone URL: its host cannot be read", id="url-with-a-full-width-slash"),
        pytest.param(".", None, r"--repo: '\.' is not a repository name", id="dot"),
        pytest.param("..", "eu-west-1", r"--repo: '\.\.' is not a repository name", id="dot-dot"),
        pytest.param("demo/", None, "--repo: 'demo/' is not a repository name", id="trailing-slash"),
        pytest.param("https://git-codecommit.eu-west-1.amazonaws.com/v1/repos/..", None,
                     r"--repo: '/v1/repos/\.\.' is not a CodeCommit repository path", id="dot-dot-in-a-url"),
    ],
)
def test_bad_repository(repo: str, region: str | None, message: str) -> None:
    with pytest.raises(ExplainError, match=message.replace("?", r"\?")):
        repository_target(POLICY.config, repo, region)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(json.dumps(POLICY_DATA), encoding="utf-8")  # JSON is YAML
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["explain", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_command_exits_0_when_granted(policy_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps({**CORP, "groups": "admins"}), encoding="utf-8")
    code, out, _ = run(capsys, "--config", str(policy_file), "--claims", str(claims), "--repo", "x")
    assert code == 0
    assert out.splitlines()[0].startswith("repository 'x' in us-east-1 (the default; choose with --region); "
                                          "token of issuer 'corp'")
    assert out.splitlines()[-1] == f"granted: rule 'admins' gives write access as {ROLE}admins, SourceIdentity u1"


def test_a_grant_names_the_source_identity_cloudtrail_will_show() -> None:
    subject = "repo:acme/app:ref:refs/heads/main"
    result = explain(POLICY, {**CI, "sub": subject, "repository": "acme/app"}, "app-web", "us-east-1")
    assert result.lines()[-1].endswith(f", SourceIdentity {sts_name(subject)}")
    assert sts_name(subject) != subject


@pytest.mark.parametrize(("extra", "says"), [
    ({}, 'which the token does not carry'),
    ({"job_workflow_ref": ["a", "b"]}, 'which the token carries as a list, not as a non-empty string or an integer'),
], ids=["missing", "a-list"])
def test_a_missing_source_identity_claim_is_the_denial_it_is_in_the_service(extra: dict[str, Any],
                                                                             says: str) -> None:
    claims = {**CI, "repository": "acme/release", **extra}
    result = explain(POLICY, claims, "release", "us-east-1")
    assert isinstance(result.decision, Unidentified)
    assert result.decision == POLICY.decide("ci", claims, Repository("release", "us-east-1"))
    assert not result.granted
    lines = result.lines()
    assert step_text(lines, "rules[4] 'releases'") == "  rules[4] 'releases': applies"
    assert lines[-1] == (f'denied: rule \'releases\' takes the SourceIdentity from the claim "job_workflow_ref", '
                         f"{says}; the service answers 403 access_denied")


def test_command_exits_1_when_the_source_identity_claim_is_missing(policy_file: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps({**CI, "repository": "acme/release"}), encoding="utf-8")
    code, out, _ = run(capsys, "--config", str(policy_file), "--claims", str(claims), "--repo", "release")
    assert code == 1
    assert 'from the claim "job_workflow_ref", which the token does not carry' in out.splitlines()[-1]


def test_command_exits_1_when_denied(policy_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps({**CORP, "email": "eve@example.com"}), encoding="utf-8")
    code, out, _ = run(capsys, "--config", str(policy_file), "--claims", str(claims), "--repo", "x",
                       "--region", "eu-west-1")
    assert code == 1
    assert "deny entry 'offboarded-eve' suspends this identity (account under review)" in out


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param("missing-claims", "--claims {tmp}/missing.json: cannot read: No such file or directory",
                     id="unreadable-claims"),
        pytest.param("bad-claims", "--claims {tmp}/claims.json: the claims must be a JSON object", id="bad-claims"),
        pytest.param("bad-config", "rules[0].role_arn: not an IAM role ARN", id="bad-config-names-the-key"),
        pytest.param("bad-repo", "--repo: 'no/such' is not a repository name", id="bad-repo"),
        pytest.param("bad-url", "--repo: 'https://[x/v1/repos/demo' is not a clone URL: its host cannot be read",
                     id="unparseable-url"),
        pytest.param("dot-dot", "--repo: '..' is not a repository name", id="dot-dot"),
    ],
)
def test_command_exits_2_on_bad_input(setup: str, message: str, policy_file: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text("[]" if setup == "bad-claims" else json.dumps(CORP), encoding="utf-8")
    if setup == "missing-claims":
        claims = tmp_path / "missing.json"
    if setup == "bad-config":
        broken = json.loads(json.dumps(POLICY_DATA))
        broken["rules"][0]["role_arn"] = "arn:aws:iam::1:user/x"
        policy_file.write_text(json.dumps(broken), encoding="utf-8")
    repo = {"bad-repo": "no/such", "bad-url": "https://[x/v1/repos/demo", "dot-dot": ".."}.get(setup, "x")
    code, out, err = run(capsys, "--config", str(policy_file), "--claims", str(claims), "--repo", repo)
    assert code == 2
    assert out == ""
    assert message.format(tmp=tmp_path) in err


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("claims", [
    pytest.param('{"sub": ' + "[" * 100_000, id="nested-past-what-python-reads"),
    pytest.param('{"iss": "https://login.example.com", "sub": "u", "groups": ' + "[" * 990 + "]" * 990 + "}",
                 id="read-but-too-deep-to-show"),
    pytest.param(b64url("{}") + "." + b64url('{"sub": ' + "[" * 100_000) + ".c2ln", id="in-a-jwt"),
])
def test_the_command_says_claims_nested_too_deeply_in_a_sentence(policy_file: Path, claims: str) -> None:
    """A pasted "token" nested thousands deep (or deep enough that showing a claim would recurse past Python's
    limit): one ``ccweb explain:`` sentence and exit 2, as for any other bad input, never a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "ccweb", "explain", "--config", str(policy_file), "--claims", "-", "--repo", "x"],
        input=claims, capture_output=True, text=True, timeout=60, env=clean_env(), check=False)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == ("ccweb explain: --claims -: the claims nest arrays or objects more than 64 deep; "
                             "no token does\n")


@pytest.mark.parametrize("source", ["-", "file"])
def test_the_command_refuses_claims_larger_than_any_token_s(policy_file: Path, tmp_path: Path, source: str) -> None:
    """A runaway pipe or a wrong file: read up to a bound, then one sentence and exit 2 (stdin is not read whole)."""
    huge = '{"sub": "u", "pad": "' + "x" * (2 << 20) + '"}'
    path = tmp_path / "claims.json"
    path.write_text(huge, encoding="utf-8")
    claims = "-" if source == "-" else str(path)
    result = subprocess.run(
        [sys.executable, "-m", "ccweb", "explain", "--config", str(policy_file), "--claims", claims, "--repo", "x"],
        input=huge if source == "-" else "", capture_output=True, text=True, timeout=60, env=clean_env(), check=False)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == f"ccweb explain: --claims {claims}: larger than 1048576 characters; no token's claims are\n"
