"""docs/rollout.md: the macOS install script run as written (with ``sh``, against a real service on loopback: the
pinned download installed root-owned 0755, a changed one refused, the ``sh`` helper only when allowed and there is
no Python), and every ``ccweb-helper`` command and ``setup`` option the page names is one the helpers have, the
Windows ``--helper`` value as git's ``sh`` would split it."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ccweb.shell_dist import helper_script
from ccweb_helper.cli import COMMANDS
from ccweb_helper.setup import _parser as setup_parser
from support import serve_downloads

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "rollout.md").read_text(encoding="utf-8")
EXAMPLE = "https://ccweb.example.com"
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", PAGE, flags=re.MULTILINE | re.DOTALL)
(MAC_SCRIPT,) = [code for lang, code in BLOCKS if lang == "sh" and "for every user of this Mac" in code]
PYTHONS = ("/usr/local/bin/python3", "/opt/homebrew/bin/python3")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_downloads() as served:
        yield served


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_mac_script(url: str, work: Path, *, helper: str, sh_helper: str, allow_sh: bool = False,
                   path: str | None = None) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The page's script with this service, these pinned values and a directory of the test's for /usr/local/bin
    (``--proto '=https'`` dropped: the service is plain http on loopback, as the page says to do for a test)."""
    prefix = work / "bin"
    values = {"CCWEB_URL": url, "HELPER_SHA256": helper, "SH_HELPER_SHA256": sh_helper, "PREFIX": str(prefix),
              "ALLOW_SH_HELPER": "yes" if allow_sh else "no"}
    script = MAC_SCRIPT.replace("--proto '=https' ", "")
    for name, value in values.items():
        script, count = re.subn(rf"^{name}=\S*", f"{name}={shlex.quote(value)}", script, flags=re.MULTILINE)
        assert count == 1, name
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    result = subprocess.run(["sh", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    return result, prefix / "ccweb-helper"


@pytest.mark.skipif(os.geteuid() != 0, reason="the script installs owned by root (install -o 0 -g 0)")
def test_the_mac_script_installs_the_pinned_zipapp_root_owned_and_then_finds_it_current(url: str,
                                                                                      tmp_path: Path) -> None:
    served = httpx.get(url + "/helper/ccweb-helper", timeout=60).content
    result, installed = run_mac_script(url, tmp_path, helper=sha256(served), sh_helper="0" * 64)
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed.read_bytes() == served
    status = installed.stat()
    assert (status.st_mode & 0o777, status.st_uid, status.st_gid) == (0o755, 0, 0)
    again, _ = run_mac_script(url, tmp_path, helper=sha256(served), sh_helper="0" * 64)
    assert again.returncode == 0 and "already installed and current" in again.stdout


def test_the_mac_script_installs_nothing_when_the_download_is_not_the_pinned_one(url: str, tmp_path: Path) -> None:
    result, installed = run_mac_script(url, tmp_path, helper=sha256(b"the release rolled out"), sh_helper="0" * 64)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr
    assert not installed.exists()


def no_python_path(tmp_path: Path) -> str:
    """A PATH whose ``xcode-select -p`` fails, as on a Mac without the Command Line Tools."""
    if any(os.path.exists(p) for p in PYTHONS):
        pytest.skip(f"this machine has a Python where the script looks on a Mac without the tools: {PYTHONS}")
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "xcode-select").write_text("#!/bin/sh\nexit 2\n")
    (fake / "xcode-select").chmod(0o755)
    return f"{fake}:{os.environ['PATH']}"


def test_without_python_the_mac_script_stops_unless_the_sh_helper_is_allowed(url: str, tmp_path: Path) -> None:
    script = helper_script()
    result, installed = run_mac_script(url, tmp_path, helper="0" * 64, sh_helper=sha256(script),
                                       path=no_python_path(tmp_path))
    assert result.returncode == 1 and "no Python 3.9 or later" in result.stderr
    assert not installed.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the script installs owned by root (install -o 0 -g 0)")
def test_without_python_the_mac_script_installs_the_pinned_sh_helper_when_allowed(url: str, tmp_path: Path) -> None:
    script = helper_script()
    result, installed = run_mac_script(url, tmp_path, helper="0" * 64, sh_helper=sha256(script), allow_sh=True,
                                       path=no_python_path(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed.read_bytes() == script
    assert installed.stat().st_mode & 0o777 == 0o755


# -- only commands and options that exist ------------------------------------------------------------------------

SH_SETUP_OPTIONS = {"--url", "--helper", "--no-grc", "--global"}
"""What the sh helper's ``setup`` reads (service/ccweb/shell/git.sh); tests/shell run it."""


def code_lines() -> list[str]:
    """Every line of the page's code blocks and inline code, comments (``#`` to the end of a line) left out."""
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", PAGE, flags=re.MULTILINE | re.DOTALL))
    lines = [line for _, code in BLOCKS for line in code.splitlines()] + inline
    return [re.sub(r"(^|\s)#.*$", "", line) for line in lines]


def test_every_ccweb_helper_command_on_the_page_exists() -> None:
    used = {m for line in code_lines() for m in re.findall(r"ccweb-helper(?:\.sh)?[\"']? ([a-z]+)\b(?!=)", line)}
    assert "setup" in used
    assert used <= set(COMMANDS) | {"get", "store", "erase"}, used


def test_every_setup_option_on_the_page_exists() -> None:
    python_options = set(setup_parser()._option_string_actions)
    checked = 0
    for line in code_lines():
        if not re.search(r"\bsetup --", line):
            continue
        options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line.split("setup", 1)[1]))
        allowed = SH_SETUP_OPTIONS if "ccweb-helper.sh" in line else python_options
        assert options <= allowed, f"{line}: {options - allowed} is no option of setup"
        checked += 1
    assert checked >= 6, checked


def test_the_windows_helper_value_is_one_command_for_gits_sh() -> None:
    """git runs ``helper = !<value>`` as ``sh -c '<value> get'``: the path with its space stays one word."""
    (line,) = [line for lang, code in BLOCKS if lang == "powershell" for line in code.splitlines()
               if " setup " in line]
    value = re.findall(r'--helper "([^"]+)"', line)[0]
    words = subprocess.run(["sh", "-c", f'for w in {value} get; do printf "%s\\n" "$w"; done'], capture_output=True,
                           text=True, timeout=30, check=True).stdout.splitlines()
    assert words == ["py", "-3", "C:/Program Files/ccweb/ccweb-helper", "get"]
    assert f"helper = !{value}" in PAGE
