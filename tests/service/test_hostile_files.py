"""A policy or cases file that is not one: ``ccweb test-policy`` and ``check-config`` exit 2 with a sentence.

A CI gate runs ``test-policy`` on files a pull request brings. A file without end (``/dev/zero``) or one far larger
than any policy must be refused in a sentence naming its size, never read into memory until the runner dies.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

import ccweb.config
from ccweb.cli import main

LIMIT = 64 * 1024
"""The limit in these tests (ccweb.config.MAX_YAML_CHARACTERS, lowered so that no test parses megabytes)."""

POLICY = {
    "issuers": [{"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]}],
    "rules": [{"name": "developers", "issuer": "corp", "claims": {"groups": "engineering"},
               "role_arn": "arn:aws:iam::111122223333:role/ccweb/developers", "repositories": ["app"]}],
}
CASE = "cases:\n  - name: alice\n    claims: {sub: alice, groups: [engineering]}\n    repository: app\n" \
       "    expect: developers\n"


@pytest.fixture(autouse=True)
def _limit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ccweb.config.MAX_YAML_CHARACTERS >= 1024 * 1024, "a ConfigMap's worth (1 MiB) at least"
    monkeypatch.setattr(ccweb.config, "MAX_YAML_CHARACTERS", LIMIT)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(POLICY), encoding="utf-8")
    return path


def test_a_cases_file_just_under_the_limit_is_read(policy: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(CASE + "#" * (LIMIT - len(CASE) - 1) + "\n", encoding="utf-8")
    assert main(["test-policy", "--config", str(policy), str(cases)]) == 0
    assert "1 of 1 case(s) hold" in capsys.readouterr().out


def test_a_cases_file_over_the_limit_is_refused_in_a_sentence(policy: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(CASE + "#" * LIMIT + "\n", encoding="utf-8")
    assert main(["test-policy", "--config", str(policy), str(cases)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"the cases file is larger than {LIMIT} characters" in captured.err


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
@pytest.mark.parametrize(("command", "status"), [
    pytest.param(lambda policy: ["test-policy", "--config", str(policy), "/dev/zero"], 2, id="test-policy-cases"),
    pytest.param(lambda policy: ["test-policy", "--config", "/dev/zero", str(policy)], 2, id="test-policy-config"),
    pytest.param(lambda policy: ["check-config", "/dev/zero"], 1, id="check-config"),  # its "invalid" status
])
def test_a_file_without_end_is_refused(policy: Path, command: object, status: int,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert callable(command)
    assert main(command(policy)) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "/dev/zero: the " in captured.err
    assert f"is larger than {LIMIT} characters" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(("value", "named"), [
    pytest.param("2026-12-07", "a date", id="date"),
    pytest.param("2026-12-07T13:00:00Z", "a date", id="timestamp"),
    pytest.param("!!binary aGVsbG8=", "bytes", id="binary"),
    pytest.param("!!set {a: null}", "a set", id="set"),
    pytest.param(".nan", "not a finite number", id="nan"),
    pytest.param("-.inf", "not a finite number", id="infinity"),
    pytest.param("[a, {at: 2026-12-07}]", "a date", id="nested"),
    pytest.param("{1: a}", "a key that is not a string", id="integer-key"),
])
def test_a_claim_no_token_can_carry_is_refused(policy: Path, tmp_path: Path, value: str, named: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A token is JSON: a case whose claim YAML reads as a date, bytes, a set or NaN describes no token, and its
    outcome (decided on a value no token holds) would say nothing about the service. Quote such a value."""
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - name: alice\n    claims:\n      sub: alice\n      groups: [engineering]\n"
                     f"      odd: {value}\n    repository: app\n    expect: developers\n", encoding="utf-8")
    assert main(["test-policy", "--config", str(policy), str(cases)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "cases[0].claims: claim 'odd'" in captured.err
    assert named in captured.err


def test_json_claims_of_every_type_are_read(policy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - name: alice\n    claims:\n      sub: alice\n      groups: [engineering]\n"
                     "      odd: {s: '2026-12-07', i: 1, f: 1.5, b: true, n: null, l: [1, x]}\n"
                     "    repository: app\n    expect: developers\n", encoding="utf-8")
    assert main(["test-policy", "--config", str(policy), str(cases)]) == 0, capsys.readouterr().err
