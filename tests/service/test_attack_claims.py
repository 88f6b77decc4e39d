"""Hostile and sloppy claims against the decision and its surfaces: what an identity provider (or a broker in front
of one, which writes every claim as a string) may sign that Entra ID, Keycloak or Okta never would.

- the groups overage marker in other JSON types than Entra ID's (``hasgroups`` as the string ``"true"``, a
  ``_claim_names`` that is not an object) still means the groups claim cannot be told: a deny entry on groups
  refuses, never lets the person through;
- a number JSON cannot write (NaN, Infinity; ``1e309`` reads as Infinity) is no session tag value: a 403 naming the
  claim, STS never asked;
- a lone surrogate (``"\\ud800"``: valid JSON, not Unicode) in ``sub`` or in a ``source_identity`` claim is answered
  (``/v1/whoami``, a 403's sentence) with JSON's own escape, never a 500; in the policy file, where no policy can
  hold it, it is refused naming its line (never a traceback, nor a reload that fails), and a pattern matches it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jws

from ccweb.app import create_app
from ccweb.cli import main
from ccweb.config import ConfigError, load_config, parse_config
from ccweb.policy import Distributed, Entitled, Granted, Repository, Suspended, compile_policy
from ccweb.sandbox.issuer import DevIssuer
from support import RecordingSTS, serve_issuer

ROLE = "arn:aws:iam::111122223333:role/dev"
BODY = {"protocol": "https", "host": "git-codecommit.us-east-1.amazonaws.com", "path": "v1/repos/app"}
EVE = {"sub": "u-eve", "email": "eve@example.com", "email_verified": True}
VERIFIED = {"name": "verified", "issuer": "corp", "claims": {"email_verified": True}, "role_arn": ROLE,
            "repositories": ["*"]}
OFFBOARDED = {"name": "offboarded", "claims": {"groups": "offboarded"}, "reason": "left the company"}


def source(url: str, rules: list[dict[str, Any]], deny: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"issuers": [{"name": "corp", "issuer": url, "audiences": ["ccweb"]}], "rules": rules,
            "deny": deny or []}


@pytest.fixture(scope="module")
def idp() -> Iterator[DevIssuer]:
    with serve_issuer() as served:
        yield served


def signed(idp: DevIssuer, payload: str) -> str:
    """A token whose payload is exactly ``payload``: JSON as an identity provider may write it (``\\u`` escapes,
    ``NaN``, ``1e309``), which ``DevIssuer.mint`` cannot."""
    now = int(time.time())
    registered = {"iss": idp.issuer_url, "aud": idp.audience, "iat": now, "nbf": now, "exp": now + 600}
    text = payload.rstrip()[:-1] + "," + json.dumps(registered)[1:]
    return jws.serialize_compact({"alg": "RS256", "kid": idp.key.kid, "typ": "JWT"}, text.encode(), idp.key)


async def ask(config: dict[str, Any], token: str) -> tuple[httpx.Response, httpx.Response, RecordingSTS]:
    """``POST /v1/credentials`` for ``app``, then ``GET /v1/whoami``, with ``token``."""
    sts = RecordingSTS()
    async with httpx.AsyncClient() as http:
        app = create_app(parse_config(config), sts=sts, http=http)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://ccweb") as client:
            headers = {"Authorization": f"Bearer {token}"}
            credentials = await client.post("/v1/credentials", json=BODY, headers=headers)
            whoami = await client.get("/v1/whoami", headers=headers)
    return credentials, whoami, sts


MARKERS: dict[str, dict[str, Any]] = {
    "hasgroups as the string true": {"hasgroups": "true"},
    "hasgroups as the string True": {"hasgroups": "True"},
    "_claim_names as a JSON string": {"_claim_names": '{"groups":"src1"}'},
    "_claim_names as a list": {"_claim_names": ["groups"]},
}


@pytest.mark.parametrize("marker", MARKERS.values(), ids=MARKERS.keys())
def test_an_overage_marker_in_another_json_type_still_refuses_where_a_deny_entry_reads_groups(
        idp: DevIssuer, marker: dict[str, Any]) -> None:
    token = signed(idp, json.dumps({**EVE, **marker}))
    credentials, whoami, sts = asyncio.run(ask(source(idp.issuer_url, [VERIFIED], [OFFBOARDED]), token))
    assert credentials.status_code == 403, "the deny entry on groups cannot be told: it refuses, fail closed"
    detail = credentials.json()["detail"]
    assert detail.startswith('The ccweb deny list, checked before every rule, reads the claim "groups", but '
                             "your token (subject 'u-eve' of issuer 'corp') carries Entra ID's groups overage "
                             "marker"), detail
    assert sts.requests == []
    assert whoami.status_code == 200 and whoami.json()["refused"] == detail and whoami.json()["rules"] == []


def test_the_page_keeps_a_marker_of_another_type_and_decides_as_the_api() -> None:
    policy = compile_policy(parse_config(source("https://idp.example.com", [VERIFIED], [OFFBOARDED])))
    for marker in MARKERS.values():
        claims = {**EVE, **marker}
        kept = policy.kept_claims("corp", claims)
        for where in (Repository("app", "us-east-1"), None):
            assert isinstance(policy.decide("corp", claims, where), Distributed)
            assert isinstance(policy.decide("corp", kept, where), Distributed)
    for carried in ({"hasgroups": "false"}, {"groups": [], "_claim_names": "x"}):  # no overage; groups carried
        entitled = policy.decide("corp", {**EVE, **carried}, None)
        assert isinstance(entitled, Entitled) and isinstance(entitled.outcomes[0], Granted), carried


TAGGED = {**VERIFIED, "session_tags": {"team": "team"}}
NOT_JSON_NUMBERS = {"NaN": ("NaN", "NaN"), "Infinity": ("Infinity", "Infinity"),
                    "-Infinity": ("-Infinity", "-Infinity"), "1e309": ("1e309", "Infinity")}


@pytest.mark.parametrize(("written", "read"), NOT_JSON_NUMBERS.values(), ids=NOT_JSON_NUMBERS.keys())
def test_a_number_json_cannot_write_is_no_session_tag(idp: DevIssuer, written: str, read: str) -> None:
    token = signed(idp, json.dumps(EVE)[:-1] + f', "team": {written}}}')
    credentials, whoami, sts = asyncio.run(ask(source(idp.issuer_url, [TAGGED]), token))
    assert credentials.status_code == 403, credentials.text
    assert (f"rule 'verified' sends the claim \"team\" as the session tag 'team', and in your token (subject 'u-eve' "
            f"of issuer 'corp') that claim holds {read}, which is not a JSON number") in credentials.json()["detail"]
    assert sts.requests == [], "STS never asked for a tag 'NaN' or 'Infinity'"
    [rule] = whoami.json()["rules"]
    assert rule["session_tags"] == {} and rule["refused"] == credentials.json()["detail"]


def test_large_and_decimal_numbers_are_still_tags(idp: DevIssuer) -> None:
    token = signed(idp, json.dumps({**EVE, "team": 10**200}))
    credentials, _, sts = asyncio.run(ask(source(idp.issuer_url, [TAGGED]), token))
    assert credentials.status_code == 200, credentials.text
    assert [r.tags for r in sts.requests] == [(("team", "1" + "0" * 200),)]


NOT_UNICODE = "u-\ud800"


def test_a_lone_surrogate_in_sub_is_escaped_in_the_403_and_whoami_never_a_500(idp: DevIssuer) -> None:
    token = signed(idp, json.dumps({"sub": NOT_UNICODE, "team": "x"}))  # written as JSON may: "u-\ud800"
    nobody = {**VERIFIED, "repositories": ["other"]}
    credentials, whoami, _ = asyncio.run(ask(source(idp.issuer_url, [nobody]), token))
    assert credentials.status_code == 403, credentials.text
    assert credentials.json()["detail"].startswith(f"No ccweb rule grants {NOT_UNICODE} (subject 'u-\\ud800'")
    assert whoami.status_code == 200, whoami.text
    assert (whoami.json()["subject"], whoami.json()["identity"]) == (NOT_UNICODE, NOT_UNICODE), (
        "JSON's escape decodes to the very same value")
    suspended, whoami, _ = asyncio.run(ask(source(idp.issuer_url, [VERIFIED], [{"claims": {"team": "x"}}]),
                                           token))
    assert suspended.status_code == 403 and suspended.json()["detail"].startswith(f"Access to ccweb for {NOT_UNICODE}")
    assert whoami.status_code == 200 and whoami.json()["suspended"] == suspended.json()["detail"]


def test_a_lone_surrogate_in_a_source_identity_claim_by_pointer_never_a_500(idp: DevIssuer) -> None:
    named = {**VERIFIED, "source_identity": "/profile/login"}
    token = signed(idp, json.dumps({**EVE, "profile": {"login": "eve-\udfff"}}))
    credentials, whoami, sts = asyncio.run(ask(source(idp.issuer_url, [named]), token))
    assert credentials.status_code == 200, credentials.text
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["identity"] == "eve-\udfff"
    [rule] = whoami.json()["rules"]
    assert rule["source_identity"] == sts.requests[0].source_identity


POLICY_FILE = """\
issuers:
  - {name: corp, issuer: "https://idp.example.com", audiences: [ccweb]}
deny:
  - claims: {sub: %s}
"""


def test_a_policy_file_writing_a_lone_surrogate_is_refused_naming_the_line_and_a_pattern_matches_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    escaped = tmp_path / "escaped.yaml"
    escaped.write_text(POLICY_FILE % '"u-\\ud800"', encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(escaped)
    assert refused.value.messages == [f"{escaped} (line 4, column 19): a \\u escape writes a lone surrogate, which is "
                                      "not Unicode text (match it with {pattern: '\\ud800'}, whose regular expression "
                                      "escape is plain text)"]
    assert main(["check-config", str(escaped)]) == 1
    assert "lone surrogate" in capsys.readouterr().err, "a sentence, not a traceback"
    pattern = tmp_path / "pattern.yaml"
    pattern.write_text(POLICY_FILE % "{pattern: 'u-\\ud800'}", encoding="utf-8")
    policy = compile_policy(load_config(pattern))
    assert isinstance(policy.decide("corp", {"sub": NOT_UNICODE}, None), Suspended)
    assert not isinstance(policy.decide("corp", {"sub": "u-x"}, None), Suspended)
