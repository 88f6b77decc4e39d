"""Rules, deny entries, SourceIdentity and session tags against tokens as real identity providers shape them:
Keycloak's roles nested in ``realm_access`` and ``resource_access``, Auth0's namespaced claims, Entra ID's
``groups`` and its groups overage, Okta's ``groups`` from its org and custom authorization servers, and Google's
``hd`` and ``email_verified`` without any groups. Each shape is a data file in ``tests/data/idp-tokens`` taken
from the provider's public documentation, which its ``_source`` names. They are decided by the compiled
policy, explained by ``ccweb explain``, and sent as signed tokens to the service itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ccweb.app import create_app
from ccweb.cli import main
from ccweb.config import parse_config
from ccweb.explain import explain
from ccweb.iam import sts_name
from ccweb.policy import (
    Distributed,
    Granted,
    NoRule,
    Policy,
    Repository,
    Unidentified,
    Untagged,
    compile_policy,
)
from ccweb.sandbox.issuer import DevIssuer
from support import RecordingSTS, serve, serve_issuer

DATA = Path(__file__).resolve().parents[1] / "data" / "idp-tokens"
ROLE = "arn:aws:iam::111122223333:role/ccweb-"
REGION = "us-east-1"
HOST = f"git-codecommit.{REGION}.amazonaws.com"
OVERAGE = "groups overage"
FIX = "Groups assigned to the application"
"""Words of the sentence that refuses a token carrying Entra ID's overage marker where ``groups`` would decide."""


def shape(name: str, **changes: Any) -> dict[str, Any]:
    """The claims of ``tests/data/idp-tokens/<name>.json`` without its ``_source`` note, with ``changes``."""
    claims: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    del claims["_source"]
    return {**claims, **changes}


def issuer(name: str, token: str, *audiences: str) -> dict[str, Any]:
    """An issuer entry for the provider that issued the shape ``token``: its ``iss``, and its ``aud`` (the first
    one) and ``azp`` among the audiences, as the service requires of a token it accepts."""
    claims = shape(token)
    aud = claims["aud"] if isinstance(claims["aud"], str) else claims["aud"][0]
    listed = [aud, *audiences, *([claims["azp"]] if claims.get("azp", aud) != aud else [])]
    return {"name": name, "issuer": claims["iss"], "audiences": listed}


ISSUERS = [
    issuer("keycloak", "keycloak"),
    issuer("auth0", "auth0"),
    issuer("entra", "entra-v2"),
    issuer("okta", "okta-org"),
    issuer("okta-api", "okta-custom-as"),
    issuer("google", "google"),
]
ENGINEERING = "a1b2c3d4-0000-1111-2222-333344445555"
"""An Entra ID group's object ID: what ``groups`` holds (names are not in the token)."""


def rule(name: str, issuer_name: str, claims: dict[str, Any], *repositories: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "issuer": issuer_name, "claims": claims, "role_arn": ROLE + name,
            "repositories": list(repositories) or ["*"], "access": "write", **extra}


RULES = [
    rule("keycloak-developers", "keycloak", {"/realm_access/roles": "developers"}, "app-*"),
    rule("keycloak-writers", "keycloak", {"/resource_access/ccweb/roles": "writer"}, "infra",
         source_identity="preferred_username"),
    rule("auth0-engineering", "auth0", {"https://example.com/groups": "engineering"}, "app-*",
         session_tags={"team": "https://example.com/team", "level": "https://example.com/level"}),
    rule("entra-engineering", "entra", {"groups": ENGINEERING}, "app-*", session_tags={"tenant": "tid"}),
    rule("entra-handbook", "entra", {"email": {"pattern": r".+@example\.com"}}, "handbook"),
    rule("okta-it", "okta", {"groups": "IT"}, "app-*"),
    rule("okta-sales", "okta-api", {"groups": "Midwest Sales"}, "app-*", session_tags={"okta-user": "uid"}),
    rule("google-workspace", "google", {"hd": "example.com", "email_verified": True}, "app-*",
         session_tags={"domain": "hd"}),
]


