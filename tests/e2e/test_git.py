"""End to end with the real git binary: git → ccweb-helper → ccweb → STS stand-in → signature-checking
git server (git http-backend), all from the `ccweb dev` sandbox on loopback."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ccweb.sandbox.dev import Sandbox, helper_command
from support import clean_env

ROOT = Path(__file__).resolve().parents[2]


class Capture(logging.Handler):
    """Every log record of the whole run, formatted, for the planted-secrets check."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", None)
        self.lines.append(f"{record.name} {record.getMessage()} {fields or ''} {record.exc_text or ''}")
        if record.levelno >= logging.WARNING:
            self.warnings.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture(scope="module")
def logs() -> Iterator[Capture]:
    capture = Capture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(previous)


@pytest.fixture(scope="module")
def sandbox(logs: Capture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(port=0, workdir=tmp_path_factory.mktemp("sandbox"), log_level="debug").running() as box:
        yield box


@pytest.fixture(scope="module")
def outputs() -> list[str]:
    """Everything git and the helper printed in this module."""
    return []


def git_env(home: Path, sandbox: Sandbox, token_file: Path | None, **extra: str) -> dict[str, str]:
    env = clean_env()
    askpass = home / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho prompted >> {home}/prompted\nexit 1\n")
    askpass.chmod(0o700)
    env.update({
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_ASKPASS": str(askpass),  # records any prompt: ccweb must never let git prompt
        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
        "CCWEB_URL": sandbox.api_url,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "helper"), str(ROOT / "service")]),
    })
    if token_file is not None:
        env["CCWEB_TOKEN_FILE"] = str(token_file)
    env.update(extra)
    return env


CREDENTIAL_CONFIG = [
    "-c", "credential.helper=",
    "-c", f"credential.helper={helper_command()}",
    "-c", "credential.useHttpPath=true",
]


def git(args: list[str], env: dict[str, str], outputs: list[str], cwd: Path | None = None,
        ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["git", *CREDENTIAL_CONFIG, *args], env=env, cwd=cwd, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=120, check=False,
    )
    outputs.append(result.stdout + result.stderr)
    return result


def clone(sandbox: Sandbox, home: Path, user: str, outputs: list[str], **extra: str) -> tuple[
        subprocess.CompletedProcess[str], Path, dict[str, str]]:
    env = git_env(home, sandbox, sandbox.token_file(user), **extra)
    target = home / f"clone-{user}"
    return git(["clone", sandbox.repo_url("demo"), str(target)], env, outputs), target, env


def assert_not_prompted(home: Path, result: subprocess.CompletedProcess[str]) -> None:
    assert not (home / "prompted").exists(), "git prompted for a username/password"
    assert "Username for" not in result.stderr
    assert "could not read Username" not in result.stderr


def test_helper_resolves_to_this_installation() -> None:
    assert "ccweb-helper" in helper_command() or "ccweb_helper" in helper_command()


