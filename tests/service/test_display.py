"""Values from outside reach an operator's terminal as visible text, never as escape sequences that drive it.

A token's claim (or a policy or case file's value) holding an OSC 8 hyperlink, a clear-screen sequence, a
carriage return or a bidi override goes through the real ``ccweb explain``, ``test-policy`` and ``check-config``
commands and through the log lines of a real request; no control character comes out, and the value is still
there to be read.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ccweb import logs
from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.display import printable, printable_json
from ccweb.sts import StsError
from support import FakeTime, RecordingSTS, clean_env, fake_retry, serve, serve_issuer

LINK = "\x1b]8;;http://evil\x07click\x1b]8;;\x07"
"""An OSC 8 hyperlink: the terminal shows "click" and opens http://evil."""
PLANTED = LINK + "\x1b[2J" + "\r" + "\u202e" + "moc.elpmaxe@ecila"
"""…then clears the screen, goes back to the line's start, and shows what follows right to left."""
SHOWN = r"\x1b]8;;http://evil\x07click\x1b]8;;\x07\x1b[2J\r\u202emoc.elpmaxe@ecila"
"""What an operator reads instead."""
SHOWN_IN_JSON = r"\u001b]8;;http://evil\u0007click\u001b]8;;\u0007\u001b[2J\r\u202emoc.elpmaxe@ecila"
"""The same, as ``explain`` quotes a claim's value (JSON, whose escapes these are)."""


def drives_no_terminal(text: str) -> bool:
    """Whether ``text`` is lines of printable characters only: nothing a terminal would act on."""
    return all(c.isprintable() or c == "\n" for c in text)


@pytest.mark.parametrize(("value", "shown"), [
    pytest.param(PLANTED, SHOWN, id="link-clear-return-bidi"),
    pytest.param("a\bb\x00c\x7fd", r"a\x08b\x00c\x7fd", id="backspace-nul-del"),
    pytest.param("\x9b2J\x85\x90", r"\x9b2J\x85\x90", id="c1-controls"),
    pytest.param("one\u2028two\u2029three\nfour\tfive", r"one\u2028two\u2029three\nfour\tfive", id="line-breaks"),
    pytest.param("ad\u200bmin\u200d\ufeff\u00ad", r"ad\u200bmin\u200d\ufeff\xad", id="invisible"),
    pytest.param("\u2066x\u2069\u202ay\u202c\u200f", r"\u2066x\u2069\u202ay\u202c\u200f", id="bidi-isolates"),
    pytest.param("alice\u00a0@example.com", r"alice\xa0@example.com", id="non-breaking-space"),
    pytest.param("\U000e0041\U000e0042", r"\U000e0041\U000e0042", id="tag-characters"),
    pytest.param("\ud800", r"\ud800", id="lone-surrogate"),
    pytest.param("jörg@example.com", "jörg@example.com", id="letters-stay"),
    pytest.param("日本語 ünïcödé", "日本語 ünïcödé", id="scripts-stay"),
    pytest.param(r"a\b '\"' ", r"a\b '\"' ", id="printable-stays"),
])
def test_printable(value: str, shown: str) -> None:
    assert printable(value) == shown
    assert drives_no_terminal(printable(value)) and "\n" not in printable(value)
    assert printable(printable(value)) == printable(value)  # text that quotes an escaped value is left alone


@pytest.mark.parametrize("value", [PLANTED, "\x7f\x85\x9b\u2028\u2029\u202e\u200b\ufeff", "\U000e0041", "\ud800",
                                   "jörg", 'q"\\'])
def test_printable_json_is_the_same_value(value: str) -> None:
    line = json.dumps({"identity": value}, ensure_ascii=False)
    safe = printable_json(line)
    assert drives_no_terminal(safe) and "\n" not in safe
    assert json.loads(safe) == {"identity": value}
    if value == "jörg":
        assert safe == line  # a name in another script is not made unreadable


# --- the commands, as an operator runs them ---------------------------------------------------------------------

POLICY = """\
issuers:
  - name: corp
    issuer: https://login.example.com
    audiences: [ccweb]
deny:
  - name: locked
    claims: {groups: locked}
rules:
  - name: devs
    issuer: corp
    claims:
      email: {pattern: '.+@example\\.com'}
    role_arn: arn:aws:iam::111122223333:role/ccweb-devs
    repositories: ['*']
"""


