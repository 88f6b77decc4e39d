"""Every ccweb configuration shown in the operator guides is one `ccweb check-config` accepts.

The ```yaml blocks that contain ``issuers:`` in docs/iam.md and docs/identity-providers.md are parsed and
validated with the service's own ``parse_config``; the identity-provider guide's issuer URLs keep each
provider's real form, and its rules decide on tokens shaped as each provider documents them
(``tests/data/idp-tokens``) as the guide says.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccweb.config import Config, parse_config
from ccweb.policy import Distributed, Granted, Policy, Repository, compile_policy

DOCS = Path(__file__).resolve().parent.parent / "docs"
TOKENS = Path(__file__).resolve().parent / "data" / "idp-tokens"
GUIDES = ["iam.md", "identity-providers.md"]
BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def config_blocks(name: str) -> list[tuple[str, str]]:
    """(section heading, YAML text) for each configuration example of one guide."""
    text = (DOCS / name).read_text(encoding="utf-8")
    blocks = []
    for match in BLOCK.finditer(text):
        if re.search(r"^issuers:", match.group(1), re.MULTILINE):
            headings = re.findall(r"^## (.+)$", text[: match.start()], re.MULTILINE)
            blocks.append((headings[-1] if headings else "(top)", match.group(1)))
    return blocks


EXAMPLES = [(name, heading, block) for name in GUIDES for heading, block in config_blocks(name)]


@pytest.mark.parametrize("name", GUIDES)
def test_each_guide_shows_a_configuration(name: str) -> None:
    assert config_blocks(name)


@pytest.mark.parametrize(("name", "heading", "block"), EXAMPLES, ids=[f"{n}:{h}" for n, h, _ in EXAMPLES])
def test_example_is_a_valid_configuration(name: str, heading: str, block: str) -> None:
    config = parse_config(yaml.safe_load(block))
    assert config.rules, "an example shows rules, not only issuers"
    for rule in config.rules:
        assert "/ccweb/" in rule.role_arn, "rules name target roles at the templates' default path"


def section_config(heading: str) -> Config:
    blocks = [block for h, block in config_blocks("identity-providers.md") if h == heading]
    assert len(blocks) == 1, heading
    return parse_config(yaml.safe_load(blocks[0]))


@pytest.mark.parametrize(
    ("heading", "issuer"),
    [
        ("Okta", r"https://[a-z0-9-]+\.okta\.com/oauth2/[A-Za-z0-9]+"),
        ("Microsoft Entra ID", r"https://login\.microsoftonline\.com/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}/v2\.0"),
        ("Keycloak", r"https://[a-z0-9.-]+/realms/[A-Za-z0-9_-]+"),
        ("Auth0", r"https://[a-z0-9-]+\.[a-z]{2}\.auth0\.com/"),
        ("AWS IAM Identity Center", r"https://[a-z0-9.-]+/realms/[A-Za-z0-9_-]+"),  # brokered, see the guide
    ],
)
def test_identity_provider_examples_use_the_providers_issuer_form(heading: str, issuer: str) -> None:
    config = section_config(heading)
    (entry,) = config.issuers
    assert re.fullmatch(issuer, entry.issuer)
    assert entry.login is not None, "people sign in with ccweb-helper login"
    assert entry.audiences == [entry.login.client_id]
    assert "openid" in entry.login.scopes
    assert "offline_access" in entry.login.scopes, "refresh tokens keep the login alive"


def section_policy(heading: str) -> Policy:
    return compile_policy(section_config(heading))


def token(name: str, **changes: Any) -> dict[str, Any]:
    """The claims of a provider's documented token shape (``tests/data/idp-tokens/<name>.json``), changed."""
    claims: dict[str, Any] = json.loads((TOKENS / f"{name}.json").read_text(encoding="utf-8"))
    del claims["_source"]
    return {**claims, **changes}


def granted_rule(policy: Policy, issuer: str, claims: dict[str, Any], repository: str) -> str | None:
    decision = policy.decide(issuer, claims, Repository(repository, "us-east-1"))
    return decision.rule.name if isinstance(decision, Granted) else None


def test_google_example_grants_a_workspace_account_by_hd_and_never_a_personal_one() -> None:
    config = section_config("Google Workspace")
    (entry,) = config.issuers
    assert entry.issuer == "https://accounts.google.com"
    assert entry.login is None, "ccweb-helper cannot sign in at Google directly (the guide says why)"
    assert config.web is not None and config.web.client_id in entry.audiences
    policy = compile_policy(config)
    workspace = token("google")
    assert granted_rule(policy, "google", workspace, "demo") == "workspace-read"
    assert granted_rule(policy, "google", workspace, "app") is None
    assert granted_rule(policy, "google", {**workspace, "email": "ann@example.com"}, "app") == "maintainers"
    personal = token("google-personal", email="ann@example.com")
    assert "hd" not in personal
    assert granted_rule(policy, "google", personal, "demo") is None
    assert granted_rule(policy, "google", personal, "app") is None, "the address alone grants nothing"
    assert granted_rule(policy, "google", {**workspace, "email_verified": False}, "demo") is None


def test_auth0_example_reads_the_namespaced_claim_verbatim() -> None:
    policy = section_policy("Auth0")
    assert section_config("Auth0").issuers[0].issuer.endswith("/"), "Auth0's iss ends in /"
    engineer = token("auth0", **{"https://example.com/roles": ["engineering", "oncall"]})
    assert granted_rule(policy, "auth0", engineer, "app") == "engineering"
    assert granted_rule(policy, "auth0", token("auth0"), "app") is None, "groups are not roles"


def test_keycloak_example_reaches_realm_and_client_roles_by_pointer() -> None:
    policy = section_policy("Keycloak")
    shape = token("keycloak")
    realm = token("keycloak", realm_access={"roles": [*shape["realm_access"]["roles"], "release-manager"]},
                  groups=[])
    assert granted_rule(policy, "keycloak", realm, "release-2026") == "release-managers"
    client = token("keycloak", resource_access={**shape["resource_access"], "ccweb-helper": {"roles": ["writer"]}},
                   groups=[])
    assert granted_rule(policy, "keycloak", client, "anything") == "helper-writers"
    assert granted_rule(policy, "keycloak", {**shape, "groups": []}, "anything") is None


def test_entra_example_refuses_the_groups_overage_with_the_fix_the_guide_gives() -> None:
    policy = section_policy("Microsoft Entra ID")
    listed = token("entra-v2", groups=["0b8e6f2a-3c1d-4e5f-9a7b-6c5d4e3f2a1b"])
    assert granted_rule(policy, "entra", listed, "app") == "engineering"
    for shape in ("entra-v2-overage", "entra-v2-hasgroups"):
        decision = policy.decide("entra", token(shape), Repository("app", "us-east-1"))
        assert isinstance(decision, Distributed), shape
        assert "Groups assigned to the application" in decision.sentence("your token")
    # The guide quotes the service's sentence word for word.
    sentence = policy.decide("entra", token("entra-v2-overage"), Repository("app", "us-east-1"))
    assert isinstance(sentence, Distributed)
    whose = "your token (subject '…' of issuer 'entra')"
    quoted = f"The ccweb {sentence.sentence(whose, 'you are')}."
    guide = " ".join((DOCS / "identity-providers.md").read_text(encoding="utf-8").split())
    assert quoted in guide
