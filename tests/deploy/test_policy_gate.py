"""The policy gate (docs/ci.md#policy-gate), as CI runs it on a policy change.

- each overlay's policy-cases.yaml holds through the real ``ccweb test-policy`` (exit 0); one expectation flipped
  fails with one line naming the case (exit 1); an invalid cases file is refused (exit 2);
- the cases cover what issue 16 found: a token of Okta's org authorization server as Okta issues it, a GitLab
  project in a subgroup granted and a lookalike group denied, a GitHub job of another repository of the same
  organization denied, every deny entry suspending; every rule is expected somewhere, and each case's token is
  one the policy's issuer accepts (its iss and aud);
- deploy/ci's GitHub Actions workflow and GitLab CI job validate against GitHub's and GitLab's schemas
  (check-jsonschema's vendored copies, offline), pin their actions by commit, cover every overlay, and the
  ``ccweb`` commands they run pass against this repository's overlays.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccweb.config import Config, parse_config

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(d for d in (ROOT / "deploy" / "kubernetes" / "overlays").iterdir() if d.is_dir())
GITHUB = ROOT / "deploy" / "ci" / "github-actions-policy-gate.yml"
GITLAB = ROOT / "deploy" / "ci" / "gitlab-policy-gate.gitlab-ci.yml"
BIN = Path(sys.executable).parent
ORG_SERVER = re.compile(r"https://[A-Za-z0-9-]+\.(okta|oktapreview|okta-emea)\.com/?")


def run(command: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120,
                          check=False)


def ccweb(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "ccweb"), *args], cwd)


def cases(overlay: Path) -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = yaml.safe_load((overlay / "policy-cases.yaml").read_text(encoding="utf-8"))["cases"]
    return table


def config(overlay: Path) -> Config:
    return parse_config(yaml.safe_load((overlay / "policy.yaml").read_text(encoding="utf-8")))


ids = [o.name for o in OVERLAYS]


# -- each overlay's cases, through the console script -------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_the_overlays_cases_hold(overlay: Path) -> None:
    result = ccweb("test-policy", "--config", "policy.yaml", "policy-cases.yaml", cwd=overlay)
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(cases(overlay))
    assert result.stdout.splitlines() == [f"{count} of {count} case(s) hold: the policy decides as expected"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_one_flipped_expectation_fails_naming_the_case(overlay: Path, tmp_path: Path) -> None:
    table = cases(overlay)
    index = next(i for i, case in enumerate(table) if case["expect"] == "denied")  # a job that must get nothing
    wrong = next(rule.name for rule in config(overlay).rules)
    table[index]["expect"] = wrong
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump({"cases": table}), encoding="utf-8")
    result = ccweb("test-policy", "--config", str(overlay / "policy.yaml"), str(tmp_path / "cases.yaml"))
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"cases[{index}] {table[index]['name']!r}: expected {wrong}, got denied (")
    assert f"{len(table) - 1} of {len(table)} case(s) hold" in result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_an_invalid_cases_file_is_refused(overlay: Path, tmp_path: Path) -> None:
    table = cases(overlay)
    table[1]["expect"] = "admins"  # a rule the policy does not have: a typo in a rule's name, or a removed rule
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump({"cases": table}), encoding="utf-8")
    result = ccweb("test-policy", "--config", str(overlay / "policy.yaml"), str(tmp_path / "cases.yaml"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "  cases[1].expect: 'admins' is no rule of the policy" in result.stderr.splitlines()[1]


# -- what the cases cover -----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_each_case_is_a_token_its_issuer_accepts(overlay: Path) -> None:
    issuers = {issuer.name: issuer for issuer in config(overlay).issuers}
    for case in cases(overlay):
        issuer, claims = issuers[case["issuer"]], case["claims"]
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        assert claims["iss"] == issuer.issuer, case["name"]
        assert set(audiences) & set(issuer.audiences), case["name"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_every_rule_and_deny_entry_is_exercised(overlay: Path) -> None:
    policy = config(overlay)
    expected = {case["expect"] for case in cases(overlay)}
    assert {rule.name for rule in policy.rules} <= expected
    assert "denied" in expected
    assert ("suspended" in expected) == bool(policy.deny)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_an_okta_org_server_token_as_okta_issues_it(overlay: Path) -> None:
    policy = config(overlay)
    org = {i.name: i for i in policy.issuers if ORG_SERVER.fullmatch(i.issuer)}
    groups_rules = {r.name for r in policy.rules if r.issuer in org and "groups" in r.claims}
    granted = [c for c in cases(overlay) if c["issuer"] in org and c["expect"] in groups_rules]
    assert granted, "a person granted by a rule on groups at Okta's org server"
    claims = granted[0]["claims"]
    login = org[granted[0]["issuer"]].login
    assert login is not None and claims["aud"] == login.client_id, "an ID token's aud is the client id"
    assert re.fullmatch(r"00u[A-Za-z0-9]{17}", claims["sub"]), "Okta's user ids: 00u and 17 more"
    assert claims["ver"] == 1 and isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
    assert isinstance(claims["groups"], list) and isinstance(claims["email_verified"], bool)
    without = [c for c in cases(overlay) if c["issuer"] in org and "groups" not in c["claims"]]
    assert {c["expect"] for c in without} == {"denied"}, "a token without groups (no groups scope) gets nothing"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_a_gitlab_subgroup_is_granted_and_a_lookalike_group_denied(overlay: Path) -> None:
    gitlab = [c for c in cases(overlay) if c["claims"]["iss"] == "https://gitlab.com"]
    subgroup = [c for c in gitlab if "/" in c["claims"]["namespace_path"] and c["expect"] != "denied"]
    assert subgroup, "a project in a subgroup, granted"
    group = subgroup[0]["claims"]["namespace_path"].partition("/")[0]
    lookalike = [c for c in gitlab if c["claims"]["namespace_path"].startswith(f"{group}-")]
    assert lookalike and {c["expect"] for c in lookalike} == {"denied"}
    assert all(isinstance(c["claims"].get("project_id", ""), str) for c in gitlab), "GitLab's IDs are strings"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_a_github_job_of_another_repository_of_the_org_is_denied(overlay: Path) -> None:
    github = [c["claims"] | {"expect": c["expect"]} for c in cases(overlay)
              if c["claims"]["iss"] == "https://token.actions.githubusercontent.com"]
    granted = [c for c in github if c["expect"] != "denied"]
    assert granted and all(isinstance(c["repository_owner_id"], str) for c in github), "GitHub's IDs are strings"
    owner, repository = granted[0]["repository_owner_id"], granted[0]["repository_id"]
    others = [c for c in github if c["repository_owner_id"] == owner and c["repository_id"] != repository]
    assert others and {c["expect"] for c in others} == {"denied"}


# -- deploy/ci: the examples, against the platforms' schemas and this repository ------------------------------


@pytest.mark.parametrize(("path", "schema"), [(GITHUB, "vendor.github-workflows"), (GITLAB, "vendor.gitlab-ci")],
                         ids=["github", "gitlab"])
def test_the_example_validates_against_its_platforms_schema(path: Path, schema: str, tmp_path: Path) -> None:
    result = run([str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / path.name  # the same file with a key misspelt: the check can fail
    broken.write_text(path.read_text(encoding="utf-8").replace("runs-on:", "runs_on:").replace(
        "  script:", "  scripts:"), encoding="utf-8")
    assert run([str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(broken)]).returncode == 1


def github_workflow() -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load(GITHUB.read_text(encoding="utf-8"))
    return workflow


def gitlab_job() -> dict[str, Any]:
    job: dict[str, Any] = yaml.safe_load(GITLAB.read_text(encoding="utf-8"))["ccweb-policy-gate"]
    return job


def test_the_github_workflow_pins_its_actions_by_commit_and_reads_only() -> None:
    (job,) = github_workflow()["jobs"].values()
    uses = [step["uses"] for step in job["steps"] if "uses" in step]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses)
    text = GITHUB.read_text(encoding="utf-8")
    assert all(re.search(rf"{re.escape(u)}  # v\d+\.\d+\.\d+$", text, re.MULTILINE) for u in uses), "the version"
    assert github_workflow()["permissions"] == {"contents": "read"}, "no id-token: the gate needs no access"


def test_the_examples_install_the_ccweb_this_repository_is() -> None:
    pins = re.findall(r'"ccweb-service==([^"]+)"', GITHUB.read_text(encoding="utf-8") + GITLAB.read_text(
        encoding="utf-8"))
    assert pins and set(pins) == {version("ccweb-service")}


def gate_commands() -> list[tuple[str, str, str]]:
    """(platform, overlay directory, command) for each ccweb command each example runs, per overlay of its
    matrix, the directory as the job's OVERLAY variable names it."""
    (job,) = github_workflow()["jobs"].values()
    template = job["env"]["OVERLAY"]
    runs = [step["run"] for step in job["steps"] if step.get("run", "").startswith("ccweb ")]
    found = [("github", template.replace("${{ matrix.overlay }}", name), command)
             for name in job["strategy"]["matrix"]["overlay"] for command in runs]
    (matrix,) = gitlab_job()["parallel"]["matrix"]
    scripts = [line for line in gitlab_job()["script"] if line.startswith("ccweb ")]
    found += [("gitlab", directory, command) for directory in matrix["OVERLAY"] for command in scripts]
    return found


GATE = gate_commands()


def test_each_example_runs_both_checks_on_every_overlay() -> None:
    for platform in ("github", "gitlab"):
        mine = [(d, c) for p, d, c in GATE if p == platform]
        assert {d for d, _ in mine} == {str(o.relative_to(ROOT)) for o in OVERLAYS}, platform
        assert {c.split()[1] for _, c in mine} == {"check-config", "test-policy"}, platform


@pytest.mark.parametrize(("platform", "overlay", "command"), GATE, ids=[f"{p}:{o}:{c.split()[1]}" for p, o, c in GATE])
def test_the_examples_commands_pass_on_this_repository(platform: str, overlay: str, command: str) -> None:
    result = run(["bash", "-ec", command], env={"OVERLAY": overlay})
    assert result.returncode == 0, f"{platform}: {command}\n{result.stdout}{result.stderr}"
