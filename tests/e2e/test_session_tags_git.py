"""Session tags end to end with the real git: a rule with ``session_tags`` (a JSON Pointer into a nested claim
and a top-level claim) and ``transitive_session_tags``, served by the `ccweb dev` sandbox's real service; git →
ccweb-helper → ccweb → the STS stand-in (which records the tags and checks them as STS does) → the
signature-checking git server. A token whose tag claim is a list, or lacks it, gets git's refusal with the
service's sentence naming the claim, and STS is never asked."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccweb.config import parse_config
from ccweb.sandbox.dev import ACCOUNT, Sandbox, helper_command, sandbox_policy
from ccweb.sandbox.sts import StsFault
from support import home_env

ROLE = f"arn:aws:iam::{ACCOUNT}:role/ccweb-abac"
TAGGED_RULE: dict[str, Any] = {
    "name": "abac", "issuer": "dev", "claims": {"/org/unit": "engineering"},
    "session_tags": {"team": "/org/team", "cost-center": "cost_center", "Department": "/org/unit"},
    "transitive_session_tags": ["team"],
    "role_arn": ROLE, "repositories": ["demo"], "access": "read",
}


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The sandbox whose service has the tag rule first."""
    box = Sandbox(port=0, workdir=tmp_path_factory.mktemp("tagged"))
    policy = sandbox_policy(box.issuer_url, box.git_host)
    policy["rules"] = [TAGGED_RULE, *policy["rules"]]
    box.config = parse_config(policy)
    with box.running() as running:
        yield running


def token_file(box: Sandbox, home: Path, name: str, org: dict[str, Any], **claims: Any) -> Path:
    """A token of ``box``'s issuer for ``name`` with the claim ``org`` and ``claims``, in a file of mode 0600."""
    path = home / f"{name}.jwt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(box.issuer.mint({"sub": f"dev|{name}", "email": f"{name}@example.com", "email_verified": True,
                                      "org": org, **claims}) + "\n")
    return path


def clone(box: Sandbox, home: Path, token: Path) -> subprocess.CompletedProcess[str]:
    askpass = home / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho prompted >> {home}/prompted\nexit 1\n")
    askpass.chmod(0o700)
    env = home_env(home, CCWEB_URL=box.api_url, CCWEB_TOKEN_FILE=str(token), GIT_ASKPASS=str(askpass))
    return subprocess.run(
        ["git", "-c", "credential.helper=", "-c", f"credential.helper={helper_command()}",
         "-c", "credential.useHttpPath=true", "clone", box.repo_url("demo"), str(home / "demo")],
        env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, check=False,
    )


def test_a_clone_carries_the_rule_s_tags_from_the_token_s_claims(tagged: Sandbox, home: Path) -> None:
    token = token_file(tagged, home, "carol", {"unit": "engineering", "team": "payments"}, cost_center=4711)
    before = len(tagged.sts.calls)
    cloned = clone(tagged, home, token)
    assert cloned.returncode == 0, cloned.stderr
    assert (home / "demo" / "README.md").exists()
    [session] = tagged.sts.calls[before:]
    assert session.role_arn == ROLE
    assert session.source_identity == "carol@example.com"
    assert session.tags == (("team", "payments"), ("cost-center", "4711"), ("Department", "engineering"))
    assert session.transitive_tag_keys == ("team",)
    assert not (home / "prompted").exists()


WHOSE = "your token (subject 'dev|dave' of issuer 'dev')"


@pytest.mark.parametrize(("org", "claims", "sentence"), [
    pytest.param({"unit": "engineering", "team": ["payments", "risk"]}, {"cost_center": 4711},
                 f"""rule 'abac' sends the claim "/org/team" as the session tag 'team', and in {WHOSE} that claim """
                 "holds a list, and a session tag holds one value", id="a-list"),
    pytest.param({"unit": "engineering"}, {"cost_center": 4711},
                 f"""rule 'abac' sends the claim "/org/team" as the session tag 'team', which {WHOSE} does not """
                 "carry", id="missing"),
    pytest.param({"unit": "engineering", "team": "payments"}, {"cost_center": {"code": 4711}},
                 f"""rule 'abac' sends the claim "cost_center" as the session tag 'cost-center', and in {WHOSE} """
                 "that claim holds an object", id="an-object"),
])
def test_a_claim_that_cannot_be_a_tag_is_git_s_refusal_naming_it_and_sts_is_never_asked(
    tagged: Sandbox, home: Path, org: dict[str, Any], claims: dict[str, Any], sentence: str
) -> None:
    token = token_file(tagged, home, "dave", org, **claims)
    asked = tagged.sts.requests
    refused = clone(tagged, home, token)
    assert refused.returncode != 0
    said = [line for line in refused.stderr.splitlines() if line.startswith("ccweb:")]
    assert said and said[0].startswith(f"ccweb: The ccweb {sentence}"), refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (home / "prompted").exists()
    assert tagged.sts.requests == asked, "STS was asked"
    assert not (home / "demo").exists() or not any((home / "demo").iterdir())


def test_sts_refusing_the_tags_is_git_s_refusal_with_the_operators_sentence(tagged: Sandbox, home: Path) -> None:
    token = token_file(tagged, home, "erin", {"unit": "engineering", "team": "payments"}, cost_center=4711)
    tagged.sts.faults.append(StsFault(400, "PackedPolicyTooLarge",
                                      "Packed size of session tags consumes 112% of allotted space."))
    refused = clone(tagged, home, token)
    assert refused.returncode != 0
    said = [line for line in refused.stderr.splitlines() if line.startswith("ccweb:")]
    assert said and said[0].startswith(f"ccweb: AWS refused the session for the role {ROLE}: its session policy "
                                       "and session tags together are over STS's packed size limit"), refused.stderr
    assert "ccweb operators" in said[0] and "112%" not in refused.stderr
    assert not (home / "prompted").exists()
