"""deploy/aws/ccweb-service-role.yaml on EKS Pod Identity (Trust=pod-identity): the trust names EKS Pod Identity
for this account and cluster only, the association names the role, the namespace and the service account, its
session tags are off unless asked for, and IRSA stacks keep their role as it was; the target role accepts Pod
Identity's transitive tags only when asked to; docs/iam.md shows what the templates render. The templates are
read and rendered as in test_cloudformation."""

from __future__ import annotations

import re
from typing import Any

import pytest

from deploy.test_cloudformation import (
    ACCOUNT,
    SERVICE,
    SERVICE_PARAMETERS,
    SERVICE_ROLE_ARN,
    STS_ACTIONS,
    TARGET,
    Renderer,
    as_list,
    docs_json,
    iam_match,
    load,
    may_tag,
    render_target,
    statements,
)


@pytest.fixture(scope="module")
def service_role() -> dict[str, Any]:
    properties: dict[str, Any] = Renderer(load(SERVICE), SERVICE_PARAMETERS).resources()["ServiceRole"]["Properties"]
    return properties


# ---------------------------------------------------------------------- the service role on EKS Pod Identity

POD_IDENTITY = {**SERVICE_PARAMETERS, "ClusterOidcIssuerUrl": "", "Trust": "pod-identity", "ClusterName": "prod"}
POD_IDENTITY_TAGS = ["eks-cluster-arn", "eks-cluster-name", "kubernetes-namespace", "kubernetes-service-account",
                     "kubernetes-pod-name", "kubernetes-pod-uid"]
"""The session tags EKS Pod Identity sets (Amazon EKS User Guide), all transitive."""


def render_service(**parameters: str) -> dict[str, dict[str, Any]]:
    return Renderer(load(SERVICE), {**SERVICE_PARAMETERS, **parameters}).resources()


def test_pod_identity_trusts_eks_pod_identity_for_this_account_and_cluster_only() -> None:
    resources = render_service(**POD_IDENTITY)
    (statement,) = statements(resources["ServiceRole"]["Properties"]["AssumeRolePolicyDocument"])
    assert statement == {
        "Sid": "EksPodIdentityOfOneCluster",
        "Effect": "Allow",
        "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
        },
    }
    assert resources["ServiceRole"]["Properties"]["Description"].startswith("ccweb service (EKS Pod Identity)")


def test_pod_identity_with_session_tags_also_requires_this_namespace_and_service_account() -> None:
    resources = render_service(**POD_IDENTITY, DisableSessionTags="false")
    (statement,) = statements(resources["ServiceRole"]["Properties"]["AssumeRolePolicyDocument"])
    assert statement["Condition"] == {
        "StringEquals": {
            "aws:SourceAccount": ACCOUNT,
            "aws:RequestTag/eks-cluster-name": "prod",
            "aws:RequestTag/kubernetes-namespace": "platform",
            "aws:RequestTag/kubernetes-service-account": "ccweb-api",
        },
    }
    assert resources["PodIdentityAssociation"]["Properties"]["DisableSessionTags"] is False


def test_the_association_names_the_role_the_namespace_and_the_service_account_without_tags() -> None:
    resources = render_service(**POD_IDENTITY)
    assert [r["Type"] for r in resources.values()] == ["AWS::IAM::Role", "AWS::EKS::PodIdentityAssociation"]
    assert resources["PodIdentityAssociation"]["Properties"] == {
        "ClusterName": "prod",
        "Namespace": "platform",
        "ServiceAccount": "ccweb-api",
        "RoleArn": "<ServiceRole.Arn>",
        "DisableSessionTags": True,
    }


def test_both_trusts_leave_the_same_permissions(service_role: dict[str, Any]) -> None:
    assert render_service(**POD_IDENTITY)["ServiceRole"]["Properties"]["Policies"] == service_role["Policies"]


def test_irsa_stays_the_default_and_makes_the_role_alone(service_role: dict[str, Any]) -> None:
    """An IRSA stack updated to this template keeps its role as it was: no new parameter to give, no association."""
    spec = load(SERVICE)["Parameters"]
    assert (spec["Trust"]["Default"], spec["DisableSessionTags"]["Default"]) == ("irsa", "true")
    assert service_role["Description"] == "ccweb service (IRSA); may only assume the ccweb target roles"
    outputs = load(SERVICE)["Outputs"]
    assert outputs["ServiceAccountAnnotation"]["Condition"] == "Irsa"
    assert outputs["PodIdentityAssociationArn"]["Condition"] == "PodIdentity"