def ccweb(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "ccweb", *argv], cwd=cwd, capture_output=True, timeout=60,
                            env=clean_env(PYTHONIOENCODING="utf-8"), check=False)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode("utf-8"),
                                       result.stderr.decode("utf-8"))


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "policy.yaml").write_text(POLICY, encoding="utf-8")
    claims = {"iss": "https://login.example.com", "aud": "ccweb", "sub": PLANTED, "email": PLANTED,
              "email_verified": True, "groups": ["staff", PLANTED]}
    (tmp_path / "claims.json").write_text(json.dumps(claims), encoding="utf-8")
    return tmp_path


def test_explain_shows_a_planted_claim_without_acting_on_it(files: Path) -> None:
    result = ccweb(files, "explain", "--config", "policy.yaml", "--claims", "claims.json", "--repo", "app")
    assert result.returncode == 1, result.stderr
    assert drives_no_terminal(result.stdout + result.stderr), result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].endswith(f"; identity {SHOWN}")  # the identity line, which quoted the claim raw
    assert f'claim groups = ["staff", "{SHOWN_IN_JSON}"]: no element equals "locked"' in result.stdout
    assert f'claim email = "{SHOWN_IN_JSON}" does not match the pattern' in result.stdout
    assert lines[-1] == "denied: no rule grants 'app' in us-east-1; the service answers 403 access_denied"


def test_explain_errors_quote_a_planted_claim_without_acting_on_it(files: Path) -> None:
    (files / "other.json").write_text(json.dumps({"iss": PLANTED + "\u0085\u2028", "sub": "u"}), encoding="utf-8")
    result = ccweb(files, "explain", "--config", "policy.yaml", "--claims", "other.json", "--repo", "app",
                   "--issuer", "corp")
    assert result.returncode == 2
    assert drives_no_terminal(result.stdout + result.stderr), result.stderr
    assert result.stderr.startswith("ccweb explain: --issuer corp: the claims' iss ")
    assert SHOWN_IN_JSON + r"\x85\u2028" in result.stderr


def test_test_policy_shows_a_planted_claim_without_acting_on_it(files: Path) -> None:
    cases = {"cases": [{"name": "locked out\x1b[2J", "claims": {"sub": PLANTED, "groups": "locked"},
                        "repository": "app", "expect": "devs"}]}
    (files / "cases.yaml").write_text(json.dumps(cases), encoding="utf-8")  # JSON is YAML
    result = ccweb(files, "test-policy", "--config", "policy.yaml", "cases.yaml")
    assert result.returncode == 1, result.stderr
    assert drives_no_terminal(result.stdout + result.stderr), result.stdout
    assert result.stdout == (
        rf"cases[0] 'locked out\x1b[2J': expected devs, got suspended (deny entry 'locked' suspends {SHOWN})" + "\n"
    )


def test_check_config_names_a_planted_key_without_acting_on_it(files: Path) -> None:
    planted = POLICY.replace("      email:", '      "e\\e[2J\\u202e": {patern: x}\n      email:')
    (files / "bad.yaml").write_text(planted, encoding="utf-8")
    result = ccweb(files, "check-config", "bad.yaml")
    assert result.returncode == 1
    assert drives_no_terminal(result.stdout + result.stderr), result.stderr
    assert r"rules[0].claims.e\x1b[2J\u202e.patern: unknown key" in result.stderr.splitlines()


# --- the log lines of a real request ----------------------------------------------------------------------------

@pytest.fixture
def logged() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """What a served app logs, in text and in JSON, while it refuses a token whose claims hold ``PLANTED``."""
    text, jsonl = io.StringIO(), io.StringIO()
    test_thread = threading.get_ident()
    handlers = [logs.handler(text, "text"), logs.handler(jsonl, "json")]
    root = logging.getLogger()
    level = root.level
    for handler in handlers:
        handler.addFilter(lambda record: record.thread != test_thread)  # not this test's own HTTP client
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with serve_issuer() as issuer:
            policy: dict[str, Any] = {
                "issuers": [{"name": "corp", "issuer": issuer.issuer_url, "audiences": ["ccweb"]}],
                "rules": [{"name": "admins", "issuer": "corp", "claims": {"groups": "admins"},
                           "role_arn": "arn:aws:iam::111122223333:role/ccweb", "repositories": ["*"]}],
            }
            with serve(create_app(parse_config(policy), sts=RecordingSTS())) as url:
                token = issuer.mint({"sub": PLANTED, "email": PLANTED, "email_verified": True})
                response = httpx.post(f"{url}/v1/credentials", headers={"Authorization": f"Bearer {token}"},
                                      json={"protocol": "https", "host": "git-codecommit.us-east-2.amazonaws.com",
                                            "path": "v1/repos/app"})
                assert response.status_code == 403, response.text
        yield text, jsonl
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(level)


