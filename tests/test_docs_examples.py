"""Every ccweb configuration shown in the operator guides is one `ccweb check-config` accepts.

The ```yaml blocks that contain ``issuers:`` in docs/iam.md and docs/identity-providers.md are parsed and
validated with the service's own ``parse_config``; the identity-provider guide's issuer URLs keep each
provider's real form.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ccweb.config import Config, parse_config

DOCS = Path(__file__).resolve().parent.parent / "docs"
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