def test_clone_and_push_with_write_access(sandbox: Sandbox, home: Path, outputs: list[str]) -> None:
    result, work, env = clone(sandbox, home, "alice", outputs)
    assert result.returncode == 0, result.stderr
    assert (work / "README.md").exists()
    (work / "change.txt").write_text("hello from alice\n")
    for args in (["add", "change.txt"], ["commit", "-m", "alice was here"]):
        subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True)
    pushed = git(["push", "origin", "HEAD"], env, outputs, cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    log = subprocess.run(["git", "--git-dir", str(sandbox.repos / "demo.git"), "log", "-1", "--format=%s", "main"],
                         capture_output=True, text=True, check=True)
    assert log.stdout.strip() == "alice was here"
    assert_not_prompted(home, pushed)


def test_read_rule_clones_but_cannot_push(sandbox: Sandbox, home: Path, outputs: list[str]) -> None:
    result, work, env = clone(sandbox, home, "bob", outputs)
    assert result.returncode == 0, result.stderr
    session = next(call for call in reversed(sandbox.sts.calls) if "bob" in call.source_identity)
    assert "codecommit:GitPush" not in (session.policy or "")
    assert "codecommit:GitPull" in (session.policy or "")
    subprocess.run(["git", "commit", "--allow-empty", "-m", "bob tries"], cwd=work, env=env, check=True,
                   capture_output=True)
    pushed = git(["push", "origin", "HEAD"], env, outputs, cwd=work)
    assert pushed.returncode != 0
    assert "codecommit:GitPush" in pushed.stderr
    assert_not_prompted(home, pushed)


def test_denied_identity_fails_fast_with_ccweb_sentence(sandbox: Sandbox, home: Path, outputs: list[str]) -> None:
    result, work, _ = clone(sandbox, home, "mallory", outputs)
    assert result.returncode != 0
    assert "ccweb: No ccweb rule grants mallory@example.net" in result.stderr
    assert "'demo'" in result.stderr
    assert not work.exists() or not any(work.iterdir())
    assert_not_prompted(home, result)


def test_expired_token_is_explained(sandbox: Sandbox, home: Path, outputs: list[str]) -> None:
    token_file = home / "expired.jwt"
    token_file.write_text(sandbox.issuer.mint_user("alice", ttl=60, now=1_700_000_000) + "\n")
    env = git_env(home, sandbox, token_file)
    result = git(["clone", sandbox.repo_url("demo"), str(home / "x")], env, outputs)
    assert result.returncode != 0
    assert "ccweb: The OIDC token was refused: it has expired" in result.stderr
    assert_not_prompted(home, result)


def test_service_unreachable_is_explained(sandbox: Sandbox, home: Path, outputs: list[str]) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = git_env(home, sandbox, sandbox.token_file("alice"), CCWEB_URL=dead)
    result = git(["clone", sandbox.repo_url("demo"), str(home / "x")], env, outputs)
    assert result.returncode != 0
    assert "ccweb:" in result.stderr and dead in result.stderr
    assert "Traceback" not in result.stderr
    assert_not_prompted(home, result)


def test_token_files_are_private(sandbox: Sandbox) -> None:
    mode = stat.S_IMODE(sandbox.token_file("alice").stat().st_mode)
    assert mode == 0o600


def test_no_secret_reaches_logs_or_output(sandbox: Sandbox, logs: Capture, outputs: list[str]) -> None:
    """Planted values: every token, session token, secret key and password of the run stays out of logs."""
    token = sandbox.token_file("alice").read_text().strip()
    issued = httpx.post(
        f"{sandbox.api_url}/v1/credentials", headers={"Authorization": f"Bearer {token}"},
        json={"protocol": "http", "host": sandbox.git_host, "path": "v1/repos/demo"},
    ).json()
    planted = {token, issued["password"], issued["username"], issued["password"].split("Z", 1)[1]}
    planted |= {sandbox.token_file(user).read_text().strip() for user in ("alice", "bob", "mallory")}
    for call in sandbox.sts.calls:
        session = sandbox.sts.lookup(call.access_key_id) if hasattr(call, "access_key_id") else None
        if session is not None:
            planted |= {session.credentials.secret_access_key, session.credentials.session_token or ""}
    text = "\n".join(logs.lines + outputs)
    assert len(logs.lines) > 10  # the run did log (audit lines, at least)
    assert any("credential issued" in line for line in logs.lines)
    for secret in planted:
        assert secret and secret not in text
    for marker in ("DEVSESSIONTOKEN", "DEVSECRET"):
        assert marker not in text


def test_the_run_logged_no_warnings(logs: Capture) -> None:
    """Every git process the server ran was reaped cleanly, no request failed inside the service."""
    assert logs.warnings == []


def test_sandbox_refuses_non_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Sandbox(host="0.0.0.0", port=0)  # noqa: S104
    result = subprocess.run([sys.executable, "-m", "ccweb", "dev", "--host", "0.0.0.0"],  # noqa: S104
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "PYTHONPATH": f"{ROOT / 'service'}:{ROOT / 'helper'}"})
    assert result.returncode != 0
    assert "loopback" in result.stderr and "Traceback" not in result.stderr
