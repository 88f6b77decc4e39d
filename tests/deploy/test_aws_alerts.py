"""deploy/aws/ccweb-alerts.yaml: the EventBridge rule alerts on every AssumeRole of a ccweb target role that
names no SourceIdentity (allowed or refused), and on nothing else; only that rule may publish to its encrypted
topic.

The rule's event pattern is read from the rendered template and matched against CloudTrail events as EventBridge
documents its operators ("Creating event patterns" and "Content filtering" in the Amazon EventBridge User Guide):
a field's list of values matches if any of them does (a list in the event matches if any element does), nested
objects must all match, ``prefix`` compares the start of a string, ``exists`` whether a leaf field is there. The
matcher refuses any other operator, so a pattern it cannot read fails the test rather than passing it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from deploy.test_cloudformation import ACCOUNT, DEPLOY, REGION, SERVICE_ROLE_ARN, TARGET, Renderer, as_list, load

ALERTS = DEPLOY / "ccweb-alerts.yaml"
RULE_ARN = "<AssumeRoleWithoutSourceIdentity.Arn>"


def render(**parameters: str) -> dict[str, dict[str, Any]]:
    return Renderer(load(ALERTS), parameters).resources()


# ------------------------------------------------------------------------------- EventBridge's matching

def _value_matches(matcher: Any, value: Any, present: bool) -> bool:
    if isinstance(matcher, Mapping):
        ((operator, operand),) = matcher.items()
        if operator == "exists":
            return present is operand
        if operator == "prefix":
            return present and isinstance(value, str) and value.startswith(operand)
        raise AssertionError(f"the matcher does not know the operator {operator!r}")
    return present and value == matcher


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """EventBridge's answer: every field of the pattern matches the event."""
    for field, expected in pattern.items():
        present = field in event
        value = event.get(field)
        if isinstance(expected, Mapping):  # a nested object: the event's field must be an object matching it
            if not (isinstance(value, Mapping) and matches(expected, value)):
                return False
            continue
        assert isinstance(expected, list) and expected, f"{field}: a pattern's leaf is a non-empty list"
        candidates = value if isinstance(value, list) else [value]
        if not any(_value_matches(m, v, present) for m in expected for v in candidates or [None]):
            return False
    return True


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [
        ({"a": ["x"]}, {"a": "x"}, True),
        ({"a": ["x", "y"]}, {"a": "y"}, True),
        ({"a": ["x"]}, {"a": ["z", "x"]}, True),
        ({"a": ["x"]}, {}, False),
        ({"a": [{"prefix": "ab"}]}, {"a": "abc"}, True),
        ({"a": [{"prefix": "ab"}]}, {"a": "Abc"}, False),
        ({"a": [{"exists": False}]}, {}, True),
        ({"a": [{"exists": False}]}, {"a": "x"}, False),
        ({"a": [{"exists": True}]}, {"a": "x"}, True),
        ({"n": {"a": ["x"]}}, {"n": {"a": "x"}}, True),
        ({"n": {"a": [{"exists": False}]}}, {}, False),
    ],
    ids=["equal", "any-of", "list-in-event", "absent", "prefix", "prefix-case", "exists-false-absent",
         "exists-false-present", "exists-true", "nested", "nested-object-absent"],
)
def test_the_matcher_reads_patterns_as_eventbridge_documents_them(
    pattern: dict[str, Any], event: dict[str, Any], expected: bool
) -> None:
    assert matches(pattern, event) is expected


def test_the_matcher_refuses_an_operator_it_does_not_know() -> None:
    with pytest.raises(AssertionError, match="anything-but"):
        matches({"a": [{"anything-but": "x"}]}, {"a": "y"})


# ------------------------------------------------------------------------------------------ the rule

TARGET_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ccweb/developers"
# CloudTrail's record of an AssumeRole as EventBridge delivers it (the CloudTrail User Guide's shape).
ASSUME_ROLE: dict[str, Any] = {
    "version": "0",
    "id": "6f2c2f8e-0000-4000-8000-000000000000",
    "detail-type": "AWS API Call via CloudTrail",
    "source": "aws.sts",
    "account": ACCOUNT,
    "time": "2025-06-02T10:00:00Z",
    "region": REGION,
    "resources": [],
    "detail": {
        "eventVersion": "1.08",
        "userIdentity": {"type": "AssumedRole", "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/someone/x",
                         "accountId": ACCOUNT},
        "eventTime": "2025-06-02T10:00:00Z",
        "eventSource": "sts.amazonaws.com",
        "eventName": "AssumeRole",
        "awsRegion": REGION,
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": {"roleArn": TARGET_ROLE, "roleSessionName": "check", "durationSeconds": 900},
        "responseElements": {"assumedRoleUser": {"arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/developers/check"}},
        "readOnly": True,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    },
}


def event(*, role: str = TARGET_ROLE, source_identity: str | None = None, refused: bool = False,
          name: str = "AssumeRole") -> dict[str, Any]:
    built = copy.deepcopy(ASSUME_ROLE)
    detail: dict[str, Any] = built["detail"]
    detail["eventName"] = name
    detail["requestParameters"]["roleArn"] = role
    if source_identity is not None:
        detail["requestParameters"]["sourceIdentity"] = source_identity
    if refused:
        detail["errorCode"] = "AccessDenied"
        detail["errorMessage"] = f"User: … is not authorized to perform: sts:AssumeRole on resource: {role}"
        detail["responseElements"] = None
    return built


@pytest.fixture(scope="module")
def rule() -> dict[str, Any]:
    properties: dict[str, Any] = render()["AssumeRoleWithoutSourceIdentity"]["Properties"]
    return properties


