"""A rule on a nested claim, end to end: the real OpenID provider of the login tests (tests/oidc) emits Keycloak's
``realm_access: {roles: [...]}`` in its ID tokens for the scope ``roles``; a person signs in through it with the
helper, and the service (the sandbox, with that provider as its issuer) grants by the JSON Pointer rule
``/realm_access/roles`` a real ``git clone`` through the credential helper; a person without the role is
refused with the service's sentence."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccweb.config import parse_config
from ccweb.sandbox.dev import ACCOUNT, REGION, Sandbox, helper_command
from e2e.test_login import (
    CLIENT_ID,
    ROOT,
    Provider,
    assert_no_secrets,
    attrs,
    browser_runs,
    cached,
    environment,
    helper,
    login,
    start_provider,
)

ROLE = "ccweb-developers"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with start_provider() as running:
        yield running


def pointer_policy(issuer: str, git_host: str) -> dict[str, Any]:
    return {
        "issuers": [{"name": "keycloak", "issuer": issuer, "audiences": [CLIENT_ID],
                     "login": {"client_id": CLIENT_ID,
                               "scopes": ["openid", "email", "profile", "offline_access", "roles"]}}],
        "rules": [{"name": "developers", "issuer": "keycloak", "claims": {"/realm_access/roles": ROLE},
                   "role_arn": f"arn:aws:iam::{ACCOUNT}:role/ccweb-developers", "repositories": ["*"],
                   "access": "write"}],
        "git_endpoints": [{"host": git_host, "region": REGION}],
        "aws": {"session_duration": 3600},
    }


@pytest.fixture(scope="module")
def sandbox(provider: Provider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox(port=0, workdir=tmp_path_factory.mktemp("sandbox"))
    box.config = parse_config(pointer_policy(provider.issuer, box.git_host))
    with box.running() as running:
        yield running


def id_token_claims(home: Path) -> dict[str, Any]:
    """The claims of the ID token the helper keeps from the sign-in."""
    body = cached(home)["id_token"].split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims


def clone(home: Path, sandbox: Sandbox, target: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = environment(home, sandbox, GIT_TERMINAL_PROMPT="0", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "helper"), str(ROOT / "service")])
    return subprocess.run(
        ["git", "-c", "credential.helper=", "-c", f"credential.helper={helper_command()}",
         "-c", "credential.useHttpPath=true", "clone", sandbox.repo_url("demo"), str(target)],
        env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, check=False,
        start_new_session=True,
    )


def test_a_pointer_rule_on_the_nested_roles_claim_grants_a_git_clone(sandbox: Sandbox, home: Path) -> None:
    login(home, sandbox)
    claims = id_token_claims(home)
    assert ROLE in claims["realm_access"]["roles"], "the provider put the nested claim in the ID token"
    assert "groups" not in claims, "the sign-in asked for roles, not groups"
    target = home / "clone"
    result = clone(home, sandbox, target)
    assert result.returncode == 0, result.stderr
    assert (target / "README.md").exists()
    assert browser_runs(home) == 1
    assert_no_secrets(cached(home), result.stdout, result.stderr)


def refusal(region: str) -> str:
    return (f"No ccweb rule grants bob@example.com (subject 'bob' of issuer 'keycloak') access to repository 'demo' "
            f"in {region}; ask the owners of the ccweb policy for access, or check the repository name.")


def test_a_person_without_the_role_is_refused_with_the_services_sentence(sandbox: Sandbox, home: Path) -> None:
    login(home, sandbox, TEST_BROWSER_LOGIN="bob")
    claims = id_token_claims(home)
    assert claims["sub"] == "bob"
    assert claims["realm_access"] == {"roles": ["offline_access", "default-roles-corp"]}, "roles, but not this one"
    got = helper(["get"], environment(home, sandbox), attrs())  # CodeCommit's own host name, in us-east-2
    assert (got.code, got.stdout) == (1, "quit=1\n")
    assert f"ccweb: {refusal('us-east-2')}" in got.stderr, got.stderr
    target = home / "clone"
    result = clone(home, sandbox, target)
    assert result.returncode != 0
    assert f"ccweb: {refusal(REGION)}" in result.stderr, result.stderr
    assert not (target / "README.md").exists()
    assert_no_secrets(cached(home), got.stderr, result.stdout, result.stderr)
