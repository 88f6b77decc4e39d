"""The example policies, and the policies the guides show, checked as an operator rolling ccweb out checks them.

- every example policy passes ``ccweb check-config`` (the console script, as a CI job runs it), every policy
  in README.md and docs/*.md validates;
- every target role they name (and any docs/ci.md, docs/identity-providers.md and the README mention) is one
  deploy/aws/ccweb-target-role.yaml creates (its RolePath and RoleName) and ccweb-service-role.yaml lets the
  service assume (its TargetRoleArns);
- a policy that signs people in at Okta's org authorization server and decides on ``groups`` asks for the
  ``groups`` scope, for the helper and for the web page (the org server sends the claim for that scope only);
- CI rules on shared issuers (GitHub, gitlab.com) grant the least, since examples are copied: one repository by
  ID, write from an environment on a protected ref, GitLab groups by an anchored pattern or an ID.

The policy gate (each overlay's policy-cases.yaml, deploy/ci's examples): tests/deploy/test_policy_gate.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccweb.config import parse_config
from ccweb.policy import Granted, Repository, compile_policy

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
AWS = ROOT / "deploy" / "aws"
TOKENS = ROOT / "tests" / "data" / "idp-tokens"
CCWEB = Path(sys.executable).parent / "ccweb"
BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)

POLICY_FILES = sorted(KUBE.rglob("policy.yaml"))
ARN_SOURCES = [*POLICY_FILES, ROOT / "README.md", ROOT / "docs" / "ci.md", ROOT / "docs" / "identity-providers.md"]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def doc_policies() -> list[tuple[str, str]]:
    """(file:line, YAML text) of every policy README.md and docs/*.md show: a ```yaml block with ``issuers:``."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            if re.search(r"^issuers:", match.group(1), re.MULTILINE):
                found.append((f"{rel(path)}:{text.count(chr(10), 0, match.start()) + 1}", match.group(1)))
    return found


DOC_POLICIES = doc_policies()
EXAMPLES: list[tuple[str, Any]] = [
    *((rel(path), yaml.safe_load(path.read_text(encoding="utf-8"))) for path in POLICY_FILES),
    *((where, yaml.safe_load(text)) for where, text in DOC_POLICIES),
]


@pytest.mark.parametrize("path", POLICY_FILES, ids=[rel(p) for p in POLICY_FILES])
def test_example_policy_passes_check_config(path: Path) -> None:
    result = subprocess.run([str(CCWEB), "check-config", rel(path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{rel(path)}: valid (")


@pytest.mark.parametrize(("where", "text"), DOC_POLICIES, ids=[w for w, _ in DOC_POLICIES])
def test_docs_policy_is_valid(where: str, text: str) -> None:
    compile_policy(parse_config(yaml.safe_load(text)))  # what check-config runs; raises naming the key


def test_ci_guide_shows_policies() -> None:
    assert sum(where.startswith("docs/ci.md:") for where, _ in DOC_POLICIES) >= 2  # the rules and the cluster's


# -- role ARNs: what the CloudFormation templates create and allow ------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """YAML's safe loader, reading CloudFormation's short-form tags (!Ref, !Sub, …) as nothing: only the
    templates' Parameters are read here, which hold none."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def template_parameters(name: str) -> dict[str, Any]:
    template = yaml.load((AWS / name).read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 (a SafeLoader)
    parameters: dict[str, Any] = template["Parameters"]
    return parameters


def target_role_form() -> re.Pattern[str]:
    """The ARN of a role the target-role template creates with its default path: role<RolePath><RoleName>."""
    target = template_parameters("ccweb-target-role.yaml")
    name = target["RoleName"]["AllowedPattern"].removeprefix("^").removesuffix("$")
    return re.compile(rf"arn:aws:iam::[0-9]{{12}}:role{re.escape(target['RolePath']['Default'])}{name}")


SERVICE_MAY_ASSUME = re.compile(template_parameters("ccweb-service-role.yaml")["TargetRoleArns"]["AllowedPattern"])
ROLE_ARN = re.compile(r"arn:aws[\w-]*:iam::[0-9]{12}:role/[\w+=,.@/*-]+")
SERVICE_ROLE = "ccweb-service"
"""The service's own role (path /, outside the target roles' path): the one role ARN the texts name that is no
target role."""


def role_arns() -> list[tuple[str, str]]:
    """(where, ARN) of each target role named: the rules of every example and docs policy, and every role ARN
    written anywhere in the files that name target roles (a path pattern ending in /* and the service role
    aside)."""
    found = {(where, rule["role_arn"]) for where, data in EXAMPLES for rule in data.get("rules", [])}
    for path in ARN_SOURCES:
        for arn in ROLE_ARN.findall(path.read_text(encoding="utf-8")):
            if not arn.endswith("/*") and arn.rpartition("/")[2] != SERVICE_ROLE:
                found.add((rel(path), arn))
    return sorted(found)


ROLE_ARNS = role_arns()


def test_the_form_is_read_from_the_templates() -> None:
    form = target_role_form()
    assert form.fullmatch("arn:aws:iam::111122223333:role/ccweb/developers")
    assert not form.fullmatch("arn:aws:iam::111122223333:role/ccweb-developers"), "the form of issue 16's error"
    assert not SERVICE_MAY_ASSUME.fullmatch("arn:aws:iam::111122223333:role/*")


def test_every_source_names_target_roles() -> None:
    assert {where.partition(":")[0] for where, _ in ROLE_ARNS} >= {rel(p) for p in ARN_SOURCES}


@pytest.mark.parametrize(("where", "arn"), ROLE_ARNS, ids=[f"{w}:{a}" for w, a in ROLE_ARNS])
def test_role_arn_is_a_target_role_the_templates_create_and_allow(where: str, arn: str) -> None:
    assert target_role_form().fullmatch(arn), (
        f"{where}: {arn} is not arn:aws:iam::<account>:role/ccweb/<name>, which ccweb-target-role.yaml creates: "
        "the service would get AccessDenied (503) for every request this rule grants")
    assert SERVICE_MAY_ASSUME.fullmatch(arn), f"{where}: ccweb-service-role.yaml's TargetRoleArns refuses {arn}"


# -- Okta's org authorization server sends groups only for the groups scope ---------------------------------

ORG_SERVER = re.compile(r"https://[A-Za-z0-9-]+\.(okta|oktapreview|okta-emea)\.com/?")
"""An Okta org authorization server's issuer: the org's URL with no /oauth2/<authServerId> path."""


def reads_groups(claims: Mapping[str, Any]) -> bool:
    return any(key == "groups" or key.startswith("/groups/") or key == "/groups" for key in claims)


def okta_groups_findings(data: Mapping[str, Any]) -> list[str]:
    """Why a policy that decides on ``groups`` at Okta's org authorization server would get no groups claim."""
    config = parse_config(data)
    findings = []
    for issuer in config.issuers:
        if not ORG_SERVER.fullmatch(issuer.issuer):
            continue
        deciders = [r.claims for r in config.rules if r.issuer == issuer.name]
        deciders += [d.claims for d in config.deny if d.issuer in (None, issuer.name)]
        if not any(reads_groups(claims) for claims in deciders):
            continue
        if issuer.login is not None and "groups" not in issuer.login.scopes:
            findings.append(f"issuer {issuer.name!r}: login.scopes {issuer.login.scopes} lacks groups")
        if config.web.issuer == issuer.name and "groups" not in config.web.scopes:
            findings.append(f"web.scopes {config.web.scopes} lacks groups")
    return findings


@pytest.mark.parametrize(("where", "data"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_a_policy_deciding_on_groups_at_oktas_org_server_asks_for_the_groups_scope(where: str, data: Any) -> None:
    assert okta_groups_findings(data) == [], where


def test_the_examples_decide_on_groups_at_oktas_org_server() -> None:
    """The check above is not vacuous: the overlays and the Okta guide sign in at an org server."""
    org = {where.partition(":")[0] for where, data in EXAMPLES
           if any(ORG_SERVER.fullmatch(i["issuer"]) for i in data["issuers"])}
    assert org >= {"deploy/kubernetes/overlays/example/policy.yaml", "docs/identity-providers.md"}


def test_the_check_finds_issue_16s_okta_error() -> None:
    """The example overlay as it was: a groups rule at the org server, ccweb's default scopes."""
    data = yaml.safe_load((KUBE / "overlays" / "example" / "policy.yaml").read_text(encoding="utf-8"))
    del data["issuers"][0]["login"]["scopes"], data["web"]["scopes"]
    assert [line.partition(" [")[0] for line in okta_groups_findings(data)] == [
        "issuer 'okta': login.scopes", "web.scopes"]


def test_the_org_server_guide_grants_on_the_token_okta_sends_for_its_scopes() -> None:
    (text,) = [t for where, t in DOC_POLICIES if "https://acme.okta.com " in t or "https://acme.okta.com\n" in t]
    config = parse_config(yaml.safe_load(text))
    (entry,) = config.issuers
    claims = json.loads((TOKENS / "okta-org-scopes.json").read_text(encoding="utf-8"))
    del claims["_source"]
    assert claims["iss"] == entry.issuer and entry.login is not None and claims["aud"] == entry.login.client_id
    policy = compile_policy(config)
    granted = policy.decide("okta", claims, Repository("app", "us-east-1"))
    assert isinstance(granted, Granted) and granted.rule.name == "engineering"
    without = {key: value for key, value in claims.items() if key != "groups"}  # signed in without the scope
    assert not isinstance(policy.decide("okta", without, Repository("app", "us-east-1")), Granted)


# -- least privilege: the examples are copied -------------------------------------------------------------

GITHUB = "https://token.actions.githubusercontent.com"
GITLAB_COM = "https://gitlab.com"


def privilege_findings(data: Mapping[str, Any]) -> list[str]:
    """What a CI rule on a shared issuer grants too widely: GitHub rules not pinned to one repository by ID (names
    can be renamed and taken) or writing outside an environment; gitlab.com rules pinned by a namespace pattern
    that is not anchored at a group's end, or writing without a protected ref and an environment."""
    config = parse_config(data)
    urls = {issuer.name: issuer.issuer for issuer in config.issuers}
    findings = []
    for rule in config.rules:
        claims, url = rule.claims, urls[rule.issuer]
        if url == GITHUB:
            if "repository_id" not in claims or "repository_owner_id" not in claims:
                findings.append(f"{rule.name}: pin repository_owner_id and repository_id")
            if rule.access == "write" and not {"environment", "ref"} <= set(claims):
                findings.append(f"{rule.name}: write only from an environment on a ref")
        if url == GITLAB_COM:
            namespace = claims.get("namespace_path")
            pattern = getattr(namespace, "pattern", None)
            if not ({"project_id", "namespace_id"} & set(claims) or (
                    pattern is not None and re.fullmatch(r"[\w.-]+(/[\w.-]+)*\(/\.\+\)\?", pattern))):
                findings.append(f"{rule.name}: pin project_id, namespace_id or {{pattern: 'group(/.+)?'}}")
            if rule.access == "write" and not ({"project_id", "environment"} <= set(claims)
                                               and claims.get("ref_protected") == "true"):
                findings.append(f"{rule.name}: write only from one project's environment on a protected ref")
    return findings


@pytest.mark.parametrize(("where", "data"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_ci_rules_on_shared_issuers_grant_the_least(where: str, data: Any) -> None:
    assert privilege_findings(data) == [], where


def test_the_least_privilege_check_finds_issue_16s_release_pipeline() -> None:
    """The example's release-pipeline rule as it was, and GitLab's namespace as docs/ci.md had it."""
    data = {
        "issuers": [{"name": "github", "issuer": GITHUB, "audiences": ["https://ccweb.example.com"]},
                    {"name": "gitlab", "issuer": GITLAB_COM, "audiences": ["https://ccweb.example.com"]}],
        "rules": [{"name": "release-pipeline", "issuer": "github",
                   "claims": {"repository_owner": "example-corp", "ref": "refs/heads/main", "event_name": "push"},
                   "role_arn": "arn:aws:iam::444455556666:role/ccweb/release", "repositories": ["service-*"],
                   "access": "write"},
                  {"name": "loose", "issuer": "gitlab", "claims": {"namespace_path": {"pattern": "acme.*"}},
                   "role_arn": "arn:aws:iam::111122223333:role/ccweb/ci-read", "repositories": ["*"]}],
    }
    assert [line.partition(":")[0] for line in privilege_findings(data)] == ["release-pipeline"] * 2 + ["loose"]


def test_the_ci_guides_rules_take_subgroups_and_refuse_lookalikes_and_other_repositories() -> None:
    (text,) = [t for where, t in DOC_POLICIES if where.startswith("docs/ci.md:") and "gitlab-protected-read" in t]
    policy = compile_policy(parse_config(yaml.safe_load(text)))

    def rule(issuer: str, claims: dict[str, Any], repository: str) -> str | None:
        decision = policy.decide(issuer, {"sub": "job", **claims}, Repository(repository, "us-east-1"))
        return decision.rule.name if isinstance(decision, Granted) else None

    protected = {"ref_protected": "true", "ref_type": "branch", "ref": "main"}
    for namespace, granted in [("acme", True), ("acme/platform", True), ("acme/platform/tools", True),
                               ("acme-evil", False), ("acmeco/platform", False), ("evil/acme", False)]:
        project = {"namespace_path": namespace, "project_path": f"{namespace}/x", **protected}
        assert (rule("gitlab", project, "app") is not None) == granted, namespace
    boolean = {"namespace_path": "acme", "project_path": "acme/x", **protected, "ref_protected": True}
    assert rule("gitlab", boolean, "app") is None, "a boolean never equals GitLab's string"
    job = {"repository": "acme/app", "repository_owner_id": "1342004", "repository_id": "672510318",
           "ref": "refs/heads/main", "event_name": "push", "environment": "production",
           "job_workflow_ref": "acme/release-workflows/.github/workflows/release.yml@refs/heads/main"}
    assert rule("github", job, "app") == "app-release"
    assert rule("github", {**job, "repository_id": "672510999"}, "app") is None, "another repository of acme"
    assert rule("github", {**job, "environment": "staging"}, "app") == "app-ci-read"
    assert rule("github", {**job, "repository_owner_id": 1342004}, "app") is None, "an ID as a number"
