"""The console's GRC URLs through ccweb, with the real git: ``ccweb-helper setup`` in a throwaway HOME, then
``git clone codecommit::us-east-1://demo`` and its siblings against the sandbox's signature-checking git server
(which the sandbox's service names as the us-east-1 endpoint), push, fetch, submodules, what a mistake shows,
git config's own region and endpoint, the line ``ccweb dev`` prints to paste, and a superproject whose work tree
holds programs of its own."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccweb.config import parse_config
from ccweb.sandbox.dev import REGION, Sandbox, helper_command, sandbox_policy
from support import home_env


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox whose service says nothing about GRC URLs: no region, no endpoint."""
    box = Sandbox(port=0, workdir=tmp_path_factory.mktemp("plain"))
    policy = sandbox_policy(box.issuer_url, box.git_host)
    del policy["grc"]
    box.config = parse_config(policy)
    with box.running() as running:
        yield running


def person(home: Path, sandbox: Sandbox, **extra: str) -> dict[str, str]:
    """alice's environment after ``ccweb-helper setup`` for ``sandbox``; any prompt is recorded in ``prompted``."""
    askpass = home / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho prompted >> {shlex.quote(str(home))}/prompted\nexit 1\n")
    askpass.chmod(0o700)
    env = home_env(home, CCWEB_URL=sandbox.api_url, CCWEB_TOKEN_FILE=str(sandbox.token_file("alice")),
                   GIT_ASKPASS=str(askpass), GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="test@example.com",
                   GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="test@example.com")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):  # the machine's own must not decide
        env.pop(name, None)
    env.update(extra)
    done = subprocess.run([sys.executable, "-m", "ccweb_helper", "setup", "--url", sandbox.api_url], env=env,
                          cwd=home, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return env


def git(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], env=env, cwd=cwd or env["HOME"], capture_output=True, text=True,
                          timeout=120, check=False)