@pytest.mark.parametrize(
    ("sample", "alerts"),
    [
        (event(), True),
        (event(refused=True), True),
        (event(source_identity="ann@example.com"), False),
        (event(source_identity="ann@example.com", refused=True), False),
        (event(role=f"arn:aws:iam::{ACCOUNT}:role/ops/admin"), False),
        (event(role=SERVICE_ROLE_ARN), False),
        (event(role=f"arn:aws:iam::{ACCOUNT}:role/ccweb-developers"), False),
        (event(role="arn:aws:iam::444455556666:role/ccweb/developers"), False),
        (event(name="AssumeRoleWithWebIdentity"), False),
    ],
    ids=["no-source-identity", "refused-without-source-identity", "ccweb-s-own", "refused-with-source-identity",
         "another-role", "the-service-role", "a-name-prefix-not-the-path", "another-account", "another-call"],
)
def test_the_rule_alerts_on_assume_role_of_a_target_role_without_source_identity_only(
    rule: dict[str, Any], sample: dict[str, Any], alerts: bool
) -> None:
    assert matches(rule["EventPattern"], sample) is alerts


def test_the_rule_watches_the_path_the_target_roles_are_made_at(rule: dict[str, Any]) -> None:
    default_path = load(TARGET)["Parameters"]["RolePath"]["Default"]
    assert load(ALERTS)["Parameters"]["TargetRolePath"]["Default"] == default_path
    elsewhere = render(TargetRolePath="/teams/ccweb/")["AssumeRoleWithoutSourceIdentity"]["Properties"]
    assert matches(elsewhere["EventPattern"], event(role=f"arn:aws:iam::{ACCOUNT}:role/teams/ccweb/developers"))
    assert not matches(elsewhere["EventPattern"], event())


def test_the_rule_sees_read_only_management_events_and_sends_them_to_the_topic(rule: dict[str, Any]) -> None:
    """CloudTrail may class AssumeRole as read-only; a rule in the plain ENABLED state would never see it then."""
    assert rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    assert rule["EventBusName"] == "default"
    assert rule["Targets"] == [{"Id": "alert-topic", "Arn": "<AlertTopic>"}]


# ----------------------------------------------------------------------------------------- the topic

def _publish_allowed(statements: list[dict[str, Any]], principal: Mapping[str, str], context: Mapping[str, str],
                     *, identity_allows: bool) -> bool:
    """IAM's answer for sns:Publish on the topic: an explicit Deny wins; else the topic's Allow or (same account)
    the principal's own policy. ArnEquals fails and ArnNotEquals holds when the key is absent."""

    def holds(condition: Mapping[str, Mapping[str, str]]) -> bool:
        for operator, tests in condition.items():
            for key, expected in tests.items():
                equal = context.get(key) in as_list(expected)
                if operator == "ArnEquals" and not equal:
                    return False
                if operator == "ArnNotEquals" and equal:
                    return False
                if operator not in ("ArnEquals", "ArnNotEquals"):
                    raise AssertionError(f"the evaluator does not know {operator}")
        return True

    def applies(statement: dict[str, Any]) -> bool:
        named = statement["Principal"]
        if named not in ("*", principal):
            return False
        return "sns:Publish" in as_list(statement["Action"]) and holds(statement.get("Condition", {}))

    effects = {s["Effect"] for s in statements if applies(s)}
    return "Deny" not in effects and ("Allow" in effects or identity_allows)


@pytest.mark.parametrize(
    ("principal", "context", "identity_allows", "allowed"),
    [
        ({"Service": "events.amazonaws.com"}, {"aws:SourceArn": RULE_ARN}, False, True),
        ({"Service": "events.amazonaws.com"}, {"aws:SourceArn": "arn:aws:events:eu-west-1:444455556666:rule/x"},
         False, False),
        ({"Service": "events.amazonaws.com"}, {}, False, False),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:role/admin"}, {}, True, False),
        ({"AWS": "arn:aws:iam::444455556666:root"}, {}, False, False),
    ],
    ids=["this-rule", "another-rule", "eventbridge-without-source", "an-admin-of-this-account", "another-account"],
)
def test_only_the_rule_may_publish(
    principal: dict[str, str], context: dict[str, str], identity_allows: bool, allowed: bool
) -> None:
    policy = render()["AlertTopicPolicy"]["Properties"]
    assert policy["Topics"] == ["<AlertTopic>"]
    statements = policy["PolicyDocument"]["Statement"]
    assert all(s["Resource"] == "<AlertTopic>" for s in statements)
    assert _publish_allowed(statements, principal, context, identity_allows=identity_allows) is allowed


def test_the_topic_is_encrypted_with_a_key_eventbridge_of_this_account_may_use() -> None:
    resources = render()
    assert resources["AlertTopic"]["Properties"]["KmsMasterKeyId"] == "<AlertKey>", "not alias/aws/sns"
    key = resources["AlertKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    (events,) = [s for s in key["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": "events.amazonaws.com"}]
    assert set(events["Action"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}
    assert events["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


@pytest.mark.parametrize(("email", "subscribed"), [("", False), ("secops@example.com", True)], ids=["none", "email"])
def test_an_email_subscription_only_when_an_address_is_given(email: str, subscribed: bool) -> None:
    resources = render(AlertEmail=email)
    subscriptions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SNS::Subscription"]
    expected = [{"TopicArn": "<AlertTopic>", "Protocol": "email", "Endpoint": email}] if subscribed else []
    assert subscriptions == expected
