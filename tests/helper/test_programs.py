"""The helper never runs a program found in the current directory: git runs it in the work tree of the repository
at hand, which during ``git clone --recurse-submodules`` is someone else's.

The rules (``programs.candidates``) are pure and checked for both systems here; on Linux a relative PATH entry
(``.``, empty, ``bin``) is what would make the current directory searched, so each place that runs git is
checked with one in front and a ``git`` planted in the current directory. What only Windows can show — that
CreateProcess would have found a ``git.exe`` in the current directory by itself, and that Git for Windows'
``GIT_EXEC_PATH`` holds a ``git.exe`` — is not run here.
"""

from __future__ import annotations

import ast
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ccweb_helper import ci, gitconfig, grc, programs, sources
from ccweb_helper.client import HelperError
from support import HELPER_SOURCE, home_env

REAL_GIT = os.path.realpath(shutil.which("git") or "/usr/bin/git")
GIT_DIR = os.path.dirname(REAL_GIT)


@pytest.mark.parametrize(("env", "windows", "expected"), [
    ({"PATH": "/usr/local/bin:/usr/bin"}, False, ["/usr/local/bin/git", "/usr/bin/git"]),
    ({"PATH": ":.:bin:./bin:../x:/usr/bin:"}, False, ["/usr/bin/git"]),
    ({"PATH": "/usr/bin:/usr/bin"}, False, ["/usr/bin/git"]),
    ({"PATH": ""}, False, []),
    ({}, False, []),
    ({"GIT_EXEC_PATH": "/usr/lib/git-core", "PATH": "/usr/lib/git-core:/usr/bin"}, False,
     ["/usr/lib/git-core/git", "/usr/bin/git"]),
    ({"GIT_EXEC_PATH": ".", "PATH": ".:/usr/bin"}, False, ["/usr/bin/git"]),
    ({"GIT_EXEC_PATH": "", "PATH": "/usr/bin"}, False, ["/usr/bin/git"]),
    ({"PATH": r"C:\Program Files\Git\cmd;C:\Windows\system32"}, True,
     [r"C:\Program Files\Git\cmd\git.exe", r"C:\Windows\system32\git.exe"]),
    ({"PATH": r";.;tools;.\bin;\tools;C:tools;C:\Git\cmd;"}, True, [r"C:\Git\cmd\git.exe"]),
    ({"PATH": r"\\server\share\git"}, True, [r"\\server\share\git\git.exe"]),
    ({"GIT_EXEC_PATH": "C:/Program Files/Git/mingw64/libexec/git-core", "PATH": r"C:\Git\cmd"}, True,
     [r"C:/Program Files/Git/mingw64/libexec/git-core\git.exe", r"C:\Git\cmd\git.exe"]),
    ({"GIT_EXEC_PATH": "libexec", "PATH": r"C:\Git\cmd"}, True, [r"C:\Git\cmd\git.exe"]),
    ({"PATH": "/usr/bin"}, True, []),  # a POSIX path names no drive on Windows
], ids=["posix", "posix-relative-skipped", "posix-once", "posix-empty", "posix-none", "exec-path-first",
        "exec-path-relative", "exec-path-empty", "windows", "windows-relative-skipped", "windows-share",
        "windows-exec-path", "windows-exec-path-relative", "windows-no-drive"])
def test_candidates_are_absolute_directories_only(env: dict[str, str], windows: bool, expected: list[str]) -> None:
    assert programs.candidates("git", env, windows=windows, git_exec_path=True) == expected


def test_gits_exec_path_is_only_for_git() -> None:
    env = {"GIT_EXEC_PATH": "/usr/lib/git-core", "PATH": "/opt/bin"}
    assert programs.candidates("buildkite-agent", env, windows=False) == ["/opt/bin/buildkite-agent"]
    with pytest.raises(ValueError, match="a program name"):
        programs.candidates("./git", env, windows=False)