@pytest.mark.parametrize(
    ("parameters", "accepted"),
    [
        ({}, True),
        ({"ClusterOidcIssuerUrl": ""}, False),
        (POD_IDENTITY, True),
        ({**POD_IDENTITY, "ClusterName": ""}, False),
    ],
    ids=["irsa", "irsa-without-issuer", "pod-identity", "pod-identity-without-cluster"],
)
def test_each_trust_needs_its_own_parameter(parameters: dict[str, str], accepted: bool) -> None:
    assert (Renderer(load(SERVICE), {**SERVICE_PARAMETERS, **parameters}).broken_rules() == []) is accepted


@pytest.mark.parametrize(
    ("name", "accepted"),
    [("prod", True), ("prod-eu_1", True), ("a" * 100, True), ("", True), ("a" * 101, False), ("-prod", False),
     ("prod cluster", False), ("arn:aws:eks:eu-west-1:111122223333:cluster/prod", False)],
    ids=lambda v: str(v)[:20],
)
def test_cluster_names_are_eks_cluster_names(name: str, accepted: bool) -> None:
    pattern = load(SERVICE)["Parameters"]["ClusterName"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, name, re.ASCII)) is accepted


def test_pod_identity_s_transitive_tags_are_accepted_only_when_asked_and_only_from_the_service_role() -> None:
    """A service role on Pod Identity with its session tags carries six transitive tags into every AssumeRole."""
    def trust(**parameters: str) -> list[dict[str, Any]]:
        role = render_target(Repositories="app", **parameters)["TargetRole"]["Properties"]
        return statements(role["AssumeRolePolicyDocument"])

    accepting = trust(AcceptPodIdentityTags="true")
    assert may_tag(accepting, SERVICE_ROLE_ARN, POD_IDENTITY_TAGS, POD_IDENTITY_TAGS)
    assert not may_tag(accepting, SERVICE_ROLE_ARN, ["team"], []), "no other key"
    assert not may_tag(accepting, f"arn:aws:iam::{ACCOUNT}:role/someone-else", POD_IDENTITY_TAGS, POD_IDENTITY_TAGS)
    both = trust(AcceptPodIdentityTags="true", SessionTagKeys="team")
    assert may_tag(both, SERVICE_ROLE_ARN, ["team", *POD_IDENTITY_TAGS], ["team", *POD_IDENTITY_TAGS])
    assert not may_tag(both, SERVICE_ROLE_ARN, ["team", "admin"], [])
    for parameters in ({}, {"SessionTagKeys": "team"}):
        assert not may_tag(trust(**parameters), SERVICE_ROLE_ARN, POD_IDENTITY_TAGS, POD_IDENTITY_TAGS), parameters
    assert trust(SessionTagKeys="team") == trust(SessionTagKeys="team", AcceptPodIdentityTags="false")
    assert load(TARGET)["Parameters"]["AcceptPodIdentityTags"]["Default"] == "false"


def test_the_pod_identity_trust_in_docs_iam_is_what_the_template_renders() -> None:
    """docs/iam.md shows the trust for ClusterName=prod in eu-west-1 of 111122223333."""
    trust = render_service(**POD_IDENTITY)["ServiceRole"]["Properties"]["AssumeRolePolicyDocument"]
    assert docs_json('"EksPodIdentityOfOneCluster"') == trust


def test_the_sts_endpoint_policy_in_docs_iam_lets_through_what_the_service_role_may_do() -> None:
    policy = docs_json('"CcwebAssumesItsTargetRoles"')
    assume, web_identity = statements(policy)
    assert set(as_list(assume["Action"])) == STS_ACTIONS
    assert assume["Condition"] == {"ArnEquals": {"aws:PrincipalArn": SERVICE_ROLE_ARN}}
    assert iam_match(assume["Resource"], f"arn:aws:iam::{ACCOUNT}:role/ccweb/developers")
    assert not iam_match(assume["Resource"], SERVICE_ROLE_ARN)
    assert (web_identity["Action"], web_identity["Resource"]) == ("sts:AssumeRoleWithWebIdentity", SERVICE_ROLE_ARN)
