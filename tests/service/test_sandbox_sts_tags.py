"""The STS stand-in checks session tags as STS does (AWS's model of AssumeRole: at most 50 tags and transitive
keys, a key of 1-128 and a value of 0-256 characters in STS's alphabet; keys unique without regard to case;
every transitive key one of the tags), answering STS's own codes and words, and records what it accepts."""

from __future__ import annotations

import asyncio

import botocore.session
import httpx
import pytest

from ccweb.sandbox.sts import KEY_PATTERN, VALUE_PATTERN, DevSTSStore, StsFault, create_sts_app, tags_of
from ccweb.tags import MAX_KEY_LENGTH, MAX_SESSION_TAGS, MAX_VALUE_LENGTH

ROLE = "arn:aws:iam::111122223333:role/ccweb-developers"
Tags = tuple[tuple[str | None, str | None], ...]


def assume(tags: Tags, transitive: tuple[str, ...] = ()) -> DevSTSStore:
    store = DevSTSStore()
    store.assume_role(ROLE, "ann", "ann", None, 900, tags=tags, transitive_tag_keys=transitive)
    return store


def test_the_limits_are_aws_s_own_model_s() -> None:
    """botocore's model of AssumeRole is AWS's definition of the operation's parameters."""
    shape = botocore.session.get_session().get_service_model("sts").operation_model("AssumeRole").input_shape
    tags, transitive = shape.members["Tags"], shape.members["TransitiveTagKeys"]
    key, value = tags.member.members["Key"].metadata, tags.member.members["Value"].metadata
    assert tags.metadata["max"] == transitive.metadata["max"] == MAX_SESSION_TAGS
    assert (key["min"], key["max"], key["pattern"]) == (1, MAX_KEY_LENGTH, KEY_PATTERN)
    assert (value["min"], value["max"], value["pattern"]) == (0, MAX_VALUE_LENGTH, VALUE_PATTERN)
    assert transitive.member.metadata["pattern"] == KEY_PATTERN


FIFTY = tuple((f"key{n}", f"value {n}") for n in range(MAX_SESSION_TAGS))


@pytest.mark.parametrize(("tags", "transitive"), [
    pytest.param(FIFTY, tuple(key for key, _ in FIFTY), id="fifty-tags-all-transitive"),
    pytest.param((("k" * MAX_KEY_LENGTH, "v" * MAX_VALUE_LENGTH),), (), id="longest-key-and-value"),
    pytest.param((("team", ""),), (), id="empty-value"),
    pytest.param((("Abteilung Straße", "Zoë Ōno 42"), ("a_b.c:d/e=f+g-h@i", "_.:/=+-@")), (), id="alphabet"),
    pytest.param((("Team", "payments"),), ("team",), id="transitive-key-in-another-case"),
])
def test_what_sts_accepts_is_recorded(tags: Tags, transitive: tuple[str, ...]) -> None:
    [session] = assume(tags, transitive).calls
    assert session.tags == tags
    assert session.transitive_tag_keys == transitive


FIFTY_ONE = (*FIFTY, ("key50", "one too many"))


