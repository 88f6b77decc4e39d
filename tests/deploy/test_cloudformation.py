"""The IAM templates in deploy/aws: cfn-lint clean, and no more access than ccweb needs.

The templates are read as CloudFormation reads them (short-form tags included) and rendered for sample
parameters by a small evaluator of the intrinsic functions they use, so the assertions are about the
policy documents IAM would receive, not about the template's spelling; the target role's permissions are
then evaluated the way IAM does (an explicit Deny wins, NotResource, ARN wildcards).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import ManualArgs, lint_file

from ccweb.config import ROLE_ARN
from ccweb.iam import actions as ccweb_actions

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "aws"
SERVICE = DEPLOY / "ccweb-service-role.yaml"
TARGET = DEPLOY / "ccweb-target-role.yaml"
STS_ACTIONS = {"sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"}
ACCOUNT, REGION = "111122223333", "eu-west-1"
SERVICE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/ccweb-service"
LINT_REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1"]


# ------------------------------------------------------------------------------------ reading a template


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms: ``!Ref X`` → ``{"Ref": "X"}``, ``!Sub s`` → ``{"Fn::Sub": s}``."""


def _short_form(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _short_form)


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (SafeLoader subclass)
    return document


# ------------------------------------------------------------------------- rendering it for parameters


class Renderer:
    """Evaluates the intrinsic functions the templates use, for one set of parameter values."""

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
        self.template = template
        self.values: dict[str, Any] = {
            "AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
            "AWS::StackName": "ccweb-stack",
        }
        for name, spec in template.get("Parameters", {}).items():
            value = parameters.get(name, spec.get("Default"))
            assert value is not None, f"parameter {name} has no value and no default"
            if spec["Type"] == "CommaDelimitedList" and isinstance(value, str):
                value = value.split(",")
            self.values[name] = value
        self.conditions: dict[str, bool] = {}
        for name, expression in template.get("Conditions", {}).items():  # in order: one may name an earlier one
            self.conditions[name] = self.value(expression)

    def value(self, node: Any, local: Mapping[str, Any] | None = None) -> Any:
        scope = {**self.values, **(local or {})}
        if isinstance(node, list):
            return [v for v in (self.value(item, local) for item in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) != 1 or not next(iter(node)).startswith(("Ref", "Fn::", "Condition")):
            rendered = {key: self.value(item, local) for key, item in node.items()}
            return {key: item for key, item in rendered.items() if item is not _NO_VALUE}
        (function, argument), = node.items()
        if function == "Ref":
            if argument == "AWS::NoValue":
                return _NO_VALUE
            if argument in self.template.get("Resources", {}):
                return f"<{argument}>"
            return scope[argument]
        if function == "Fn::GetAtt":
            return f"<{argument[0]}.{argument[1]}>"
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            names = {**scope, **{k: self.value(v, local) for k, v in variables.items()}}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(names[m.group(1)]), text)
        if function == "Fn::Join":
            return argument[0].join(self.value(argument[1], local))
        if function == "Fn::Split":
            return self.value(argument[1], local).split(argument[0])
        if function == "Fn::Select":
            return self.value(argument[1], local)[int(argument[0])]
        if function == "Fn::Equals":
            return self.value(argument[0], local) == self.value(argument[1], local)
        if function == "Fn::Not":
            (condition,) = argument
            return not self.value(condition, local)
        if function == "Fn::Contains":  # Rules only
            return self.value(argument[1], local) in self.value(argument[0], local)
        if function == "Fn::And":
            return all(self.value(condition, local) for condition in argument)
        if function == "Fn::Or":
            return any(self.value(condition, local) for condition in argument)
        if function in ("Condition", "Fn::Condition"):  # the short form !Condition reads as Fn::Condition
            return self.conditions[argument]
        if function == "Fn::FindInMap":
            name, first, second = (self.value(part, local) for part in argument)
            return self.template["Mappings"][name][first][second]
        if function == "Fn::If":
            return self.value(argument[1] if self.conditions[argument[0]] else argument[2], local)
        raise AssertionError(f"the evaluator does not know {function}")

    def resources(self) -> dict[str, dict[str, Any]]:
        """The resources CloudFormation would make for these parameters (a false ``Condition`` makes none)."""
        return {
            key: self.value(body)
            for key, body in self.template["Resources"].items()
            if "Condition" not in body or self.conditions[body["Condition"]]
        }

    def broken_rules(self) -> list[str]:
        """The AssertDescription of each Rule these parameters break: CloudFormation refuses such a stack."""
        broken = []
        for rule in self.template.get("Rules", {}).values():
            if "RuleCondition" in rule and not self.value(rule["RuleCondition"]):
                continue
            broken += [a["AssertDescription"] for a in rule["Assertions"] if not self.value(a["Assert"])]
        return broken