def test_a_text_log_line_shows_a_planted_claim_without_acting_on_it(logged: tuple[io.StringIO, io.StringIO]) -> None:
    text, _ = logged
    output = text.getvalue()
    assert drives_no_terminal(output), output
    audit = [line for line in output.splitlines() if " ccweb.audit: " in line]
    assert len(audit) == 1, output
    assert f' subject="{SHOWN}" ' in audit[0]  # quoted, so that what follows is not read as fields of its own
    assert " outcome=denied " in audit[0]


def test_a_json_log_line_has_the_exact_claim_and_no_control_character(
        logged: tuple[io.StringIO, io.StringIO]) -> None:
    _, jsonl = logged
    output = jsonl.getvalue()
    assert drives_no_terminal(output), output
    audit = [json.loads(line) for line in output.splitlines() if '"ccweb.audit"' in line]
    assert [(r["outcome"], r["subject"]) for r in audit] == [("denied", PLANTED)]


SPOOF = "u-mallory\u3164outcome\ua78aissued\u3164rule\ua78aadmins\u115frole_arn\uff1darn:aws:iam::1:role/admin"
"""A subject that, written bare, reads as ``u-mallory outcome=issued rule=admins role_arn=…``: Hangul fillers
(U+3164, U+115F) look like spaces and U+A78A, U+FF1D like ``=``, and all of them are printable."""


@pytest.mark.parametrize(("value", "shown"), [
    pytest.param("alice", "subject=alice", id="plain"),
    pytest.param("a outcome=issued", 'subject="a outcome=issued"', id="space-and-equals"),
    pytest.param('say "hi" \\o/', r'subject="say \"hi\" \\o/"', id="quote-and-backslash"),
    pytest.param("", 'subject=""', id="empty"),
    pytest.param("\x1b[2J", r'subject="\x1b[2J"', id="control"),
    pytest.param(r"\x1b[2J", r'subject="\\x1b[2J"', id="an-escape-written-out-is-not-one"),
    pytest.param(SPOOF, f'subject="{SPOOF}"', id="lookalike-spaces-and-equals"),
    pytest.param("jörg@example.com", 'subject="jörg@example.com"', id="any-non-ascii-letter"),
    pytest.param("\u2800", 'subject="\u2800"', id="braille-blank"),
])
def test_a_text_field_cannot_pass_for_more_fields(value: str, shown: str) -> None:
    record = logging.LogRecord("ccweb.audit", logging.INFO, __file__, 1, "credential %s", ("denied",), None)
    record.fields = {"outcome": "denied", "subject": value, "rule": "admins"}
    line = logs.TextFormatter().format(record)
    assert line.endswith(f"ccweb.audit: credential denied outcome=denied {shown} rule=admins")


def test_a_text_log_message_shows_a_planted_value_without_acting_on_it() -> None:
    record = logging.LogRecord("ccweb.reload", logging.ERROR, __file__, 1, "policy %s refused", (PLANTED,), None)
    line = logs.TextFormatter().format(record)
    assert drives_no_terminal(line)
    assert line.endswith(f"ccweb.reload: policy {SHOWN} refused")


# --- /readyz, which an operator reads with curl -----------------------------------------------------------------

def test_readyz_shows_an_error_text_without_acting_on_it() -> None:
    """``/readyz`` quotes the last error code of whatever answers at the STS endpoint (``AWS_ENDPOINT_URL_STS``
    may name a proxy). JSON escapes only U+0000-U+001F; ``/readyz`` escapes every character that could drive a
    terminal (C1 controls, bidi overrides, line separators) as well."""
    planted = PLANTED + "\x9b2J\u2028"
    with serve_issuer() as issuer:
        policy = {"issuers": [{"name": "corp", "issuer": issuer.issuer_url, "audiences": ["ccweb"]}],
                  "rules": [{"name": "all", "issuer": "corp", "role_arn": "arn:aws:iam::111122223333:role/ccweb",
                             "repositories": ["*"]}]}
        app = create_app(parse_config(policy), sts=RecordingSTS(fail=StsError(planted, "slow down", retryable=True)))
        app.state.sessions.retry = fake_retry(FakeTime())  # the retries on a fake clock
        with serve(app) as url:
            token = issuer.mint({"sub": "u-1"})
            response = httpx.post(f"{url}/v1/credentials", headers={"Authorization": f"Bearer {token}"},
                                  json={"protocol": "https", "host": "git-codecommit.us-east-2.amazonaws.com",
                                        "path": "v1/repos/app"})
            assert response.status_code == 503, response.text
            ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200
    assert drives_no_terminal(ready.text), ready.text
    assert ready.json()["sts"] == {"state": "failing", "last_error": SHOWN + r"\x9b2J\u2028",
                                   "endpoint": None, "region": None}  # a stand-in names no endpoint
