"""``ccweb-helper setup`` and ``doctor`` for the console's GRC URLs, judged by what the real git then does: the
four keys written once, a person's own values kept, ``--no-grc`` handing ``codecommit::`` URLs back to AWS's
git-remote-codecommit (a stand-in on PATH that records being run), and doctor saying which of the two git runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ccweb.sandbox.dev import Sandbox
from support import home_env

GRC_KEYS = ("url.ccweb::.insteadof", "url.ccweb::codecommit://.insteadof", "alias.remote-ccweb", "protocol.ccweb.allow")


def fake_aws_helper(home: Path) -> Path:
    """A ``git-remote-codecommit`` in a directory of its own: it records its arguments and fails, as AWS's would
    without AWS keys."""
    directory = home / "aws-bin"
    directory.mkdir()
    program = directory / "git-remote-codecommit"
    program.write_text(f"#!/bin/sh\necho \"$@\" >> {home}/aws-ran\necho 'no AWS credentials' >&2\nexit 1\n")
    program.chmod(0o755)
    return program


def environment(home: Path, sandbox: Sandbox, aws: Path | None = None) -> dict[str, str]:
    env = home_env(home, CCWEB_URL=sandbox.api_url, CCWEB_TOKEN_FILE=str(sandbox.token_file("alice")))
    if aws is not None:
        env["PATH"] = f"{aws.parent}:{env['PATH']}"
    return env


def helper(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ccweb_helper", *args], env=env, cwd=env["HOME"],
                          capture_output=True, text=True, timeout=120, check=False)


def git(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], env=env, cwd=env["HOME"], capture_output=True, text=True, timeout=120,
                          check=False)


def grc_config(env: dict[str, str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key in GRC_KEYS:
        values = git(env, "config", "--global", "--get-all", key).stdout.splitlines()
        if values:
            found[key] = values
    return found


def rewritten(env: dict[str, str]) -> list[str]:
    return [git(env, "ls-remote", "--get-url", url).stdout.strip()
            for url in ("codecommit::us-east-1://demo", "codecommit://demo")]


def test_setup_writes_the_four_keys_once(sandbox: Sandbox, home: Path) -> None:
    env = environment(home, sandbox)
    dry = helper(env, "setup", "--url", sandbox.api_url, "--dry-run")
    assert "git config --global --add url.ccweb::.insteadOf codecommit::\n" in dry.stdout
    assert "git config --global --add url.ccweb::codecommit://.insteadOf codecommit://\n" in dry.stdout
    assert "git config --global --replace-all protocol.ccweb.allow always\n" in dry.stdout
    done = helper(env, "setup", "--url", sandbox.api_url)
    assert done.returncode == 0, done.stderr
    assert "the console's GRC URLs, through" in done.stdout
    config = grc_config(env)
    assert config.pop("alias.remote-ccweb")[0].endswith("ccweb_helper/__main__.py grc")
    assert config == {"url.ccweb::.insteadof": ["codecommit::"], "url.ccweb::codecommit://.insteadof": ["codecommit://"],
                      "protocol.ccweb.allow": ["always"]}
    assert rewritten(env) == ["ccweb::us-east-1://demo", "ccweb::codecommit://demo"]
    written = (home / ".gitconfig").read_bytes()
    again = helper(env, "setup", "--url", sandbox.api_url)
    assert again.returncode == 0 and "Already configured" in again.stdout
    assert (home / ".gitconfig").read_bytes() == written


def test_a_persons_own_insteadof_value_is_kept(sandbox: Sandbox, home: Path) -> None:
    env = environment(home, sandbox)
    assert git(env, "config", "--global", "url.ccweb::.insteadOf", "cc::").returncode == 0
    assert helper(env, "setup", "--url", sandbox.api_url).returncode == 0
    assert grc_config(env)["url.ccweb::.insteadof"] == ["cc::", "codecommit::"]
    assert "Already configured" in helper(env, "setup", "--url", sandbox.api_url).stdout
    assert helper(env, "setup", "--url", sandbox.api_url, "--no-grc").returncode == 0
    assert grc_config(env) == {"url.ccweb::.insteadof": ["cc::"]}


def test_no_grc_hands_codecommit_urls_back_to_aws_and_doctor_says_which_git_runs(sandbox: Sandbox, home: Path) -> None:
    aws = fake_aws_helper(home)
    env = environment(home, sandbox, aws)
    assert helper(env, "setup", "--url", sandbox.api_url).returncode == 0

    # ccweb's while the insteadOf is set, and doctor says so, naming AWS's too and how to choose it.
    listed = git(env, "ls-remote", "codecommit::us-east-1://demo")
    assert listed.returncode == 0, listed.stderr
    assert not (home / "aws-ran").exists()
    doctor = helper(env, "doctor").stdout
    assert "ok    git hands codecommit:: URLs (the console's GRC URLs) to `!" in doctor
    assert (f"note  AWS's git-remote-codecommit is installed too ({aws}), but git runs ccweb for codecommit:: "
            "URLs while url.ccweb::.insteadOf is set; to have AWS's run instead (with AWS keys), run "
            "`ccweb-helper setup --no-grc`.") in doctor

    removed = helper(env, "setup", "--url", sandbox.api_url, "--no-grc")
    assert removed.returncode == 0, removed.stderr
    assert "left to AWS's git-remote-codecommit" in removed.stdout
    assert grc_config(env) == {}
    assert "Already configured" in helper(env, "setup", "--url", sandbox.api_url, "--no-grc").stdout
    refused = git(env, "ls-remote", "codecommit::us-east-1://demo")
    assert refused.returncode != 0 and "no AWS credentials" in refused.stderr
    assert (home / "aws-ran").read_text().split() == ["codecommit::us-east-1://demo", "us-east-1://demo"]
    assert (f"note  git runs AWS's git-remote-codecommit ({aws}) for codecommit:: URLs (the console's GRC URLs), "
            "which needs AWS keys; to have ccweb serve them, run `ccweb-helper setup` (without --no-grc).") \
        in helper(env, "doctor").stdout

    assert helper(env, "setup", "--url", sandbox.api_url).returncode == 0  # and back
    assert git(env, "ls-remote", "codecommit::us-east-1://demo").returncode == 0
    assert len((home / "aws-ran").read_text().splitlines()) == 1


@pytest.mark.parametrize(("change", "line"), [
    (["--unset-all", "alias.remote-ccweb"],
     "FAIL  git rewrites codecommit:: URLs to ccweb:: but has no alias.remote-ccweb to run for them"),
    (["alias.remote-ccweb", "!/nowhere/ccweb-helper grc"],
     "FAIL  git would run `!/nowhere/ccweb-helper grc` (alias.remote-ccweb) for codecommit:: URLs but "
     "`/nowhere/ccweb-helper` cannot be found"),
    (["--unset-all", "protocol.ccweb.allow"],
     "warn  protocol.ccweb.allow is not `always`, so a submodule whose .gitmodules holds a codecommit:: URL fails"),
    (["--unset-all", "url.ccweb::codecommit://.insteadof"],
     "warn  git does not hand codecommit://… URLs to ccweb as it does the other GRC form (codecommit://example "
     "becomes codecommit://example)"),
    (["--remove-section", "url.ccweb::"],
     "note  codecommit:: URLs (the console's GRC URLs) are not set up"),
], ids=["no-alias", "alias-not-found", "no-protocol", "one-form", "none"])
def test_doctor_explains_what_is_missing(sandbox: Sandbox, home: Path, change: list[str], line: str) -> None:
    env = environment(home, sandbox)
    assert helper(env, "setup", "--url", sandbox.api_url).returncode == 0
    if change[0] == "--remove-section":
        for section in (change[1], "url.ccweb::codecommit://"):
            assert git(env, "config", "--global", "--remove-section", section).returncode == 0
    else:
        assert git(env, "config", "--global", *change).returncode == 0
    doctor = helper(env, "doctor")
    assert line in doctor.stdout, doctor.stdout
    assert doctor.returncode == (0 if line.startswith("note") else 1)
