"""The policy guard (components/policy-guard) against the requests that could change or remove the policy
ConfigMap, decided as the API server's admission decides them.

The API server gives a ValidatingAdmissionPolicy the request's attributes: its operation, the object's namespace
and name, the object and the old object. A DELETE of a whole collection (``DELETE
/api/v1/namespaces/ccweb/configmaps``, a ``deletecollection``) is admitted object by object with the old object
set but with the request's name, which is empty: a rule's ``resourceNames`` never matches it (the API server's
``matchesResourceRules`` compares the request's name), so a guard that names its ConfigMap there lets anyone
with ``deletecollection`` on ConfigMaps remove the policy. The guard must find the name in the objects.

CEL cannot be run here: the match condition is read for the one form the component writes, and the evaluator
below follows the API server's matching (namespace selector, rules, resource names, match conditions).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from deploy.k8s import OVERLAY, Object, render, the

GITOPS = "system:serviceaccount:argocd:argocd-application-controller"
NAME_CONDITION = re.compile(
    r"\(request\.operation == 'DELETE' \? oldObject : object\)\.metadata\.name == '([a-z0-9.-]+)'")
ALLOWED_USER = re.compile(r"request\.userInfo\.username == '([^']+)'")


@dataclass(frozen=True)
class Request:
    """What admission is given: the operation, the request's namespace and name, the objects' names."""

    operation: str
    namespace: str
    name: str
    object_name: str | None
    old_object_name: str | None
    user: str
    resource: str = "configmaps"


def selected(policy: Object, request: Request) -> bool:
    """Whether the admission policy applies to the request (matchConstraints, then matchConditions)."""
    spec = policy["spec"]
    constraints = spec["matchConstraints"]
    labels = constraints.get("namespaceSelector", {}).get("matchLabels", {})
    if labels and labels != {"kubernetes.io/metadata.name": request.namespace}:
        return False
    rules = [rule for rule in constraints["resourceRules"] if request.resource in rule["resources"]
             and request.operation in rule["operations"]
             and (not rule.get("resourceNames") or request.name in rule["resourceNames"])]
    if not rules:
        return False
    for condition in spec.get("matchConditions", []):
        form = NAME_CONDITION.fullmatch(condition["expression"])
        assert form, f"no evaluator here for the CEL {condition['expression']!r}: teach this test its form"
        name = request.old_object_name if request.operation == "DELETE" else request.object_name
        if name != form.group(1):
            return False
    return True


def admitted(docs: list[Object], request: Request) -> bool:
    policy = the(docs, "ValidatingAdmissionPolicy")
    binding = the(docs, "ValidatingAdmissionPolicyBinding")
    if binding["spec"]["policyName"] != policy["metadata"]["name"] or "Deny" not in binding["spec"][
            "validationActions"]:
        return True
    if not selected(policy, request):
        return True
    for validation in policy["spec"]["validations"]:
        allowed = ALLOWED_USER.fullmatch(validation["expression"])
        assert allowed, f"no evaluator here for the CEL {validation['expression']!r}"
        if request.user != allowed.group(1):
            return False
    return True


@cache
def _rendered() -> tuple[Object, ...]:
    return tuple(render(OVERLAY))


def rendered() -> list[Object]:
    return copy.deepcopy(list(_rendered()))


def requests(user: str) -> dict[str, Request]:
    """Every way to change or remove the policy ConfigMap, by ``user``."""
    return {
        "update (edit, apply, a server-side apply's PATCH)": Request("UPDATE", "ccweb", "ccweb-policy", "ccweb-policy",
                                                                     "ccweb-policy", user),
        "create (after a delete)": Request("CREATE", "ccweb", "ccweb-policy", "ccweb-policy", None, user),
        "delete": Request("DELETE", "ccweb", "ccweb-policy", None, "ccweb-policy", user),
        "delete the collection (deletecollection: the request has no name)": Request(
            "DELETE", "ccweb", "", None, "ccweb-policy", user),
    }


ATTACKS = requests("alice@example-corp.com")


@pytest.mark.parametrize("request_", ATTACKS.values(), ids=ATTACKS.keys())
def test_nobody_but_the_gitops_controller_changes_or_removes_the_policy(request_: Request) -> None:
    assert not admitted(rendered(), request_)


@pytest.mark.parametrize("request_", requests(GITOPS).values(), ids=requests(GITOPS).keys())
def test_the_gitops_controller_does(request_: Request) -> None:
    assert admitted(rendered(), request_)


@pytest.mark.parametrize("request_", [
    pytest.param(Request("UPDATE", "ccweb", "kube-root-ca.crt", "kube-root-ca.crt", "kube-root-ca.crt",
                         "system:serviceaccount:kube-system:root-ca-cert-publisher"), id="another-configmap"),
    pytest.param(Request("DELETE", "ccweb", "", None, "other", "alice@example-corp.com"),
                 id="a-collection-delete-of-another-configmap"),
    pytest.param(Request("UPDATE", "other", "ccweb-policy", "ccweb-policy", "ccweb-policy", "alice@example-corp.com"),
                 id="the-name-in-another-namespace"),
])
def test_other_configmaps_are_not_guarded(request_: Request) -> None:
    assert admitted(rendered(), request_)


def test_the_evaluator_sees_resource_names_miss_a_collection_delete() -> None:
    """The API server's rule: resourceNames compares the request's name, empty for a deletecollection."""
    docs = rendered()
    policy: Any = the(docs, "ValidatingAdmissionPolicy")
    policy["spec"].pop("matchConditions", None)
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    rule["resourceNames"] = ["ccweb-policy"]
    assert not admitted(docs, ATTACKS["delete"])
    assert admitted(docs, ATTACKS["delete the collection (deletecollection: the request has no name)"])
