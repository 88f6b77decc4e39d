"""`ccweb dev` as the README tells people to try single sign-on: `ccweb-helper login --device` against the
sandbox's development issuer, the code entered on its device page, then git's `get` answered from the login
cache — no token file anywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ccweb.sandbox.dev import Sandbox
from support import device_login, home_env


def helper(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ccweb_helper", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_device_login_to_the_sandbox_then_git_gets_a_password(sandbox: Sandbox, tmp_path: Path) -> None:
    env = home_env(tmp_path, CCWEB_URL=sandbox.api_url, CCWEB_CACHE_DIR=str(tmp_path / "cache"))
    err = device_login(env)
    assert f"open {sandbox.issuer_url}/device on any device" in err.splitlines()[0]
    assert "signed in to dev as bob@example.com" in err

    stdin = "protocol=https\nhost=git-codecommit.us-east-1.amazonaws.com\npath=v1/repos/demo\n\n"
    got = helper(env, "get", stdin=stdin)
    assert got.returncode == 0, got.stderr
    answer = dict(line.split("=", 1) for line in got.stdout.splitlines())
    session = sandbox.sts.lookup(answer["username"].split("%", 1)[0])
    assert session is not None and session.source_identity == "bob@example.com"

    status = helper(env, "status")
    assert status.returncode == 0, status.stderr
    assert "bob@example.com" in status.stdout
    assert "\n  rule contractors: read access to demo as arn:aws:iam::" in status.stdout
