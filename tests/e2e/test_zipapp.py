"""The helper as one downloaded file: ``curl …/helper/ccweb-helper`` on a bare image, then run it.

The download is run by a plain interpreter with no site-packages (``-I -S``), so it can rely on nothing but
the standard library, and it answers git for the sandbox's repository."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from ccweb.sandbox.dev import Sandbox
from support import clean_env


@pytest.fixture(scope="module")
def downloaded(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    response = httpx.get(f"{sandbox.api_url}/helper/ccweb-helper")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    path = tmp_path_factory.mktemp("bin") / "ccweb-helper"
    path.write_bytes(response.content)
    path.chmod(0o755)
    return path


def bare(path: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """Run the download as a bare image would: only the standard library, no ccweb installed."""
    clean = clean_env("PYTHON")
    clean.update(env)
    return subprocess.run([sys.executable, "-I", "-S", str(path), *args], input=stdin, env=clean,
                          capture_output=True, text=True, timeout=60, check=False, cwd=path.parent)


def test_the_download_is_a_zipapp_of_the_helper_alone(downloaded: Path) -> None:
    assert downloaded.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(downloaded) as archive:
        names = archive.namelist()
    assert "__main__.py" in names
    assert {name.split("/")[0] for name in names} == {"__main__.py", "ccweb_helper"}
    assert "ccweb_helper/cli.py" in names and "ccweb_helper/hosts.py" in names


def test_the_download_runs_on_a_bare_interpreter(downloaded: Path) -> None:
    result = bare(downloaded, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ccweb-helper ")


def test_the_download_answers_git(downloaded: Path, sandbox: Sandbox, tmp_path: Path) -> None:
    stdin = "protocol=https\nhost=git-codecommit.eu-west-1.amazonaws.com\npath=v1/repos/demo\n\n"
    result = bare(downloaded, "get", stdin=stdin, HOME=str(tmp_path), CCWEB_URL=sandbox.api_url,
                  CCWEB_TOKEN_FILE=str(sandbox.token_file("alice")))
    assert result.returncode == 0, result.stderr
    answer = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert set(answer) == {"username", "password", "password_expiry_utc"}


def test_the_download_is_cacheable_and_the_same_every_time(sandbox: Sandbox, downloaded: Path) -> None:
    first = httpx.get(f"{sandbox.api_url}/helper/ccweb-helper")
    assert first.content == downloaded.read_bytes()
    etag = first.headers["etag"]
    again = httpx.get(f"{sandbox.api_url}/helper/ccweb-helper", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
