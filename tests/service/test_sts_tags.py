"""Session tags on the wire: BotoSTS sends ``Tags.member.N`` and ``TransitiveTagKeys.member.N`` exactly as
botocore's own serializer would (and nothing new without tags), moto's server reads them with AWS's model, the
STS stand-in records them; and STS's refusals that tags cause reach the person as sentences an operator can act
on, AWS's own words only in the log."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode

import boto3
import botocore.session
import pytest
from botocore.serialize import create_serializer

from ccweb.errors import UpstreamUnavailable
from ccweb.sandbox.sts import THROTTLING, DevSTSStore, StsFault, create_sts_app
from ccweb.sessions import SessionCache
from ccweb.signing import AwsCredentials
from ccweb.sts import AssumeRoleRequest, BotoSTS, StsError
from ccweb.sts_errors import unavailable
from support import Asked, FakeTime, assume, fake_retry, isolate_aws, serve, serve_json, serve_moto

ROLE = "arn:aws:iam::111122223333:role/ccweb-developers"
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["codecommit:GitPull"], "Resource": ["arn:aws:codecommit:*:111122223333:*"]}]})
UNTAGGED = AssumeRoleRequest(ROLE, "ann@example.com", "ann@example.com", POLICY, 3600)
TAGS = (("team", "payments"), ("cost-center", "4711"), ("display name", "Ann Ōno"), ("empty", ""))
TAGGED = AssumeRoleRequest(ROLE, "ann@example.com", "ann@example.com", POLICY, 3600, tags=TAGS,
                           transitive_tag_keys=("team", "cost-center"))


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_aws(monkeypatch)


def botocore_form(request: AssumeRoleRequest) -> dict[str, str]:
    """The form botocore's own serializer makes of ``request``, with AWS's model of AssumeRole."""
    operation = botocore.session.get_session().get_service_model("sts").operation_model("AssumeRole")
    params: dict[str, Any] = {
        "RoleArn": request.role_arn, "RoleSessionName": request.session_name,
        "SourceIdentity": request.source_identity, "Policy": request.policy,
        "DurationSeconds": request.duration_seconds,
    }
    if request.tags:
        params["Tags"] = [{"Key": key, "Value": value} for key, value in request.tags]
    if request.transitive_tag_keys:
        params["TransitiveTagKeys"] = list(request.transitive_tag_keys)
    body: dict[str, Any] = create_serializer("query").serialize_to_request(params, operation)["body"]
    return {key: str(value) for key, value in body.items()}


ISSUED = (b'<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials>'
          b"<AccessKeyId>ASIAWIRE</AccessKeyId><SecretAccessKey>wire-secret</SecretAccessKey><SessionToken>wire-token"
          b"</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult>"
          b"</AssumeRoleResponse>")


def sent(request: AssumeRoleRequest) -> bytes:
    """The body BotoSTS sends for ``request``, as a loopback STS receives it."""
    bodies: list[bytes] = []

    def answer(asked: Asked) -> tuple[int, bytes]:
        bodies.append(asked.body)
        return 200, ISSUED

    with serve_json(answer) as url:
        [creds] = assume(BotoSTS(session=boto3.session.Session(), endpoint_url=url), request)
    assert creds.access_key_id == "ASIAWIRE"
    [body] = bodies
    return body


def recorded(request: AssumeRoleRequest) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """What the STS stand-in recorded of ``request``'s session: its tags and transitive keys."""
    store = DevSTSStore()
    with serve(create_sts_app(store)) as url:
        assume(BotoSTS(session=boto3.session.Session(), endpoint_url=url), request)
    [session] = store.calls
    return session.tags, session.transitive_tag_keys


def test_tags_go_as_botocore_itself_would_send_them_and_the_stand_in_records_them(aws_env: None) -> None:
    form = {key: values[0] for key, values in parse_qs(sent(TAGGED).decode(), keep_blank_values=True).items()}
    assert form == botocore_form(TAGGED)
    assert {key: value for key, value in form.items() if "member" in key} == {
        "Tags.member.1.Key": "team", "Tags.member.1.Value": "payments",
        "Tags.member.2.Key": "cost-center", "Tags.member.2.Value": "4711",
        "Tags.member.3.Key": "display name", "Tags.member.3.Value": "Ann Ōno",
        "Tags.member.4.Key": "empty", "Tags.member.4.Value": "",
        "TransitiveTagKeys.member.1": "team", "TransitiveTagKeys.member.2": "cost-center",
    }
    assert recorded(TAGGED) == (TAGS, ("team", "cost-center"))