_NO_VALUE = object()


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def statements(document: str | Mapping[str, Any]) -> list[dict[str, Any]]:
    parsed = json.loads(document) if isinstance(document, str) else document
    assert parsed["Version"] == "2012-10-17"
    return [parsed["Statement"]] if isinstance(parsed["Statement"], dict) else parsed["Statement"]


def iam_match(pattern: str, arn: str) -> bool:
    """IAM's ARN wildcards: * (also across /) and ?."""
    return fnmatch.fnmatchcase(arn, pattern)


# ------------------------------------------------------------------------------------------------ lint


TEMPLATES = sorted(DEPLOY.glob("*.yaml"))


def test_every_template_is_linted() -> None:
    assert {SERVICE, TARGET, DEPLOY / "ccweb-alerts.yaml"} <= set(TEMPLATES)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_finds_no_error_and_no_warning(path: Path) -> None:
    matches = lint_file(path, config=ManualArgs(regions=LINT_REGIONS))
    problems = [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches if m.rule.id[0] in "EW"]
    assert problems == []


def test_cfn_lint_catches_a_mistake(tmp_path: Path) -> None:
    """The lint above is real: a misspelt action in the target role's trust is a warning."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(TARGET.read_text(encoding="utf-8").replace("sts:TagSession", "sts:TagSesion"), encoding="utf-8")
    assert any(m.rule.id[0] in "EW" for m in lint_file(broken, config=ManualArgs(regions=["us-east-1"])))


# ------------------------------------------------------------------------------------- the service role

SERVICE_PARAMETERS = {
    "ClusterOidcIssuerUrl": "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF",
    "Namespace": "platform",
    "ServiceAccountName": "ccweb-api",
    "TargetRoleArns": f"arn:aws:iam::{ACCOUNT}:role/ccweb/developers,arn:aws:iam::444455556666:role/ccweb/*",
}


@pytest.fixture(scope="module")
def service_role() -> dict[str, Any]:
    resources = Renderer(load(SERVICE), SERVICE_PARAMETERS).resources()
    assert [r["Type"] for r in resources.values()] == ["AWS::IAM::Role"], "one role and nothing else"
    properties: dict[str, Any] = next(iter(resources.values()))["Properties"]
    return properties


def test_service_role_is_trusted_by_one_service_account_through_irsa(service_role: dict[str, Any]) -> None:
    provider = "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
    (statement,) = statements(service_role["AssumeRolePolicyDocument"])
    assert statement == {
        "Sid": "PodsOfOneServiceAccount",
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{provider}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            f"{provider}:sub": "system:serviceaccount:platform:ccweb-api",
            f"{provider}:aud": "sts.amazonaws.com",
        }},
    }


def test_service_role_may_only_assume_the_target_roles(service_role: dict[str, Any]) -> None:
    assert not {"ManagedPolicyArns", "PermissionsBoundary"} & service_role.keys()
    (policy,) = service_role["Policies"]
    (statement,) = statements(policy["PolicyDocument"])
    assert not {"NotAction", "NotResource", "NotPrincipal"} & statement.keys()
    assert statement["Effect"] == "Allow"
    assert set(as_list(statement["Action"])) == STS_ACTIONS
    assert as_list(statement["Resource"]) == SERVICE_PARAMETERS["TargetRoleArns"].split(",")
    # And in the template itself the resource is the parameter, nothing added to it.
    raw = load(SERVICE)["Resources"]["ServiceRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert raw["Statement"][0]["Resource"] == {"Ref": "TargetRoleArns"}


@pytest.mark.parametrize(
    ("arn", "accepted"),
    [
        (f"arn:aws:iam::{ACCOUNT}:role/ccweb/developers", True),
        (f"arn:aws:iam::{ACCOUNT}:role/ccweb-developers", True),
        (f"arn:aws:iam::{ACCOUNT}:role/ccweb/*", True),
        (f"arn:aws:iam::{ACCOUNT}:role/teams/ccweb/*", True),
        (f"arn:aws-us-gov:iam::{ACCOUNT}:role/ccweb/read", True),
        (f"arn:aws-cn:iam::{ACCOUNT}:role/ccweb/read", True),
        ("*", False),
        (f"arn:aws:iam::{ACCOUNT}:role/*", False),
        (f"arn:aws:iam::{ACCOUNT}:role/ccweb-*", False),
        (f"arn:aws:iam::{ACCOUNT}:role/ccweb/dev*", False),
        (f"arn:aws:iam::{ACCOUNT}:*", False),
        ("arn:aws:iam::*:role/ccweb/*", False),
        (f"arn:aws:iam::{ACCOUNT}:user/ccweb/alice", False),
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/ccweb/x", False),
        (f"arn:aws:iam::{ACCOUNT}:role/", False),
    ],
    ids=str,
)
def test_target_role_arns_take_explicit_roles_or_a_path_pattern(arn: str, accepted: bool) -> None:
    pattern = load(SERVICE)["Parameters"]["TargetRoleArns"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, arn, re.ASCII)) is accepted


def test_a_path_pattern_covers_the_target_roles_and_never_the_service_role() -> None:
    pattern = f"arn:aws:iam::{ACCOUNT}:role/ccweb/*"
    target = Renderer(load(TARGET), {"ServiceRoleArn": SERVICE_ROLE_ARN, "RoleName": "developers",
                                     "Repositories": "app"})
    target_arn = f"arn:aws:iam::{ACCOUNT}:role{target.values['RolePath']}{target.values['RoleName']}"
    service = Renderer(load(SERVICE), SERVICE_PARAMETERS)
    service_arn = f"arn:aws:iam::{ACCOUNT}:role{service.resources()['ServiceRole']['Properties']['Path']}" \
        f"{service.values['RoleName']}"
    assert iam_match(pattern, target_arn)
    assert not iam_match(pattern, service_arn)
    assert ROLE_ARN.fullmatch(target_arn), "a ccweb rule can name the target role"


# -------------------------------------------------------------------------------------- the target role


def render_target(partition: str = "aws", **parameters: Any) -> dict[str, dict[str, Any]]:
    renderer = Renderer(load(TARGET), {"ServiceRoleArn": SERVICE_ROLE_ARN, "RoleName": "developers", **parameters})
    if partition != "aws":
        renderer.values["AWS::Partition"] = partition
        for name, expression in renderer.template["Conditions"].items():
            renderer.conditions[name] = renderer.value(expression)
    return renderer.resources()


def condition_holds(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    """IAM's reading of the operators the templates' permissions use (all of them must hold).

    A key absent from the request makes StringEquals fail and StringNotEquals hold; a policy variable
    (``${aws:PrincipalTag/team}``) naming an absent key makes the comparison fail either way.
    """

    def resolved(value: str) -> str | None:
        names = re.findall(r"\$\{([^}]+)\}", value)
        if any(name not in context for name in names):
            return None
        return re.sub(r"\$\{([^}]+)\}", lambda m: context[m.group(1)], value)

    for operator, tests in condition.items():
        for key, expected in tests.items():
            values = [resolved(v) for v in as_list(expected)]
            if None in values and operator != "Null":
                return False
            if operator == "Null":
                if (values == ["true"]) is (key in context):
                    return False
            elif operator == "StringEquals":
                if context.get(key) not in values:
                    return False
            elif operator == "StringNotEquals":
                if key in context and context[key] in values:
                    return False
            else:
                raise AssertionError(f"the evaluator does not know {operator}")
    return True


def allowed(statements_: list[dict[str, Any]], action: str, arn: str, context: Mapping[str, str] | None = None) -> bool:
    """IAM's answer for one action on one resource (``context``: the request's condition keys, e.g. the
    session's and the repository's tags): some Allow matches and no Deny does."""

    def applies(statement: dict[str, Any]) -> bool:
        if not any(iam_match(a, action) for a in as_list(statement["Action"])):
            return False
        if "Condition" in statement and not condition_holds(statement["Condition"], context or {}):
            return False
        if "NotResource" in statement:
            return not any(iam_match(r, arn) for r in as_list(statement["NotResource"]))
        return any(iam_match(r, arn) for r in as_list(statement["Resource"]))

    matching = [s for s in statements_ if applies(s)]
    return any(s["Effect"] == "Allow" for s in matching) and not any(s["Effect"] == "Deny" for s in matching)


def target_statements(resources: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    assert [r["Type"] for r in resources.values()] == ["AWS::IAM::Role"], "one role and nothing else"
    role = resources["TargetRole"]["Properties"]
    assert not {"ManagedPolicyArns", "PermissionsBoundary"} & role.keys()
    return [s for policy in role["Policies"] for s in statements(policy["PolicyDocument"])]


def test_target_role_trusts_only_the_service_role_with_a_source_identity() -> None:
    role = render_target(Repositories="app")["TargetRole"]["Properties"]
    (statement,) = statements(role["AssumeRolePolicyDocument"])
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"AWS": SERVICE_ROLE_ARN}
    assert set(as_list(statement["Action"])) == {"sts:AssumeRole", "sts:SetSourceIdentity"}, "no session tags"
    assert statement["Condition"] == {"Null": {"sts:SourceIdentity": "false"}}
    assert not {"NotAction", "NotPrincipal"} & statement.keys()
    assert [p["PolicyName"] for p in role["Policies"]] == ["codecommit-git"], "repository tags play no part"


# --------------------------------------------------------------------- session tags and attribute-based access


def may_tag(trust: list[dict[str, Any]], principal: str, keys: list[str], transitive: list[str]) -> bool:
    """Whether the trust policy lets ``principal`` pass session tags with these keys (and transitive keys)."""
    request = {"aws:TagKeys": keys, "sts:TransitiveTagKeys": transitive}
    for statement in trust:
        if statement["Effect"] != "Allow" or "sts:TagSession" not in as_list(statement["Action"]):
            continue
        if statement["Principal"] != {"AWS": principal}:
            continue
        (operator, tests), = statement["Condition"].items()
        assert operator == "ForAllValues:StringEquals"
        if all(set(request[key]) <= set(as_list(allowed_keys)) for key, allowed_keys in tests.items()):
            return True
    return False


def test_session_tag_keys_let_the_service_role_tag_sessions_with_those_keys_only() -> None:
    role = render_target(Repositories="app", SessionTagKeys="team,cost-center")["TargetRole"]["Properties"]
    trust = statements(role["AssumeRolePolicyDocument"])
    assert [s["Sid"] for s in trust] == ["CcwebServiceWithSourceIdentity", "CcwebServiceTagsItsSessions"]
    assert trust[0]["Condition"] == {"Null": {"sts:SourceIdentity": "false"}}, "AssumeRole still needs it"
    assert may_tag(trust, SERVICE_ROLE_ARN, ["team"], [])
    assert may_tag(trust, SERVICE_ROLE_ARN, ["team", "cost-center"], ["team"])
    assert not may_tag(trust, SERVICE_ROLE_ARN, ["team", "admin"], [])
    assert not may_tag(trust, SERVICE_ROLE_ARN, ["Team"], []), "keys are compared as spelt"
    assert not may_tag(trust, SERVICE_ROLE_ARN, ["team"], ["admin"])
    assert not may_tag(trust, f"arn:aws:iam::{ACCOUNT}:role/someone-else", ["team"], [])
    default = render_target(Repositories="app")["TargetRole"]["Properties"]
    assert not may_tag(statements(default["AssumeRolePolicyDocument"]), SERVICE_ROLE_ARN, ["team"], [])


TEAM_POLICY = {"Repositories": "*", "SessionTagKeys": "team", "AbacTagKey": "team", "Access": "write"}


@pytest.mark.parametrize(
    ("session", "repository", "expected"),
    [
        ({"aws:PrincipalTag/team": "payments"}, {"aws:ResourceTag/team": "payments"}, True),
        ({"aws:PrincipalTag/team": "payments"}, {"aws:ResourceTag/team": "risk"}, False),
        ({"aws:PrincipalTag/team": "payments"}, {"aws:ResourceTag/team": "Payments"}, False),
        ({"aws:PrincipalTag/team": "payments"}, {}, False),
        ({}, {"aws:ResourceTag/team": "payments"}, False),
        ({"aws:PrincipalTag/team": ""}, {"aws:ResourceTag/team": ""}, False),
        ({}, {}, False),
    ],
    ids=["same-team", "other-team", "case", "untagged-repository", "untagged-session", "empty-tags", "neither"],
)
def test_abac_grants_git_where_the_repository_tag_equals_the_session_tag(
    session: dict[str, str], repository: dict[str, str], expected: bool
) -> None:
    policy = target_statements(render_target(**TEAM_POLICY))
    for action in ("codecommit:GitPull", "codecommit:GitPush"):
        assert allowed(policy, action, f"{HERE}:anything", {**session, **repository}) is expected, action
    # The Deny is the region's and account's still, and the listed repositories still bound it.
    assert not allowed(policy, "codecommit:GitPull", f"arn:aws:codecommit:us-east-1:{ACCOUNT}:anything",
                       {"aws:PrincipalTag/team": "x", "aws:ResourceTag/team": "x"})
    narrow = target_statements(render_target(**{**TEAM_POLICY, "Repositories": "app-*"}))
    assert not allowed(narrow, "codecommit:GitPull", f"{HERE}:other",
                       {"aws:PrincipalTag/team": "x", "aws:ResourceTag/team": "x"})


def test_without_abac_repository_tags_play_no_part() -> None:
    policy = target_statements(render_target(Repositories="app", SessionTagKeys="team"))
    context = {"aws:PrincipalTag/team": "payments", "aws:ResourceTag/team": "risk"}
    assert allowed(policy, "codecommit:GitPull", f"{HERE}:app", context)
    assert allowed(policy, "codecommit:GitPull", f"{HERE}:app")


@pytest.mark.parametrize(
    ("parameters", "accepted"),
    [
        ({}, True),
        ({"SessionTagKeys": "team"}, True),
        ({"SessionTagKeys": "team,cost-center", "AbacTagKey": "team"}, True),
        ({"SessionTagKeys": "cost-center", "AbacTagKey": "team"}, False),
        ({"AbacTagKey": "team"}, False),
    ],
    ids=["none", "tags-only", "abac-on-a-session-tag", "abac-on-another-key", "abac-without-tags"],
)
def test_the_abac_key_must_be_a_session_tag_key(parameters: dict[str, str], accepted: bool) -> None:
    renderer = Renderer(load(TARGET), {"ServiceRoleArn": SERVICE_ROLE_ARN, "RoleName": "developers",
                                       "Repositories": "*", **parameters})
    assert (renderer.broken_rules() == []) is accepted


@pytest.mark.parametrize(
    ("key", "accepted"),
    [("team", True), ("cost-center", True), ("a.b:c/d=e+f@g_h", True), ("x" * 128, True), ("", True),
     ("x" * 129, False), ("aws:team", False), ("AWS:team", False), ("team name", False), ("équipe", False),
     ("a,b", False)],
    ids=lambda v: str(v)[:20],
)
def test_tag_key_parameters_take_what_sts_takes_in_ascii(key: str, accepted: bool) -> None:
    parameters = load(TARGET)["Parameters"]
    for name in ("SessionTagKeys", "AbacTagKey"):
        assert bool(re.fullmatch(parameters[name]["AllowedPattern"], key, re.ASCII)) is accepted, name


HERE = f"arn:aws:codecommit:{REGION}:{ACCOUNT}"
CANDIDATES = {
    f"{HERE}:app": True,
    f"{HERE}:infra-network": True,       # infra-*
    f"{HERE}:docs.site": True,
    f"{HERE}:application": False,
    f"{HERE}:infra": False,
    f"{HERE}:secrets": False,
    f"arn:aws:codecommit:us-east-1:{ACCOUNT}:app": False,     # same name, another region
    "arn:aws:codecommit:eu-west-1:444455556666:app": False,   # same name, another account
    f"arn:aws:s3:::{ACCOUNT}-app": False,
}


@pytest.mark.parametrize("access", ["read", "write"])
def test_target_role_grants_git_on_the_chosen_repositories_only(access: str) -> None:
    policy = target_statements(render_target(Repositories="app,infra-*,docs.site", Access=access))
    for action in ("codecommit:GitPull", "codecommit:GitPush", "codecommit:DeleteRepository", "s3:GetObject"):
        expected = action in ccweb_actions(access)
        for arn, chosen in CANDIDATES.items():
            assert allowed(policy, action, arn) is (expected and chosen), (action, arn)
    actions = {a for s in policy if s["Effect"] == "Allow" for a in as_list(s["Action"])}
    assert sorted(actions) == sorted(ccweb_actions(access)), "the same actions as ccweb's session policy"
    assert not any("NotAction" in s for s in policy)


@pytest.mark.parametrize("partition", ["aws", "aws-cn", "aws-us-gov"])
def test_every_partition_gets_its_own_arns(partition: str) -> None:
    policy = target_statements(render_target(partition, Repositories="app"))
    here = f"arn:{partition}:codecommit:{REGION}:{ACCOUNT}"
    assert allowed(policy, "codecommit:GitPull", f"{here}:app")
    assert not allowed(policy, "codecommit:GitPull", f"{here}:other")


def test_every_repository_of_the_region_with_a_lone_star() -> None:
    policy = target_statements(render_target(Repositories="*"))
    assert allowed(policy, "codecommit:GitPull", f"{HERE}:anything")
    assert not allowed(policy, "codecommit:GitPull", f"arn:aws:codecommit:us-east-1:{ACCOUNT}:anything")


@pytest.mark.parametrize(
    ("name", "accepted"),
    [("app", True), ("My.Repo_1-x", True), ("app-*", True), ("*", True), ("a" * 100, True),
     ("a" * 101, False), ("", False), ("team/app", False), (f"{HERE}:app", False), ("app repo", False),
     ("app,other", False)],
    ids=lambda v: str(v)[:20],
)
def test_repository_names_are_names(name: str, accepted: bool) -> None:
    pattern = load(TARGET)["Parameters"]["Repositories"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, name, re.ASCII)) is accepted


def test_max_session_duration_is_a_bounded_parameter() -> None:
    spec = load(TARGET)["Parameters"]["MaxSessionDuration"]
    assert (spec["Type"], spec["MinValue"], spec["MaxValue"], spec["Default"]) == ("Number", 3600, 43200, 3600)
    role = render_target(Repositories="app", MaxSessionDuration=7200)["TargetRole"]["Properties"]
    assert role["MaxSessionDuration"] == 7200


def test_service_role_arn_must_be_one_role() -> None:
    pattern = load(TARGET)["Parameters"]["ServiceRoleArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, SERVICE_ROLE_ARN, re.ASCII)
    for wider in ("*", f"arn:aws:iam::{ACCOUNT}:root", f"arn:aws:iam::{ACCOUNT}:role/*", ACCOUNT):
        assert not re.fullmatch(pattern, wider, re.ASCII), wider


def docs_json(containing: str) -> Any:
    """The one ```json block of docs/iam.md that contains ``containing``, parsed."""
    text = (DEPLOY.parents[1] / "docs" / "iam.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"^```json\n(.*?)^```", text, re.MULTILINE | re.DOTALL) if containing in b]
    assert len(blocks) == 1, containing
    return json.loads(blocks[0])


def test_the_abac_policies_in_docs_iam_are_what_the_template_renders() -> None:
    """docs/iam.md shows the trust and the codecommit-abac policy for SessionTagKeys=team AbacTagKey=team."""
    role = render_target(Repositories="*", Access="write", SessionTagKeys="team", AbacTagKey="team")["TargetRole"]
    properties = role["Properties"]
    assert docs_json('"CcwebServiceTagsItsSessions"') == properties["AssumeRolePolicyDocument"]
    (abac,) = [p["PolicyDocument"] for p in properties["Policies"] if p["PolicyName"] == "codecommit-abac"]
    assert docs_json('"aws:ResourceTag/team"') == json.loads(abac)

