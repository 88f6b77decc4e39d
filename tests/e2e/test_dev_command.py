"""The README's first command as a new user meets it: run `ccweb dev`, paste what it prints, stop it."""

from __future__ import annotations

import os
import re
import shlex
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from ccweb.sandbox.dev import helper_command
from ccweb_helper import __version__
from support import version_in_a_tree_of_its_own

ROOT = Path(__file__).resolve().parents[2]


def test_ccweb_dev_prints_commands_that_clone_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "CCWEB_", "AWS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "service"), str(ROOT / "helper")])
    dev = subprocess.Popen(
        [sys.executable, "-m", "ccweb", "dev", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        banner: list[str] = []
        assert dev.stdout is not None
        for line in dev.stdout:
            banner.append(line)
            if line.strip().startswith("git clone"):
                break
        pasted = [line.strip() for line in banner if line.strip().startswith(("export ", "git clone"))]
        assert len(pasted) == 3, "".join(banner)
        _the_web_page_line_names_the_api_and_its_secrets_are_private("".join(banner))
        home = tmp_path / "home"
        home.mkdir()
        user_env = {**env, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
        result = subprocess.run(["bash", "-c", " && ".join(pasted)], cwd=tmp_path, env=user_env,
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "ccweb-demo" / "README.md").exists()
        # The clone keeps the helper configuration, so the suggested push works too.
        push = subprocess.run(
            ["bash", "-c", "git commit -q --allow-empty -m hello && git push -q"],
            cwd=tmp_path / "ccweb-demo", env={**user_env, **_exports(pasted), "GIT_AUTHOR_NAME": "T",
                                              "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "T",
                                              "GIT_COMMITTER_EMAIL": "t@example.com"},
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert push.returncode == 0, push.stderr
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            _, stderr = dev.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            dev.kill()
            raise
    assert dev.returncode == 0
    assert "stopped" in stderr
    assert "Traceback" not in stderr


def _the_web_page_line_names_the_api_and_its_secrets_are_private(banner: str) -> None:
    api = re.search(r"^  API +(http://\S+) ", banner, re.MULTILINE)
    page = re.search(r"^  web page +(http://\S+) +sign in as alice, bob or mallory$", banner, re.MULTILINE)
    tokens = re.search(r"^  token files +(/\S+)/<user>\.jwt ", banner, re.MULTILINE)
    assert api and page and tokens, banner
    assert page[1] == api[1] + "/"
    answer = httpx.get(page[1])
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html"), answer.text
    web = Path(tokens[1]).parent / "web"
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (web, *web.iterdir())}
    assert modes == {"web": 0o700, "client-secret": 0o600, "session-secret": 0o600}


def _exports(lines: list[str]) -> dict[str, str]:
    pairs = [line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export ")]
    return {key: value.strip("'") for key, value in pairs}


def test_the_pasted_helper_command_runs_this_helper_in_a_work_tree_with_a_ccweb_helper_of_its_own(
        tmp_path: Path) -> None:
    """With no ccweb-helper script beside Python nor on PATH, the command ``ccweb dev`` prints is the one
    ``ccweb-helper setup`` writes, never ``python -m ccweb_helper``: git runs it in the work tree, and ``-m``
    would import the ``ccweb_helper/`` committed there."""
    python = tmp_path / "bin" / "python3"  # a Python with no ccweb-helper beside it
    python.parent.mkdir()
    python.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
    python.chmod(0o755)
    command = helper_command(str(python), lambda _: None)
    assert str(python) in command and " -m " not in command
    assert version_in_a_tree_of_its_own(command, tmp_path) == (0, f"ccweb-helper {__version__}\n", False)
