"""The emergency deny list: validated like rules, checked before them, and a match refuses everything."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ccweb.app import create_app
from ccweb.config import ConfigError, parse_config
from ccweb.policy import Repository, Suspended, compile_policy
from ccweb.sandbox.issuer import DevIssuer
from support import RecordingSTS, serve, serve_issuer

ROOT = Path(__file__).resolve().parents[2]


def policy(issuer_url: str = "https://login.example.com", deny: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "issuers": [{"name": "corp", "issuer": issuer_url, "audiences": ["ccweb"]},
                    {"name": "ci", "issuer": "https://ci.example.com", "audiences": ["ccweb"]}],
        "deny": deny if deny is not None else [
            {"name": "offboarded", "issuer": "corp", "claims": {"email": "eve@example.com"},
             "reason": "left the company"},
            {"claims": {"groups": {"pattern": "quarantine-.*"}}},
            {"name": "ci-outage", "issuer": "ci"},
        ],
        "rules": [{"name": "everyone", "issuer": "corp", "role_arn": "arn:aws:iam::111122223333:role/all",
                   "repositories": ["*"], "access": "write"}],
    }


MATCHES = {
    "by claim": ("corp", {"sub": "1", "email": "eve@example.com"}, "offboarded"),
    "claim from another issuer": ("ci", {"sub": "1", "email": "eve@example.com"}, "ci-outage"),
    "no issuer: any issuer": ("corp", {"sub": "2", "groups": ["staff", "quarantine-7"]}, "deny[1]"),
    "a whole issuer": ("ci", {"sub": "repo:acme/app"}, "ci-outage"),
    "not listed": ("corp", {"sub": "3", "email": "dana@example.com", "groups": ["quarantine"]}, None),
    "missing claim never matches": ("corp", {"sub": "4"}, None),
}


@pytest.mark.parametrize(("issuer", "claims", "label"), MATCHES.values(), ids=MATCHES.keys())
def test_suspended(issuer: str, claims: dict[str, Any], label: str | None) -> None:
    for where in (Repository("app", "us-east-1"), None):  # a repository, or every one (whoami)
        decision = compile_policy(parse_config(policy())).decide(issuer, claims, where)
        assert (decision.entry.label if isinstance(decision, Suspended) else None) == label


REFUSED = {
    "everyone": ([{"name": "all"}], "deny[0].claims: an entry needs an issuer or at least one claim condition"),
    "unknown issuer": ([{"issuer": "nope"}], "deny[0].issuer: no issuer is named 'nope'"),
    "bad pattern": ([{"claims": {"email": {"pattern": "("}}}], "deny[0].claims.email.pattern: not a valid regular"),
    "bad claim name": ([{"claims": {"a b": "x"}}], "deny[0].claims: 'a b' is not a claim name"),
    "bad condition": ([{"claims": {"groups": ["a"]}}], "deny[0].claims.groups: must be a string, a boolean"),
    "name twice": ([{"name": "x", "issuer": "corp"}, {"name": "x", "issuer": "ci"}],
                   "deny[1].name: 'x' is used twice"),
    "unknown key": ([{"issuer": "corp", "subject": "x"}], "deny[0].subject: unknown key"),
    "multi-line reason": ([{"issuer": "corp", "reason": "a\nb"}], "deny[0].reason: String should match pattern"),
    "not a list": ({"issuer": "corp"}, "deny: Input should be a valid list"),
}


@pytest.mark.parametrize(("deny", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_refused(deny: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(policy(deny=deny))
    assert any(line.startswith(message) for line in caught.value.messages), caught.value.messages


def test_check_config_validates_the_deny_list(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy(deny=[{"issuer": "nope"}])))
    env = {"PYTHONPATH": f"{ROOT / 'service'}:{ROOT / 'helper'}", "PATH": "/usr/bin:/bin"}
    bad = subprocess.run([sys.executable, "-m", "ccweb", "check-config", str(path)], env=env,
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert "deny[0].issuer: no issuer is named 'nope'" in bad.stderr
    path.write_text(yaml.safe_dump(policy()))
    good = subprocess.run([sys.executable, "-m", "ccweb", "check-config", str(path)], env=env,
                          capture_output=True, text=True, check=False)
    assert good.returncode == 0, good.stderr
    assert "3 deny entry(ies)" in good.stdout


class Env:
    def __init__(self, url: str, issuer: DevIssuer, sts: RecordingSTS) -> None:
        self.url, self.issuer, self.sts = url, issuer, sts

    def get(self, claims: dict[str, Any]) -> tuple[httpx.Response, httpx.Response]:
        headers = {"Authorization": f"Bearer {self.issuer.mint(claims)}"}
        credentials = httpx.post(f"{self.url}/v1/credentials", headers=headers,
                                 json={"protocol": "https", "host": "git-codecommit.us-east-1.amazonaws.com",
                                       "path": "v1/repos/app"})
        return credentials, httpx.get(f"{self.url}/v1/whoami", headers=headers)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with serve_issuer() as issuer:
        sts = RecordingSTS()
        with serve(create_app(parse_config(policy(issuer.issuer_url)), sts=sts)) as url:
            yield Env(url, issuer, sts)


def test_a_deny_entry_beats_a_matching_rule(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    calls = len(env.sts.requests)
    with caplog.at_level(logging.INFO, logger="ccweb.audit"):
        credentials, whoami = env.get({"sub": "u-eve", "email": "eve@example.com"})
    assert credentials.status_code == 403
    body = credentials.json()
    assert body["error"] == "access_denied"
    assert body["detail"] == (
        "Access to ccweb for eve@example.com (subject 'u-eve' of issuer 'corp') is suspended by its operators "
        "(left the company); ask them to lift the suspension."
    )
    assert len(env.sts.requests) == calls
    [record] = [r for r in caplog.records if r.name == "ccweb.audit"]
    fields = record.fields  # type: ignore[attr-defined]
    assert {k: fields.get(k) for k in ("outcome", "reason", "deny", "subject", "repository")} == {
        "outcome": "denied", "reason": "suspended", "deny": "offboarded", "subject": "u-eve", "repository": "app",
    }
    assert whoami.status_code == 200
    assert whoami.json()["rules"] == []
    assert whoami.json()["suspended"] == body["detail"]


def test_an_unnamed_entry_is_audited_by_its_index(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ccweb.audit"):
        credentials, _ = env.get({"sub": "u-q", "groups": ["quarantine-1"]})
    assert credentials.status_code == 403
    assert "is suspended by its operators; ask them" in credentials.json()["detail"]
    [record] = [r for r in caplog.records if r.name == "ccweb.audit"]
    assert record.fields["deny"] == "deny[1]"  # type: ignore[attr-defined]


def test_everyone_else_still_gets_the_rule(env: Env) -> None:
    credentials, whoami = env.get({"sub": "u-dana", "email": "dana@example.com"})
    assert credentials.status_code == 200, credentials.text
    assert credentials.json()["rule"] == "everyone"
    assert [r["rule"] for r in whoami.json()["rules"]] == ["everyone"]
    assert whoami.json()["suspended"] is None
    assert "suspended" not in json.dumps(credentials.json())
