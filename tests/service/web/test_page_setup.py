"""The page's set-up for macOS and Linux is true: pasted into a shell, against the sandbox, each block installs
the helper from the service, sets git up and clones the repository the page names, with the real git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ccweb.policy import compile_policy
from ccweb.sandbox.dev import Sandbox
from ccweb.sandbox.issuer import DEMO_USERS
from ccweb.web.snippets import first_clone, setup_platforms
from support import home_env


@pytest.mark.parametrize("block", ["setup-unix-download", "setup-unix-sh"])
def test_a_setup_block_pasted_in_a_shell_clones_the_repository_it_names(sandbox: Sandbox, tmp_path: Path,
                                                                         block: str) -> None:
    policy = compile_policy(sandbox.config)
    claims = {"iss": sandbox.issuer_url, "sub": "dev|alice", **DEMO_USERS["alice"]}
    clone = first_clone(policy, "dev", claims)
    assert (clone.url, clone.placeholder) == (sandbox.repo_url("demo"), False)
    unix, _ = setup_platforms(sandbox.api_url, clone, login=True)
    [code] = [b.code for b in unix.blocks if b.id == block]
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = home_env(home, CCWEB_TOKEN_FILE=str(sandbox.token_file("alice")))
    env.pop("PYTHONPATH")  # the helper comes from the service, nothing else
    ran = subprocess.run(["sh", "-e", "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert ran.returncode == 0, ran.stderr
    assert (home / ".local" / "bin" / "ccweb-helper").is_file()
    assert (work / "demo" / ".git").is_dir(), "cloned into the directory git names after the repository"
    helpers = subprocess.run(["git", "config", "--global", "--get-all", f"credential.{sandbox.git_url}.helper"],
                             env=env, capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    assert helpers[0] == "" and "ccweb-helper" in helpers[1], helpers