def test_a_request_without_tags_is_sent_byte_for_byte_as_before(aws_env: None) -> None:
    body = sent(UNTAGGED)
    assert body == urlencode({
        "Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": ROLE, "RoleSessionName": "ann@example.com",
        "SourceIdentity": "ann@example.com", "Policy": POLICY, "DurationSeconds": "3600",
    }).encode()
    assert parse_qs(body.decode()) == {key: [value] for key, value in botocore_form(UNTAGGED).items()}
    assert recorded(UNTAGGED) == ((), ())


def test_moto_reads_the_tags_with_aws_s_model_and_issues_the_session(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto's server parses each request with botocore's model of the operation (as AWS defines it): what it
    read is recorded on its way to moto's own AssumeRole."""
    from moto.sts.responses import TokenResponse

    read: list[tuple[Any, Any]] = []
    original = TokenResponse.assume_role

    def recording(self: TokenResponse) -> Any:
        read.append((self._get_param("Tags"), self._get_param("TransitiveTagKeys")))
        return original(self)

    monkeypatch.setattr(TokenResponse, "assume_role", recording)
    with serve_moto() as url:
        issued = assume(BotoSTS(session=boto3.session.Session(), endpoint_url=url), TAGGED, UNTAGGED)
    assert [creds.access_key_id[:4] for creds in issued] == ["ASIA", "ASIA"]
    assert read[0] == ([{"Key": key, "Value": value} for key, value in TAGS], ["team", "cost-center"])
    assert read[1] == (None, None)


# --- STS's refusals that tags cause, as the person sees them --------------------------------------------------

TAG_SESSION_DENIED = ("User: arn:aws:sts::111122223333:assumed-role/ccweb-service/i-0abc is not authorized to "
                      f"perform: sts:TagSession on resource: {ROLE}")
PACKED = "Packed size of session tags consumes 112% of allotted space."

REFUSALS = [  # AWS's code and words, the reason, what the sentence says
    pytest.param("PackedPolicyTooLarge", PACKED, "sts_packed_policy_too_large",
                 "session policy and session tags together are over STS's packed size limit", id="packed-too-large"),
    pytest.param("AccessDenied", TAG_SESSION_DENIED, "sts_tag_session_denied",
                 "allow sts:TagSession in that role's trust policy", id="tag-session-denied"),
    pytest.param("InvalidParameterValue", "Duplicate tag keys found. Please note that Tag keys are case insensitive.",
                 "sts_tags_refused", "check this rule's session_tags and transitive_session_tags", id="duplicate-keys"),
    pytest.param("InvalidParameterValue", "One of the specified transitive tag keys can't be set because it "
                 "conflicts with a transitive tag key from the calling session.", "sts_tags_refused",
                 "check this rule's session_tags and transitive_session_tags", id="transitive-conflict"),
    pytest.param("ValidationError", "1 validation error detected: Value 'x' at 'tags.1.member.value' failed to "
                 "satisfy constraint: Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*",
                 "sts_tags_refused", "check this rule's session_tags", id="tag-validation"),
    pytest.param("AccessDenied", f"User: arn:aws:iam::111122223333:user/x is not authorized to perform: "
                 f"sts:AssumeRole on resource: {ROLE}", "sts_refused", "check that role's trust policy",
                 id="assume-role-denied"),
    pytest.param("InvalidParameterValue", "RoleSessionName is invalid", "sts_refused",
                 "check that role's trust policy", id="other-invalid-parameter"),
]


@pytest.mark.parametrize(("code", "message", "reason", "sentence"), REFUSALS)
def test_each_refusal_is_an_operator_s_503_with_aws_s_words_only_in_the_log(
    caplog: pytest.LogCaptureFixture, code: str, message: str, reason: str, sentence: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="ccweb.sessions"):
        error = unavailable(StsError(code, message, retryable=False), ROLE)
    assert (error.status, error.error, error.reason, error.retry_after) == (503, "upstream_unavailable", reason, 60)
    assert sentence in error.detail
    assert ROLE in error.detail and "ccweb operators" in error.detail
    assert message not in error.detail
    for words in ("User: arn:aws:sts", "Duplicate tag keys", "calling session", "112%", "at 'tags.1"):
        assert words not in error.detail
    assert [r.getMessage() for r in caplog.records] == [f"AssumeRole {ROLE} refused by AWS: {code}: {message}"]


def test_the_packed_size_refusal_names_pod_identity_s_session_tags_too() -> None:
    """EKS Pod Identity's six session tags are transitive: they pass on to ccweb's sessions and fill STS's packed
    space before the rule's own; the sentence says where to turn them off."""
    error = unavailable(StsError("PackedPolicyTooLarge", PACKED, retryable=False), ROLE)
    assert "fewer or shorter session tags or fewer repository patterns" in error.detail
    assert "on EKS Pod Identity, to disable the session tags of its Pod Identity association" in error.detail


def test_a_retryable_failure_logs_nothing_here_and_says_try_again(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ccweb.sessions"):
        error = unavailable(StsError("Throttling", "Packed tags Rate exceeded", retryable=True), ROLE)
    assert (error.reason, error.retry_after) == ("sts_unavailable", 5)
    assert caplog.records == []


@pytest.fixture
def stand_in(aws_env: None) -> Iterator[tuple[DevSTSStore, str]]:
    store = DevSTSStore()
    with serve(create_sts_app(store)) as url:
        yield store, url


def through_the_cache(url: str, request: AssumeRoleRequest) -> tuple[UpstreamUnavailable, int]:
    """``request`` through BotoSTS and the session cache (with its retries on a fake clock): the 503, and how
    many calls reached STS."""
    cache = SessionCache(BotoSTS(session=boto3.session.Session(), endpoint_url=url),
                         retry=fake_retry(FakeTime(), budget=1.0))

    async def run() -> UpstreamUnavailable:
        try:
            with pytest.raises(UpstreamUnavailable) as raised:
                await cache.get(("rule", "corp", "ann", "tags"), request)
            return raised.value
        finally:
            await cache._sts.aclose()  # type: ignore[attr-defined]

    error = asyncio.run(run())
    return error, cache.sts_calls


@pytest.mark.parametrize(("request_", "fault", "reason"), [
    pytest.param(TAGGED, StsFault(400, "PackedPolicyTooLarge", PACKED), "sts_packed_policy_too_large",
                 id="packed-too-large"),
    pytest.param(TAGGED, StsFault(403, "AccessDenied", TAG_SESSION_DENIED), "sts_tag_session_denied",
                 id="tag-session-denied"),
    pytest.param(AssumeRoleRequest(ROLE, "ann", "ann", POLICY, 900, tags=(("team", "a"), ("Team", "b"))), None,
                 "sts_tags_refused", id="keys-equal-but-for-case-by-the-stand-in"),
    pytest.param(AssumeRoleRequest(ROLE, "ann", "ann", POLICY, 900, tags=(("team", "a"),),
                                   transitive_tag_keys=("org",)), None, "sts_tags_refused",
                 id="transitive-key-no-tag-by-the-stand-in"),
    pytest.param(AssumeRoleRequest(ROLE, "ann", "ann", POLICY, 900, tags=(("team", "a#b"),)), None,
                 "sts_tags_refused", id="value-outside-the-alphabet-by-the-stand-in"),
])
def test_refusals_reach_the_person_once_and_unretried(
    stand_in: tuple[DevSTSStore, str], caplog: pytest.LogCaptureFixture, request_: AssumeRoleRequest,
    fault: StsFault | None, reason: str,
) -> None:
    store, url = stand_in
    if fault is not None:
        store.faults.append(fault)
    with caplog.at_level(logging.INFO, logger="ccweb.sessions"):
        error, calls = through_the_cache(url, request_)
    assert (error.reason, error.retry_after, calls) == (reason, 60, 1)
    assert store.calls == []
    refused = [r.getMessage() for r in caplog.records if "refused by AWS" in r.getMessage()]
    assert len(refused) == 1 and ROLE in refused[0]
    assert "DEVSECRET" not in caplog.text and "service-secret-example" not in caplog.text


def test_a_throttled_tagged_call_is_retried_and_then_recorded_once(stand_in: tuple[DevSTSStore, str]) -> None:
    store, url = stand_in
    store.faults.append(THROTTLING)
    cache = SessionCache(BotoSTS(session=boto3.session.Session(), endpoint_url=url),
                         retry=fake_retry(FakeTime(), budget=1.0))

    async def run() -> AwsCredentials:
        try:
            return await cache.get(("rule", "corp", "ann", "tags"), TAGGED)
        finally:
            await cache._sts.aclose()  # type: ignore[attr-defined]

    creds = asyncio.run(run())
    [session] = store.calls
    assert session.access_key_id == creds.access_key_id
    assert (session.tags, cache.sts_calls) == (TAGS, 2)