def plant(directory: Path, name: str = "git") -> Path:
    """An executable ``name`` in ``directory`` that leaves ``<name>-ran`` behind it if it is ever run."""
    marker = directory / f"{name}-ran"
    script = directory / name
    script.write_text(f"#!/bin/sh\ntouch '{marker}'\nexit 0\n")
    script.chmod(0o755)
    return marker


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current directory is a work tree with a ``git`` of its own at its top (and a ``git.exe``)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    plant(tree)
    (tree / "git.exe").write_text("MZ")
    monkeypatch.chdir(tree)
    for name in ("GIT_EXEC_PATH", "GIT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tree


@pytest.mark.parametrize("path", [".", "", "tree", "./"], ids=["dot", "empty", "relative", "dot-slash"])
def test_find_never_returns_the_current_directorys_git(hostile: Path, path: str) -> None:
    if path == "tree":
        os.chdir(hostile.parent)
    with pytest.raises(FileNotFoundError):
        programs.git({"PATH": path})
    assert programs.git({"PATH": f"{path}:{GIT_DIR}"}) == os.path.join(GIT_DIR, "git")


def test_git_exec_path_comes_first_and_must_be_a_program(tmp_path: Path) -> None:
    exec_path = tmp_path / "git-core"
    exec_path.mkdir()
    (exec_path / "git").write_text("not executable")
    env = {"GIT_EXEC_PATH": str(exec_path), "PATH": GIT_DIR}
    assert programs.git(env) == os.path.join(GIT_DIR, "git")
    (exec_path / "git").chmod(0o755)
    assert programs.git(env) == str(exec_path / "git")


def test_git_exports_its_exec_path_to_aliases_and_credential_helpers(tmp_path: Path) -> None:
    """What ``programs.git`` relies on, asked of the real git: both see GIT_EXEC_PATH, and it holds git."""
    env = home_env(tmp_path)
    alias = subprocess.run(["git", "-c", "alias.x=!printenv GIT_EXEC_PATH", "x"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    record = tmp_path / "helper-env"
    helper = f"!f() {{ printenv GIT_EXEC_PATH > '{record}'; echo quit=1; }}; f"
    subprocess.run(["git", "-c", f"credential.helper={helper}", "credential", "fill"], env=env, cwd=tmp_path,
                   input="protocol=https\nhost=example.com\n\n", capture_output=True, text=True, timeout=60,
                   check=False)  # the helper says quit=1: git gives up
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True).stdout.strip()
    assert alias == record.read_text().strip() == exec_path
    assert programs.git({"GIT_EXEC_PATH": alias, "PATH": ""}) == os.path.join(exec_path, "git")


# --- every place the helper runs git -------------------------------------------------------------------------

RELATIVE_FIRST = f".::tree:{GIT_DIR}"  # the current directory three ways, then the real git


def test_git_config_runs_the_real_git(hostile: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", RELATIVE_FIRST)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    (tmp_path / ".gitconfig").write_text("[ccweb]\n\turl = http://127.0.0.1:9\n\tregion = eu-west-1\n")
    assert sources.service_url({}, "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/x") == (
        "http://127.0.0.1:9", "git config ccweb.url")  # sources._git_config, what `get` runs
    assert [e.value for e in gitconfig.read(r"^ccweb\.url$")] == ["http://127.0.0.1:9"]  # setup, doctor
    assert gitconfig.version() is not None
    assert grc.read_config(dict(os.environ))["ccweb.region"] == "eu-west-1"
    assert not (hostile / "git-ran").exists()


def test_with_only_relative_path_entries_git_is_not_found_rather_than_taken_from_here(
        hostile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", ".::tree")
    assert sources._git_config("--get", "ccweb.url") is None
    with pytest.raises(FileNotFoundError, match="git is not in any absolute directory of PATH"):
        gitconfig.run_git(["--version"])
    with pytest.raises(HelperError, match="cannot read git's configuration"):
        grc.read_config(dict(os.environ))
    assert not (hostile / "git-ran").exists()


def test_grc_becomes_the_real_git(hostile: Path) -> None:
    env = home_env(hostile.parent, PATH=RELATIVE_FIRST, GIT_CONFIG_COUNT="1",
                   GIT_CONFIG_KEY_0="ccweb.us-east-1.endpoint", GIT_CONFIG_VALUE_0="127.0.0.1:9")
    became: list[list[str]] = []

    def become(command: list[str]) -> int:
        became.append(command)
        return 0

    assert grc.run(["origin", "us-east-1://demo"], env, io.StringIO(), become) == 0
    assert became == [[os.path.join(GIT_DIR, "git"), "remote-http", "origin", "http://127.0.0.1:9/v1/repos/demo"]]
    err = io.StringIO()
    assert grc.run(["origin", "us-east-1://demo"], {**env, "PATH": ".::tree"}, err, become) == 128
    assert err.getvalue().startswith("ccweb: cannot read git's configuration")
    assert not (hostile / "git-ran").exists()


def test_the_helper_processes_run_the_real_git(hostile: Path) -> None:
    """``grc`` and ``get`` as git starts them (by a script path: no ``-m``), a relative PATH entry first."""
    main = str(HELPER_SOURCE / "ccweb_helper" / "__main__.py")
    env = home_env(hostile.parent, PATH=RELATIVE_FIRST, GIT_CONFIG_COUNT="2",
                   GIT_CONFIG_KEY_0="ccweb.us-east-1.endpoint", GIT_CONFIG_VALUE_0="127.0.0.1:9",
                   GIT_CONFIG_KEY_1="ccweb.url", GIT_CONFIG_VALUE_1="http://127.0.0.1:9")
    became = subprocess.run([sys.executable, main, "grc", "origin", "us-east-1://demo"], env=env, cwd=hostile,
                            input="capabilities\n\n", capture_output=True, text=True, timeout=60, check=False)
    assert became.returncode == 0, became.stderr
    assert "fetch" in became.stdout.split()  # git remote-http's answer to git
    got = subprocess.run([sys.executable, main, "get"], env={**env, "CCWEB_TOKEN": "a.b.c"}, cwd=hostile,
                         input="protocol=https\nhost=git-codecommit.us-east-1.amazonaws.com\npath=v1/repos/x\n\n",
                         capture_output=True, text=True, timeout=60, check=False)
    assert got.stdout == "quit=1\n"
    assert "http://127.0.0.1:9" in got.stderr  # the service git config names, read by the real git
    assert not (hostile / "git-ran").exists()


def test_the_buildkite_agent_is_not_taken_from_here(hostile: Path, tmp_path: Path) -> None:
    marker = plant(hostile, "buildkite-agent")
    assert ci._buildkite_agent({"PATH": ".::tree"}) is None
    agent = tmp_path / "bin"
    agent.mkdir()
    plant(agent, "buildkite-agent")
    assert ci._buildkite_agent({"PATH": f".:{agent}"}) == str(agent / "buildkite-agent")
    assert not marker.exists()


def test_no_module_starts_a_program_by_a_bare_name() -> None:
    """A guard for the next call site: ``subprocess.*`` and ``os.exec*`` are never handed a literal program name
    (the program comes from ``programs``)."""
    starters = {"run", "call", "check_call", "check_output", "Popen", "execv", "execvp", "execvpe", "execl",
                "execlp", "spawnv", "spawnvp"}
    found = []
    for source in sorted((HELPER_SOURCE / "ccweb_helper").glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in starters and node.args):
                continue
            first = node.args[0]
            if isinstance(first, ast.List) and first.elts:
                first = first.elts[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append(f"{source.name}:{node.lineno}: {first.value}")
    assert found == []