def policy(rules: list[dict[str, Any]] | None = None, deny: list[dict[str, Any]] | None = None) -> Policy:
    data: dict[str, Any] = {"issuers": ISSUERS, "rules": RULES if rules is None else rules}
    if deny is not None:
        data["deny"] = deny
    return compile_policy(parse_config(data))


POLICY = policy()
KEYCLOAK_ROLES = ["offline_access", "default-roles-corp", "uma_authorization"]


def issuer_of(name: str) -> str:
    claims = shape(name)
    found: str = next(entry["name"] for entry in ISSUERS if entry["issuer"] == claims["iss"])
    return found


def test_every_shape_names_the_documentation_it_follows() -> None:
    names = sorted(path.stem for path in DATA.glob("*.json"))
    assert names == ["auth0", "entra-v2", "entra-v2-hasgroups", "entra-v2-overage", "google", "google-personal",
                     "keycloak", "okta-custom-as", "okta-org", "okta-org-scopes"]
    for name in names:
        document = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
        assert document["_source"].startswith("https://"), name
        assert {"iss", "sub", "aud", "exp"} <= set(document), name
        assert "_source" not in shape(name)


AUTH0_NESTED: dict[str, Any] = {"https://example.com/groups": None, "https://example.com": {"groups": ["engineering"]}}
"""Auth0's groups as an object under the namespace instead: a claim name is not a path, so the rule finds nothing."""

# (shape, changes to it, repository, the rule that grants it or None)
DECISIONS = {
    "keycloak realm role": ("keycloak", {}, "app-web", "keycloak-developers"),
    "keycloak client role": ("keycloak", {}, "infra", "keycloak-writers"),
    "keycloak without the realm role": ("keycloak", {"realm_access": {"roles": KEYCLOAK_ROLES}}, "app-web", None),
    "keycloak role of the same name in another place": (
        "keycloak", {"realm_access": {"roles": KEYCLOAK_ROLES},
                     "resource_access": {"account": {"roles": ["developers"]}, "ccweb": {"roles": []}}},
        "app-web", None),
    "keycloak client role of another client": (
        "keycloak", {"resource_access": {"other": {"roles": ["writer"]}}}, "infra", None),
    "auth0 namespaced claim": ("auth0", {}, "app-web", "auth0-engineering"),
    "auth0 claim nested, not namespaced": ("auth0", AUTH0_NESTED, "app-web", None),
    "entra group id": ("entra-v2", {}, "app-web", "entra-engineering"),
    "entra other groups": ("entra-v2", {"groups": ["f0e1d2c3-6666-7777-8888-9999aaaabbbb"]}, "app-web", None),
    "okta org groups": ("okta-org", {}, "app-web", "okta-it"),
    "okta custom server groups": ("okta-custom-as", {}, "app-web", "okta-sales"),
    "okta custom server claim named otherwise": (
        "okta-custom-as", {"groups": None, "GroupsClaim": ["Midwest Sales", "Everyone"]}, "app-web", None),
    "google workspace": ("google", {}, "app-web", "google-workspace"),
    "google personal account": ("google-personal", {}, "app-web", None),
    "google other workspace": ("google", {"hd": "example.net"}, "app-web", None),
    "google unverified": ("google", {"email_verified": False}, "app-web", None),
    "google verified as a string": ("google", {"email_verified": "true"}, "app-web", None),
}