@pytest.mark.parametrize(("tags", "transitive", "code", "words"), [
    pytest.param(FIFTY_ONE, (), "ValidationError", "at 'tags' failed to satisfy constraint: Member must have length "
                 "less than or equal to 50", id="fifty-one-tags"),
    pytest.param(FIFTY, tuple(key for key, _ in FIFTY_ONE), "ValidationError", "at 'transitiveTagKeys' failed to "
                 "satisfy constraint: Member must have length less than or equal to 50", id="fifty-one-transitive"),
    pytest.param((("k" * 129, "v"),), (), "ValidationError", "at 'tags.1.member.key' failed to satisfy constraint: "
                 "Member must have length less than or equal to 128", id="key-too-long"),
    pytest.param((("", "v"),), (), "ValidationError", "Value '' at 'tags.1.member.key' failed to satisfy "
                 "constraint: Member must have length greater than or equal to 1", id="empty-key"),
    pytest.param((("team", "v" * 257),), (), "ValidationError", "at 'tags.1.member.value' failed to satisfy "
                 "constraint: Member must have length less than or equal to 256", id="value-too-long"),
    pytest.param((("ok", "v"), ("team!", "v")), (), "ValidationError", "Value 'team!' at 'tags.2.member.key' failed "
                 f"to satisfy constraint: Member must satisfy regular expression pattern: {KEY_PATTERN}",
                 id="key-outside-the-alphabet"),
    pytest.param((("team", "a#b"),), (), "ValidationError", "Value 'a#b' at 'tags.1.member.value' failed to satisfy "
                 f"constraint: Member must satisfy regular expression pattern: {VALUE_PATTERN}",
                 id="value-outside-the-alphabet"),
    pytest.param((("team", "line\nbreak"),), (), "ValidationError", "at 'tags.1.member.value'", id="value-control"),
    pytest.param((("team", None),), (), "ValidationError", "Value null at 'tags.1.member.value' failed to satisfy "
                 "constraint: Member must not be null", id="value-missing"),
    pytest.param(((None, "v"),), (), "ValidationError", "Value null at 'tags.1.member.key'", id="key-missing"),
    pytest.param((("team", "v"),), ("bad key!",), "ValidationError", "at 'transitiveTagKeys.1.member' failed to "
                 "satisfy constraint: Member must satisfy regular expression pattern", id="transitive-key-alphabet"),
    pytest.param((("team", "a"), ("TEAM", "b")), (), "InvalidParameterValue",
                 "Duplicate tag keys found. Please note that Tag keys are case insensitive.",
                 id="keys-equal-but-for-case"),
    pytest.param((("team", "a"),), ("org",), "InvalidParameterValue",
                 "The specified transitive tag key must be included in the requested tags.", id="transitive-not-a-tag"),
])
def test_what_sts_refuses_is_refused_with_its_code_and_words(
    tags: Tags, transitive: tuple[str, ...], code: str, words: str
) -> None:
    store = DevSTSStore()
    with pytest.raises(StsFault) as raised:
        store.assume_role(ROLE, "ann", "ann", None, 900, tags=tags, transitive_tag_keys=transitive)
    assert (raised.value.status, raised.value.code) == (400, code)
    assert words in raised.value.message
    assert store.calls == []


def test_every_broken_constraint_is_listed_as_sts_lists_them() -> None:
    with pytest.raises(StsFault) as raised:
        assume((("k" * 129 + "!", "v" * 300),))
    message = raised.value.message
    assert message.startswith("3 validation errors detected: Value '")
    assert message.count("; Value '") == 2
    assert "Member must have length less than or equal to 128" in message
    assert f"Member must satisfy regular expression pattern: {KEY_PATTERN}" in message
    assert "Member must have length less than or equal to 256" in message


def test_the_form_s_members_are_read_in_their_numbers_order() -> None:
    params = {"Action": "AssumeRole", "Tags.member.2.Value": "b", "Tags.member.10.Key": "ten",
              "Tags.member.1.Key": "one", "Tags.member.2.Key": "two", "Tags.member.10.Value": "",
              "Tags.member.1.Value": "a", "Tags.member.3.Key": "no value", "TransitiveTagKeys.member.2": "two",
              "TransitiveTagKeys.member.1": "one", "Tags.1.Key": "not a member", "Tags.member.0.Key": "zero"}
    assert tags_of(params) == ((("one", "a"), ("two", "b"), ("no value", None), ("ten", "")), ("one", "two"))


def test_over_http_the_stand_in_records_the_tags_and_answers_sts_s_error_xml() -> None:
    transport = httpx.ASGITransport(app=create_sts_app(store := DevSTSStore()))
    form = {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": ROLE, "RoleSessionName": "ann",
            "DurationSeconds": "900", "Tags.member.1.Key": "team", "Tags.member.1.Value": "payments",
            "TransitiveTagKeys.member.1": "team"}
    signed = {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/x"}

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url="http://sts") as client:
            issued = await client.post("/", data=form, headers=signed)
            refused = await client.post("/", data={**form, "Tags.member.2.Key": "Team", "Tags.member.2.Value": "x"},
                                        headers=signed)
            return issued, refused

    issued, refused = asyncio.run(scenario())
    assert issued.status_code == 200 and "<AccessKeyId>ASIA" in issued.text
    [session] = store.calls
    assert (session.tags, session.transitive_tag_keys) == ((("team", "payments"),), ("team",))
    assert refused.status_code == 400
    assert "<Type>Sender</Type><Code>InvalidParameterValue</Code><Message>Duplicate tag keys found." in refused.text
    assert len(store.calls) == 1
