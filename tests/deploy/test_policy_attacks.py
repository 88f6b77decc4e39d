"""Tokens an outsider, or an insider without review, can get from GitHub Actions or gitlab.com, against every CI
rule the example policies and the guides show: none of them may push, and the ones from outside may read nothing.

For each rule on GitHub's or gitlab.com's issuer (shared by every customer), the token the rule is written for is
made from its own conditions, then changed as an attacker could change it by choosing where the job runs:

- from outside (``FOREIGN``): another repository of the organization, a repository transferred out of it, an
  organization that took the name after a rename, a reusable workflow called from another repository, an
  environment named ``production`` in another repository; on gitlab.com a lookalike group (``acme-evil``,
  ``acmeX``, ``evil/acme``, another case, a trailing slash or newline) or another project. Nothing is granted;
- from inside without review (``UNREVIEWED``): a fork's pull request, ``pull_request_target`` (which runs on the
  base branch's ref), ``workflow_dispatch`` and ``workflow_run`` on main, a push to another branch or a tag with
  the environment named, an unprotected GitLab branch, a merge request's ref. No write is granted.

The cases each overlay's policy must decide are in its policy-cases.yaml (tests/deploy/test_policy_gate.py); these
are the attacks, applied to every rule at once, so that a rule added later is attacked too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from ccweb.config import parse_config
from ccweb.outcomes import Granted, Repository
from ccweb.policy import Policy, compile_policy

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
GITHUB = "https://token.actions.githubusercontent.com"
GITLAB = "https://gitlab.com"
Claims = dict[str, Any]
Attack = Callable[[Claims], Claims]


def policies() -> Iterator[tuple[str, str]]:
    """(where, YAML) of every example policy and every policy README.md and docs/*.md show."""
    for path in sorted((ROOT / "deploy" / "kubernetes").rglob("policy.yaml")):
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            if re.search(r"^issuers:", match.group(1), re.MULTILINE):
                yield f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}", match.group(1)


GROUP_PATTERN = re.compile(r"([\w.-]+)\(/\.\+\)\?")
"""The one pattern form the guides teach for a GitLab group and its subgroups: ``acme(/.+)?``."""


def sample(value: Any) -> Any:
    """A claim value a condition holds for: the value itself, or for a group pattern a subgroup of the group."""
    if isinstance(value, dict):
        group = GROUP_PATTERN.fullmatch(value["pattern"])
        assert group, f"no sample for the pattern {value['pattern']!r}: teach this test its form"
        return f"{group.group(1)}/platform"
    return value


def legitimate(rule: dict[str, Any]) -> Claims:
    """The token the rule is written for: its conditions, a sub, and the claims the attacks change."""
    claims = {key: sample(value) for key, value in rule.get("claims", {}).items()}
    identity = {rule["source_identity"]: "acme/app"} if "source_identity" in rule else {}
    return {"sub": "legitimate", **identity, **claims}


def repositories(rule: dict[str, Any], region: str) -> list[Repository]:
    """A repository each of the rule's globs covers."""
    found = []
    for glob in rule["repositories"]:
        where, _, name = glob.rpartition("/")
        found.append(Repository(name.replace("*", "x"), where.replace("*", "x") or region))
    return found


class Target(NamedTuple):
    """One rule attacked: where its policy is, the policy compiled, the rule's issuer name, and its region."""

    where: str
    policy: Policy
    issuer: str
    rule: dict[str, Any]
    region: str


def rules_on(issuer_url: str) -> list[Target]:
    """Every rule on ``issuer_url`` in every policy."""
    found = []
    for where, text in policies():
        data = yaml.safe_load(text)
        names = {issuer["name"] for issuer in data["issuers"] if issuer["issuer"].rstrip("/") == issuer_url}
        policy = compile_policy(parse_config(data))
        region = data.get("aws", {}).get("region", "us-east-1")
        found += [Target(where, policy, rule["issuer"], rule, region) for rule in data.get("rules", [])
                  if rule["issuer"] in names]
    return found


def changed(**claims: Any) -> Attack:
    return lambda token: {**token, **claims}


def without(*names: str) -> Attack:
    return lambda token: {key: value for key, value in token.items() if key not in names}


def gitlab_group(path: Callable[[str], str]) -> Attack:
    """The token's namespace_path (and project_path) replaced by ``path`` of the group's own path."""
    def attack(token: Claims) -> Claims:
        group = str(token.get("namespace_path", "acme/platform")).partition("/")[0]
        namespace = path(group)
        return {**token, "namespace_path": namespace, "project_path": f"{namespace}/app", "project_id": "99999901",
                "namespace_id": "99999902"}
    return attack


GITHUB_FOREIGN: dict[str, Attack] = {
    "another repository of the organization": changed(repository_id="999999001", repository="acme/website"),
    "a repository transferred out of the organization": changed(repository_owner_id="999999002"),
    "an organization that took the name after a rename": changed(repository_owner_id="999999003",
                                                                 repository_id="999999004"),
    "the reviewed reusable workflow called from another repository": changed(repository_id="999999005"),
    "an environment named production in another repository": changed(repository_id="999999006",
                                                                     environment="production"),
}
GITHUB_UNREVIEWED: dict[str, Attack] = {
    "a fork's pull request": changed(event_name="pull_request", ref="refs/pull/7/merge", head_ref="evil"),
    "pull_request_target (the base branch's ref, the fork's code)": changed(event_name="pull_request_target"),
    "workflow_dispatch on main": changed(event_name="workflow_dispatch"),
    "workflow_run on main": changed(event_name="workflow_run"),
    "a push to another branch naming the environment": changed(ref="refs/heads/evil"),
    "a tag naming the environment": changed(ref="refs/tags/v9.9.9", ref_type="tag"),
    "a job without the environment": without("environment"),
    "another environment": changed(environment="staging"),
}
GITHUB_UNREVIEWED_WORKFLOW: dict[str, Attack] = {  # for the rules that pin a reviewed (reusable) workflow
    "the repository's own workflow instead of the reviewed one": changed(
        job_workflow_ref="acme/app/.github/workflows/evil.yml@refs/heads/main"),
    "the reviewed workflow from another branch": lambda token: {
        **token, "job_workflow_ref": str(token["job_workflow_ref"]).rpartition("@")[0] + "@refs/heads/evil"},
}
GITLAB_FOREIGN: dict[str, Attack] = {
    "a lookalike group (-evil)": gitlab_group(lambda group: f"{group}-evil"),
    "a lookalike group (suffix)": gitlab_group(lambda group: f"{group}X"),
    "a lookalike subgroup": gitlab_group(lambda group: f"{group}-evil/platform"),
    "the group's name as another group's subgroup": gitlab_group(lambda group: f"evil/{group}"),
    "the group's name with another case": gitlab_group(lambda group: group.upper()),
    "the group's name with a trailing slash": gitlab_group(lambda group: f"{group}/"),
    "the group's name and a newline": gitlab_group(lambda group: f"{group}\n"),
    "another project, outside the group": changed(project_id="99999903", namespace_path="evil",
                                                   project_path="evil/app", namespace_id="99999904"),
}
GITLAB_UNREVIEWED: dict[str, Attack] = {
    "an unprotected branch": changed(ref="evil", ref_protected="false"),
    "a merge request's ref": changed(ref="refs/merge-requests/7/head", ref_protected="false",
                                     pipeline_source="merge_request_event"),
    "a protected branch other than main": changed(ref="release", ref_protected="true"),
    "a tag": changed(ref_type="tag", ref="v9.9.9"),
    "a job without the environment": without("environment", "deployment_tier", "environment_protected"),
    "another environment": changed(environment="review/evil", deployment_tier="development"),
}
GITLAB_UNPROTECTED_ENVIRONMENT: dict[str, Attack] = {  # for the rules that require a protected environment
    "the environment's protection removed": changed(environment_protected="false"),
    "a job without the environment": without("environment", "deployment_tier", "environment_protected"),
}


def attacks(issuer_url: str, table: dict[str, Attack], pinning: str | None = None) -> list[Any]:
    """The attacks of ``table`` on every rule on ``issuer_url`` (that pins the claim ``pinning``)."""
    return [pytest.param(target, attack, id=f"{target.where}:{target.rule['name']}:{name}")
            for target in rules_on(issuer_url)
            if pinning is None or pinning in target.rule["claims"] for name, attack in table.items()]


def decisions(target: Target, claims: Claims) -> list[Granted]:
    """What the policy grants the token, over the repositories of the rule attacked."""
    found = []
    for where in repositories(target.rule, target.region):
        decision = target.policy.decide(target.issuer, claims, where)
        if isinstance(decision, Granted):
            found.append(decision)
    return found


@pytest.mark.parametrize("issuer_url", [GITHUB, GITLAB])
def test_every_shared_issuer_rule_is_attacked(issuer_url: str) -> None:
    rules = rules_on(issuer_url)
    assert len(rules) >= 4, "the examples and guides show CI rules on this issuer"
    for target in rules:  # and the token the rule is written for gets it
        assert decisions(target, legitimate(target.rule)), \
            f"{target.where}: rule {target.rule['name']!r} grants nothing to the token it is written for"


@pytest.mark.parametrize(("target", "attack"), attacks(GITHUB, GITHUB_FOREIGN) + attacks(GITLAB, GITLAB_FOREIGN))
def test_a_token_from_outside_gets_nothing(target: Target, attack: Attack) -> None:
    granted = decisions(target, attack(legitimate(target.rule)))
    assert not granted, f"{target.where}: {[g.rule.name for g in granted]} grant(s) it"


@pytest.mark.parametrize(("target", "attack"),
                         attacks(GITHUB, GITHUB_UNREVIEWED) + attacks(GITLAB, GITLAB_UNREVIEWED)
                         + attacks(GITHUB, GITHUB_UNREVIEWED_WORKFLOW, pinning="job_workflow_ref")
                         + attacks(GITLAB, GITLAB_UNPROTECTED_ENVIRONMENT, pinning="environment_protected"))
def test_a_token_without_review_never_writes(target: Target, attack: Attack) -> None:
    writes = [g.rule.name for g in decisions(target, attack(legitimate(target.rule))) if g.rule.access == "write"]
    assert not writes, f"{target.where}: {writes} let it push"