def claims_of(name: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The shape with ``changes``, a change to None removing the claim."""
    claims = shape(name, **changes)
    return {key: value for key, value in claims.items() if value is not None}


@pytest.mark.parametrize(("name", "changes", "repository", "granted_by"), DECISIONS.values(), ids=DECISIONS.keys())
def test_rules_decide_on_each_shape_as_it_is(name: str, changes: dict[str, Any], repository: str,
                                             granted_by: str | None) -> None:
    claims = claims_of(name, changes)
    result = explain(POLICY, claims, repository, REGION)
    assert result.issuer is not None and result.refused is None, result.lines()
    decision = POLICY.decide(result.issuer.name, claims, Repository(repository, REGION))
    assert result.decision == decision, "explain decides as the service does"
    if granted_by is None:
        assert isinstance(decision, NoRule), decision
        assert result.lines()[-1].startswith("denied: no rule grants")
    else:
        assert isinstance(decision, Granted), result.lines()
        assert decision.rule.name == granted_by


def test_a_pointer_rule_grants_as_the_claim_it_names() -> None:
    decision = POLICY.decide("keycloak", shape("keycloak"), Repository("infra", REGION))
    assert isinstance(decision, Granted)
    assert decision.source_identity == decision.request.source_identity == "ann"


# (shape, the rule's source_identity, the SourceIdentity it gives, or None: Unidentified)
IDENTITIES = {
    "keycloak username": ("keycloak", "preferred_username", "ann"),
    "entra object id": ("entra-v2", "oid", "00000000-0000-0000-66f3-3332eca7ea81"),
    "okta user id": ("okta-custom-as", "uid", "00uzrjisTQK1SlAMB1d5"),
    "auth0 namespaced, as a pointer with escapes": ("auth0", "/https:~1~1example.com~1team", "payments"),
    "keycloak roles are a list": ("keycloak", "/realm_access/roles", None),
    "google personal account has no hd": ("google-personal", "hd", None),
}


@pytest.mark.parametrize(("name", "claim", "identity"), IDENTITIES.values(), ids=IDENTITIES.keys())
def test_source_identity_from_each_shape(name: str, claim: str, identity: str | None) -> None:
    named = policy([rule("named", issuer_of(name), {}, source_identity=claim)])
    decision = named.decide(issuer_of(name), shape(name), Repository("x", REGION))
    if identity is None:
        assert isinstance(decision, Unidentified), decision
        assert decision.claim == claim
    else:
        assert isinstance(decision, Granted), decision
        assert decision.request.source_identity == sts_name(identity) == identity


def test_a_pointer_with_escapes_names_a_namespaced_claim() -> None:
    escaped = policy([rule("escaped", "auth0", {"/https:~1~1example.com~1groups": "engineering"})])
    decision = escaped.decide("auth0", shape("auth0"), Repository("x", REGION))
    assert isinstance(decision, Granted), decision
    assert isinstance(escaped.decide("auth0", claims_of("auth0", {"https://example.com/groups": None}),
                                     Repository("x", REGION)), NoRule)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(json.dumps({"issuers": ISSUERS, "rules": RULES}), encoding="utf-8")  # JSON is YAML
    return path


def run_explain(capsys: pytest.CaptureFixture[str], policy_file: Path, claims: dict[str, Any],
                repository: str) -> tuple[int, str]:
    path = policy_file.with_name("claims.json")
    path.write_text(json.dumps(claims), encoding="utf-8")
    code = main(["explain", "--config", str(policy_file), "--claims", str(path), "--repo", repository])
    out, err = capsys.readouterr()
    assert err == ""
    return code, out


def test_explain_shows_what_a_pointer_found(policy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_explain(capsys, policy_file, shape("keycloak"), "app-web")
    assert code == 0
    assert out.splitlines()[-1].startswith("granted: rule 'keycloak-developers' gives write access")
    found = shape("keycloak")["realm_access"]["roles"]
    assert f"applies\n      - claim /realm_access/roles = {json.dumps(found)}\n" in out, out
    roles = shape("keycloak", realm_access={"roles": KEYCLOAK_ROLES})
    code, out = run_explain(capsys, policy_file, roles, "app-web")
    assert code == 1
    assert (f"claim /realm_access/roles = {json.dumps(KEYCLOAK_ROLES)}: no element equals \"developers\""
            in out), out
    code, out = run_explain(capsys, policy_file, claims_of("keycloak", {"realm_access": None}), "app-web")
    assert code == 1
    assert "claim /realm_access/roles is missing" in out, out


def test_explain_reads_a_namespaced_claim_verbatim(policy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nested = claims_of("auth0", AUTH0_NESTED)
    code, out = run_explain(capsys, policy_file, nested, "app-web")
    assert code == 1
    assert "claim https://example.com/groups is missing" in out, out


def test_the_groups_overage_refuses_where_groups_would_decide_and_says_the_fix() -> None:
    overage = shape("entra-v2-overage")
    for token in (overage, shape("entra-v2-hasgroups")):
        decision = POLICY.decide("entra", token, Repository("app-web", REGION))
        assert isinstance(decision, Distributed), decision
        lines = explain(POLICY, token, "app-web", REGION).lines()
        assert lines[-1].startswith("denied: ") and OVERAGE in lines[-1] and FIX in lines[-1], lines
    handbook = POLICY.decide("entra", overage, Repository("handbook", REGION))
    assert isinstance(handbook, Granted) and handbook.rule.name == "entra-handbook", (
        "a rule that reads no groups still decides for a repository the groups rule does not cover")


def test_a_deny_entry_on_groups_fails_closed_on_the_overage() -> None:
    guarded = policy(deny=[{"name": "quarantine", "issuer": "entra",
                            "claims": {"groups": "0badc0de-0000-1111-2222-333344445555"}}])
    decision = guarded.decide("entra", shape("entra-v2-overage"), Repository("handbook", REGION))
    assert isinstance(decision, Distributed), "the deny entry cannot be evaluated: nothing is granted"
    listed = guarded.decide("entra", shape("entra-v2"), Repository("handbook", REGION))
    assert isinstance(listed, Granted), "a token that lists its groups, none of them quarantined, is not refused"


def test_a_session_tag_on_the_overage_claim_refuses_too() -> None:
    tagged = policy([rule("entra-tagged", "entra", {"tid": "aaaabbbb-0000-cccc-1111-dddd2222eeee"},
                          session_tags={"groups": "groups"})])
    assert isinstance(tagged.decide("entra", shape("entra-v2-overage"), Repository("x", REGION)), Distributed)


# (shape, the rule's session_tags, the tags the AssumeRole request carries, in the rule's order)
TAGS = {
    "auth0 namespaced": ("auth0", {"team": "https://example.com/team", "level": "https://example.com/level"},
                         (("team", "payments"), ("level", "3"))),
    "keycloak pointer into a list": ("keycloak", {"role": "/resource_access/ccweb/roles/0"}, (("role", "writer"),)),
    "keycloak name": ("keycloak", {"user": "preferred_username"}, (("user", "ann"),)),
    "entra tenant": ("entra-v2", {"tenant": "tid"}, (("tenant", "aaaabbbb-0000-cccc-1111-dddd2222eeee"),)),
    "okta user id": ("okta-custom-as", {"okta-user": "uid"}, (("okta-user", "00uzrjisTQK1SlAMB1d5"),)),
    "google domain and verified": ("google", {"domain": "hd", "verified": "email_verified"},
                                   (("domain", "example.com"), ("verified", "true"))),
}


@pytest.mark.parametrize(("name", "tags", "carried"), TAGS.values(), ids=TAGS.keys())
def test_session_tags_from_each_shape(name: str, tags: dict[str, str], carried: tuple[tuple[str, str], ...]) -> None:
    tagged = policy([rule("tagged", issuer_of(name), {}, session_tags=tags)])
    decision = tagged.decide(issuer_of(name), shape(name), Repository("x", REGION))
    assert isinstance(decision, Granted), decision
    assert decision.request.tags == carried


# (shape, changes, the rule's session_tags, the claim the refusal names)
UNTAGGED: dict[str, tuple[str, dict[str, Any], dict[str, str], str]] = {
    "keycloak roles are a list": ("keycloak", {}, {"roles": "/realm_access/roles"}, "/realm_access/roles"),
    "auth0 groups are a list": ("auth0", {}, {"groups": "https://example.com/groups"}, "https://example.com/groups"),
    "okta groups are a list": ("okta-org", {}, {"groups": "groups"}, "groups"),
    "google personal account has no hd": ("google-personal", {}, {"domain": "hd"}, "hd"),
    "keycloak client of no roles": ("keycloak", {}, {"role": "/resource_access/other/roles/0"},
                                    "/resource_access/other/roles/0"),
}


@pytest.mark.parametrize(("name", "changes", "tags", "claim"), UNTAGGED.values(), ids=UNTAGGED.keys())
def test_a_claim_a_tag_cannot_carry_refuses_naming_it(name: str, changes: dict[str, Any], tags: dict[str, str],
                                                      claim: str) -> None:
    tagged = policy([rule("tagged", issuer_of(name), {}, session_tags=tags)])
    claims = claims_of(name, changes)
    decision = tagged.decide(issuer_of(name), claims, Repository("x", REGION))
    assert isinstance(decision, Untagged), decision
    lines = explain(tagged, claims, "x", REGION).lines()
    assert lines[-1].startswith("denied: ") and claim in lines[-1], lines


def test_a_changed_team_gets_another_session() -> None:
    where = Repository("app-web", REGION)
    payments = POLICY.decide("auth0", shape("auth0"), where)
    again = POLICY.decide("auth0", shape("auth0"), where)
    moved = POLICY.decide("auth0", shape("auth0", **{"https://example.com/team": "platform"}), where)
    assert isinstance(payments, Granted) and isinstance(again, Granted) and isinstance(moved, Granted)
    assert payments.session_key == again.session_key
    assert moved.session_key != payments.session_key
    assert moved.request.tags == (("team", "platform"), ("level", "3"))


REGISTERED = ("iss", "aud", "azp", "exp", "iat", "nbf")


class Service:
    """The service with one issuer (the development issuer, which signs each shape's own claims) and rules for
    several shapes, each on its own repositories."""

    def __init__(self, url: str, idp: DevIssuer, sts: RecordingSTS) -> None:
        self.url, self.idp, self.sts = url, idp, sts

    def bearer(self, name: str) -> dict[str, str]:
        claims = {k: v for k, v in shape(name).items() if k not in REGISTERED}
        return {"Authorization": f"Bearer {self.idp.mint(claims)}"}

    def credentials(self, name: str, repository: str) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/credentials", headers=self.bearer(name),
                          json={"protocol": "https", "host": HOST, "path": f"v1/repos/{repository}"})

    def whoami(self, name: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/v1/whoami", headers=self.bearer(name))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    with serve_issuer() as idp:
        config = parse_config({
            "issuers": [{"name": "idp", "issuer": idp.issuer_url, "audiences": ["ccweb"]}],
            "rules": [
                rule("entra-engineering", "idp", {"groups": ENGINEERING}, "app-*"),
                rule("workspace", "idp", {"hd": "example.com", "email_verified": True}, "docs",
                     session_tags={"domain": "hd"}),
                rule("keycloak-tagged", "idp", {"/realm_access/roles": "developers"}, "infra",
                     session_tags={"roles": "/realm_access/roles"}),
            ],
        })
        sts = RecordingSTS()
        with serve(create_app(config, sts=sts)) as url:
            yield Service(url, idp, sts)


def refusal(answer: httpx.Response) -> str:
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert body["error"] == "access_denied"
    detail = body["detail"]
    assert isinstance(detail, str)
    return detail


def test_the_service_refuses_the_overage_with_its_sentence(service: Service) -> None:
    asked = len(service.sts.requests)
    detail = refusal(service.credentials("entra-v2-overage", "app-web"))
    assert OVERAGE in detail and FIX in detail, detail
    assert len(service.sts.requests) == asked, "STS was not asked"
    granted = service.credentials("entra-v2", "app-web")
    assert granted.status_code == 200, granted.text
    assert granted.json()["rule"] == "entra-engineering"


def test_the_service_grants_a_workspace_account_with_its_domain_as_a_tag(service: Service) -> None:
    granted = service.credentials("google", "docs")
    assert granted.status_code == 200, granted.text
    assert service.sts.requests[-1].tags == (("domain", "example.com"),)
    [shown] = service.whoami("google")["rules"]
    assert (shown["rule"], shown["session_tags"], shown["refused"]) == ("workspace", {"domain": "example.com"}, None)
    assert service.whoami("google-personal")["rules"] == []
    detail = refusal(service.credentials("google-personal", "docs"))
    assert detail.startswith("No ccweb rule grants jsmith.home@example.net (subject '11032594823567283746501' "
                             "of issuer 'idp') access to repository 'docs'"), detail


def test_the_service_refuses_a_list_valued_tag_naming_the_claim(service: Service) -> None:
    asked = len(service.sts.requests)
    detail = refusal(service.credentials("keycloak", "infra"))
    assert "/realm_access/roles" in detail, detail
    assert len(service.sts.requests) == asked, "STS was not asked"
