"""Session tags for attribute-based access: a rule's ``session_tags`` each take a claim's value (a string as it
is, a number or a boolean as STS's string) into the AssumeRole request, in the rule's order, with its
``transitive_session_tags``. A claim the token lacks, or holds as no tag value (a list, an object, too long, a
character STS refuses), is a 403 naming the claim, and STS is never asked. A person whose tag values change gets
a session of their own; ``/v1/whoami`` and ``ccweb explain`` show the tags a request would carry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.explain import explain
from ccweb.policy import Granted, Repository, Untagged, compile_policy
from ccweb.policytest import Case, differences
from ccweb.sandbox.issuer import DevIssuer
from support import RecordingSTS, serve_issuer

ROLE = "arn:aws:iam::111122223333:role/abac"
BODY = {"protocol": "https", "host": "git-codecommit.us-east-1.amazonaws.com", "path": "v1/repos/app"}
TAGS = {"team": "team", "cost-center": "/org/cost_center", "Contractor": "contractor"}
TAGGED = {"name": "abac", "issuer": "corp", "claims": {"email_verified": True}, "role_arn": ROLE,
          "repositories": ["*"], "access": "write", "session_tags": TAGS, "transitive_session_tags": ["team"]}
ANN = {"sub": "u-ann", "email": "ann@example.com", "email_verified": True, "team": "payments",
       "org": {"cost_center": 4711}, "contractor": False}


def source(url: str = "https://idp.example.com") -> dict[str, Any]:
    return {"issuers": [{"name": "corp", "issuer": url, "audiences": ["ccweb"]}], "rules": [TAGGED]}


POLICY = compile_policy(parse_config(source()))
HERE = Repository("app", "us-east-1")


def test_a_grant_carries_each_tag_in_the_rules_order_as_sts_strings() -> None:
    decision = POLICY.decide("corp", ANN, HERE)
    assert isinstance(decision, Granted)
    assert decision.request.tags == (("team", "payments"), ("cost-center", "4711"), ("Contractor", "false"))
    assert decision.request.transitive_tag_keys == ("team",)


@pytest.fixture(scope="module")
def idp() -> Iterator[DevIssuer]:
    with serve_issuer() as served:
        yield served


async def ask(idp: DevIssuer, *tokens_claims: dict[str, Any]) -> tuple[list[httpx.Response], RecordingSTS]:
    """``POST /v1/credentials`` once with a token of each of ``tokens_claims``, in turn, then ``GET /v1/whoami``
    with the last."""
    sts = RecordingSTS()
    async with httpx.AsyncClient() as http:
        app = create_app(parse_config(source(idp.issuer_url)), sts=sts, http=http)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccweb") as client:
            answers = []
            for claims in tokens_claims:
                headers = {"Authorization": f"Bearer {idp.mint(claims)}"}
                answers.append(await client.post("/v1/credentials", json=BODY, headers=headers))
            answers.append(await client.get("/v1/whoami", headers=headers))
    return answers, sts


def test_the_service_sends_the_tags_to_sts_and_whoami_shows_them(idp: DevIssuer) -> None:
    (granted, whoami), sts = asyncio.run(ask(idp, {**ANN, "team": "data platform", "contractor": True}))
    assert granted.status_code == 200, granted.text
    [request] = sts.requests
    assert request.tags == (("team", "data platform"), ("cost-center", "4711"), ("Contractor", "true"))
    assert request.transitive_tag_keys == ("team",)
    [rule] = whoami.json()["rules"]
    assert rule["session_tags"] == {"team": "data platform", "cost-center": "4711", "Contractor": "true"}
    assert rule["refused"] is None


def test_a_changed_team_gets_a_new_session_and_the_same_team_the_cached_one(idp: DevIssuer) -> None:
    answers, sts = asyncio.run(ask(idp, ANN, ANN, {**ANN, "team": "platform"}, ANN))
    assert [a.status_code for a in answers] == [200] * 5
    assert [dict(r.tags)["team"] for r in sts.requests] == ["payments", "platform"], (
        "one AssumeRole per set of tag values: the moved person never gets the payments session")
    usernames = [a.json()["username"] for a in answers[:4]]
    assert usernames[0] == usernames[1] == usernames[3] != usernames[2]


GONE = object()
"""A claim the token does not carry."""
# (what the token carries instead of ANN's, the claim the sentence names, how it says what is wrong)
REFUSED: dict[str, tuple[dict[str, Any], str, str]] = {
    "missing": ({"team": GONE}, "team", "which your token (subject 'u-ann' of issuer 'corp') does not carry"),
    "missing along a pointer": ({"org": {"cost": 1}}, "/org/cost_center", "which your token"),
    "a list": ({"team": ["payments", "platform"]}, "team", "holds a list, and a session tag holds one value"),
    "an object": ({"team": {"name": "payments"}}, "team", "holds an object, and a session tag holds one value"),
    "null": ({"contractor": None}, "contractor", "holds null"),
    "too long": ({"team": "p" * 257}, "team", "holds 257 characters, over STS's limit of 256 for a tag value"),
    "a character STS refuses": ({"team": "pay;ments"}, "team", "holds the character ';', which STS does not allow"),
    "a control character": ({"team": "pay\nments"}, "team", "holds the character '\\n'"),
}


@pytest.mark.parametrize(("changes", "claim", "says"), REFUSED.values(), ids=REFUSED.keys())
def test_a_claim_no_tag_can_carry_is_a_403_naming_it_and_sts_is_never_asked(
        idp: DevIssuer, changes: dict[str, Any], claim: str, says: str) -> None:
    claims = {key: value for key, value in {**ANN, **changes}.items() if value is not GONE}
    (refused, whoami), sts = asyncio.run(ask(idp, claims))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "access_denied"
    detail = refused.json()["detail"]
    tag = next(key for key, value in TAGS.items() if value == claim)
    assert detail.startswith(f"The ccweb rule 'abac' sends the claim \"{claim}\" as the session tag {tag!r}"), detail
    assert says in detail, detail
    assert detail.endswith("for the claim in your token as one value a session tag can carry (a string, a number or "
                           "a boolean, at most 256 characters of letters, digits, spaces and _ . : / = + - @), or the "
                           "owners of the ccweb policy to change the rule."), "and what to do"
    assert sts.requests == [], "STS is not asked: no STS error, no 500"
    [rule] = whoami.json()["rules"]
    assert rule["refused"] == detail and rule["session_tags"] == {}


def test_explain_shows_the_tags_and_names_the_claim_that_cannot_be_one() -> None:
    claims = {**ANN, "iss": "https://idp.example.com"}
    granted = explain(POLICY, claims, "app", "us-east-1").lines()[-1]
    assert granted.endswith(', session tags team="payments", cost-center="4711", Contractor="false"'), granted
    refused = explain(POLICY, {**claims, "team": ["a", "b"]}, "app", "us-east-1")
    assert isinstance(refused.decision, Untagged)
    assert refused.lines()[-1] == (
        "denied: rule 'abac' sends the claim \"team\" as the session tag 'team', and in the token that claim holds a "
        "list, and a session tag holds one value; the service answers 403 access_denied")


def test_test_policy_expects_a_claim_no_tag_can_carry_as_denied_saying_why() -> None:
    case = Case(name="ann in two teams", claims={**ANN, "team": ["payments", "platform"]}, repository="app",
                expect="abac")
    assert differences(POLICY, [case]) == [
        "cases[0] 'ann in two teams': expected abac, got denied (rule 'abac' sends the claim \"team\" as the session "
        "tag 'team', and in the token that claim holds a list, and a session tag holds one value)"]
    assert differences(POLICY, [case.model_copy(update={"expect": "denied"})]) == []
