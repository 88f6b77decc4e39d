"""`ccweb test-policy` through the installed console script, as a CI job runs it: its exit code is the gate.

0 when every case holds, 1 when one decides otherwise (a line per case on stdout), 2 when the policy or the
cases file is invalid (nothing on stdout, each problem on stderr). The overlays' own tables are run the same
way in tests/deploy/test_policy_gate.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CCWEB = Path(sys.executable).parent / "ccweb"
RULE = {"name": "developers", "issuer": "corp", "claims": {"groups": "engineering"},
        "role_arn": "arn:aws:iam::111122223333:role/ccweb/developers", "repositories": ["app"]}
POLICY = {
    "issuers": [{"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]}],
    "rules": [RULE],
}
ALICE = {"name": "alice reads app", "claims": {"sub": "alice", "groups": ["engineering"]}, "repository": "app",
         "expect": "developers"}
BOB = {"name": "bob reads nothing", "claims": {"sub": "bob", "groups": ["sales"]}, "repository": "app",
       "expect": "denied"}


def gate(tmp_path: Path, cases: object, policy: object = POLICY) -> subprocess.CompletedProcess[str]:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump(cases), encoding="utf-8")
    return subprocess.run([str(CCWEB), "test-policy", "--config", "policy.yaml", "cases.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_table_that_holds_exits_0(tmp_path: Path) -> None:
    result = gate(tmp_path, {"cases": [ALICE, BOB]})
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "2 of 2 case(s) hold: the policy decides as expected\n", "")


def test_a_case_that_decides_otherwise_exits_1_naming_it(tmp_path: Path) -> None:
    result = gate(tmp_path, {"cases": [ALICE, {**BOB, "expect": "developers"}]})
    assert result.returncode == 1
    assert result.stdout == ("cases[1] 'bob reads nothing': expected developers, got denied "
                             "(no rule grants 'app' in us-east-1)\n")
    assert result.stderr == "ccweb test-policy: 1 of 2 case(s) hold\n"


@pytest.mark.parametrize(("cases", "policy", "problem"), [
    pytest.param({"cases": [{**ALICE, "expect": "admins"}]}, POLICY, "cases[0].expect: 'admins' is no rule",
                 id="unknown-rule"),
    pytest.param({"cases": [{**ALICE, "claims": {"groups": ["engineering"]}}]}, POLICY, "cases[0].claims: ",
                 id="no-sub"),
    pytest.param(["not", "a", "table"], POLICY, "the cases file must be a mapping", id="not-a-mapping"),
    pytest.param({"cases": [ALICE]}, {**POLICY, "rules": [{**RULE, "access": "push"}]}, "rules[0].access: ",
                 id="invalid-policy"),
])
def test_an_invalid_file_exits_2_naming_the_problem(tmp_path: Path, cases: object, policy: object,
                                                    problem: str) -> None:
    result = gate(tmp_path, cases, policy)
    assert result.returncode == 2
    assert result.stdout == ""
    assert problem in result.stderr