def sentences(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ccweb:")]


@pytest.mark.parametrize("url", [f"codecommit::{REGION}://demo", f"codecommit::{REGION}://my-profile@demo",
                                 "codecommit://demo", "codecommit://my-profile@demo"],
                         ids=["region", "region-profile", "no-region", "no-region-profile"])
def test_clone_push_and_fetch(sandbox: Sandbox, home: Path, url: str) -> None:
    env = person(home, sandbox)
    clone = home / "demo"
    cloned = git(env, "clone", url, str(clone))
    assert cloned.returncode == 0, cloned.stderr
    assert (clone / "README.md").exists()
    assert git(env, "config", "remote.origin.url", cwd=clone).stdout.strip() == url  # the remote keeps the URL
    assert git(env, "commit", "-q", "--allow-empty", "-m", f"through {url}", cwd=clone).returncode == 0
    pushed = git(env, "push", "-q", "origin", "HEAD", cwd=clone)
    assert pushed.returncode == 0, pushed.stderr
    head = git(env, "rev-parse", "HEAD", cwd=clone).stdout.strip()
    fetched = git(env, "fetch", "-q", "origin", cwd=clone)
    assert fetched.returncode == 0, fetched.stderr
    listed = git(env, "ls-remote", url, "HEAD", cwd=clone)  # a URL on the command line, no remote name
    assert listed.stdout.split() == [head, "HEAD"], listed.stderr
    on_server = subprocess.run(["git", "--git-dir", str(sandbox.repos / "demo.git"), "rev-parse", "HEAD"],
                               capture_output=True, text=True, check=True).stdout.strip()
    assert on_server == head
    assert not (home / "prompted").exists()


def test_a_submodule_with_a_grc_url(sandbox: Sandbox, home: Path) -> None:
    env = person(home, sandbox)
    superproject = home / "super"
    assert git(env, "init", "-q", str(superproject)).returncode == 0
    added = git(env, "submodule", "add", f"codecommit::{REGION}://demo", "lib", cwd=superproject)
    assert added.returncode == 0, added.stderr
    assert f"url = codecommit::{REGION}://demo" in (superproject / ".gitmodules").read_text()
    assert git(env, "commit", "-q", "-m", "a submodule", cwd=superproject).returncode == 0

    recursive = git(env, "clone", "--recurse-submodules", str(superproject), str(home / "recursive"))
    assert recursive.returncode == 0, recursive.stderr
    assert (home / "recursive" / "lib" / "README.md").exists()

    assert git(env, "clone", "-q", str(superproject), str(home / "later")).returncode == 0
    updated = git(env, "submodule", "update", "--init", cwd=home / "later")
    assert updated.returncode == 0, updated.stderr
    assert (home / "later" / "lib" / "README.md").exists()

    # What protocol.ccweb.allow=always is for: git clones submodules with GIT_PROTOCOL_FROM_USER=0.
    refused = git(env, "-c", "protocol.ccweb.allow=user", "clone", "--recurse-submodules", str(superproject),
                  str(home / "refused"))
    assert refused.returncode != 0 and "transport 'ccweb' not allowed" in refused.stderr
    assert not (home / "prompted").exists()


@pytest.mark.parametrize(("url", "sentence"), [
    ("codecommit::nowhere://demo", "ccweb: 'nowhere' in codecommit::nowhere://demo is not an AWS region"),
    (f"codecommit::{REGION}://no~such", f"ccweb: codecommit::{REGION}://no~such does not end in a CodeCommit "
     "repository name"),
    ("codecommit://profile@", "ccweb: codecommit://profile@ does not end in a CodeCommit repository name"),
], ids=["unknown-region", "bad-repository-name", "no-repository"])
def test_a_bad_url_is_one_sentence(sandbox: Sandbox, home: Path, url: str, sentence: str) -> None:
    env = person(home, sandbox)
    cloned = git(env, "clone", url, str(home / "nothing"))
    assert cloned.returncode != 0
    found = sentences(cloned.stderr)
    assert len(found) == 1 and found[0].startswith(sentence), cloned.stderr
    assert [line for line in cloned.stderr.splitlines() if not line.startswith("Cloning into")] == found  # no more
    assert "Traceback" not in cloned.stderr and not (home / "prompted").exists()


def test_region_and_endpoint_from_git_config_when_the_service_names_none(plain: Sandbox, home: Path) -> None:
    env = person(home, plain)
    no_region = git(env, "clone", "codecommit://demo", str(home / "a"))
    assert no_region.returncode != 0
    assert sentences(no_region.stderr) == [
        "ccweb: codecommit://demo names no region and none is configured: write codecommit::<region>://demo, or "
        "run `git config --global ccweb.region <region>` (or set AWS_REGION)."]
    # Without an endpoint of its own the region's GRC URLs would go to git-codecommit.us-east-1.amazonaws.com:
    # only git config can send them to this git server.
    for key, value in (("ccweb.region", REGION), (f"ccweb.{REGION}.endpoint", plain.git_host)):
        assert git(env, "config", "--global", key, value).returncode == 0
    cloned = git(env, "clone", "codecommit://demo", str(home / "b"))
    assert cloned.returncode == 0, cloned.stderr
    assert (home / "b" / "README.md").exists()
    git(env, "config", "--global", "--unset", "ccweb.region")
    from_aws = git({**env, "AWS_REGION": REGION}, "clone", "codecommit://p@demo", str(home / "c"))
    assert from_aws.returncode == 0, from_aws.stderr
    assert not (home / "prompted").exists()


def test_the_line_ccweb_dev_prints_clones_the_grc_url(sandbox: Sandbox, home: Path, tmp_path: Path) -> None:
    """Pasted as a person would, with no setup before it: only the exports ``ccweb dev`` prints."""
    banner = sandbox.banner().splitlines()
    line = next(text.strip() for text in banner if text.strip().startswith("git clone") and "codecommit::" in text)
    assert line == sandbox.grc_clone(helper_command())
    env = home_env(home, CCWEB_URL=sandbox.api_url, CCWEB_TOKEN_FILE=str(sandbox.token_file("alice")))
    pasted = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert pasted.returncode == 0, pasted.stderr
    assert (tmp_path / "ccweb-demo-grc" / "README.md").exists()
    fetched = git(env, "fetch", cwd=tmp_path / "ccweb-demo-grc")  # the clone keeps what it was given
    assert fetched.returncode == 0, fetched.stderr
    assert not (home / ".gitconfig").exists()


# --- a superproject someone else wrote ---------------------------------------------------------------------


def plant(tree: Path, relative: str, marker: Path, *, python: bool = False) -> None:
    path = tree / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if python:
        path.write_text(f"import pathlib, sys\npathlib.Path({str(marker)!r}).touch()\nsys.exit(1)\n")
    else:
        path.write_text(f"#!/bin/sh\ntouch '{marker}'\nexit 1\n")
        path.chmod(0o755)


def test_a_hostile_superproject_runs_nothing_of_its_own(sandbox: Sandbox, home: Path) -> None:
    """git runs ``grc`` and the credential helper at the top of the fresh work tree: what it holds must not run.
    Here an executable ``git`` (and a ``git.exe``) and a ``ccweb_helper`` package (which ``python -m ccweb_helper``,
    once ``setup``'s command when ccweb-helper is not on PATH, would import from there); git's PATH has ``.`` in
    front. On Linux git puts its own directory first on the PATH of what it runs, so a bare ``git`` would not have
    found the planted one even before ``ccweb_helper.programs``; on Windows CreateProcess would have (that part
    only Windows can show; tests/helper/test_programs.py checks each place git is run with a relative PATH entry
    instead). The package is found on every system."""
    env = person(home, sandbox)
    superproject = home / "super"
    assert git(env, "init", "-q", str(superproject)).returncode == 0
    added = git(env, "submodule", "add", f"codecommit::{REGION}://demo", "lib", cwd=superproject)
    assert added.returncode == 0, added.stderr
    ran = home / "ran"
    ran.mkdir()
    plant(superproject, "git", ran / "git")
    plant(superproject, "git.exe", ran / "git.exe")
    plant(superproject, "ccweb_helper/__init__.py", ran / "package", python=True)
    plant(superproject, "ccweb_helper/__main__.py", ran / "package", python=True)
    assert git(env, "add", "git", "git.exe", "ccweb_helper", cwd=superproject).returncode == 0
    assert git(env, "commit", "-q", "-m", "tools of our own", cwd=superproject).returncode == 0

    victim = {**env, "PATH": os.pathsep.join([".", env["PATH"], ""])}
    cloned = git(victim, "clone", "--recurse-submodules", str(superproject), str(home / "victim"))
    assert cloned.returncode == 0, cloned.stderr
    assert (home / "victim" / "lib" / "README.md").exists()
    assert (home / "victim" / "git").exists() and (home / "victim" / "ccweb_helper" / "__main__.py").exists()
    fetched = git(victim, "-C", str(home / "victim" / "lib"), "fetch", "-q", "origin")  # grc and get, in the tree
    assert fetched.returncode == 0, fetched.stderr
    assert sorted(path.name for path in ran.iterdir()) == []
    assert not (home / "prompted").exists()
