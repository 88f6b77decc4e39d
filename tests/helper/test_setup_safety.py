"""What ``ccweb-helper setup`` writes, against a work tree someone else wrote and against a person's own alias.

- The command it writes when ccweb-helper is not on PATH runs this helper's own files from anywhere: git runs it
  in the repository's work tree, and ``python -m ccweb_helper`` would import a ``ccweb_helper`` found there.
- ``--no-grc`` takes out the ``alias.remote-ccweb`` it wrote, whatever ``--helper`` it was given, and says so
  when it leaves one that is not its own.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ccweb_helper import __version__, gitconfig
from ccweb_helper.setup import grc_removals, helper_command
from support import HELPER_SOURCE, home_env, version_in_a_tree_of_its_own

MAIN = str(HELPER_SOURCE / "ccweb_helper" / "__main__.py")


def test_the_command_setup_writes_runs_this_helper_in_a_work_tree_with_a_ccweb_helper_of_its_own(
        tmp_path: Path) -> None:
    command = helper_command(MAIN, sys.executable, lambda _: None, str(HELPER_SOURCE))
    assert command.startswith("!PYTHONPATH=")
    assert version_in_a_tree_of_its_own(command, tmp_path) == (0, f"ccweb-helper {__version__}\n", False)


def test_no_module_of_the_helper_has_a_standard_library_modules_name() -> None:
    """Run as a script, the package's own directory is first on sys.path: none of its modules may hide one of
    the standard library's."""
    names = {path.stem for path in (HELPER_SOURCE / "ccweb_helper").glob("*.py")}
    assert len(names) > 20
    assert names & set(sys.stdlib_module_names) == set()


def entries(*pairs: tuple[str, str | None]) -> list[gitconfig.Entry]:
    return [gitconfig.Entry("global", "file:/home/me/.gitconfig", name, value) for name, value in pairs]


ALIAS = "alias.remote-ccweb"
HELPER = "!/opt/tools/h"


@pytest.mark.parametrize(("have", "removed", "left"), [
    ([(ALIAS, "!/opt/tools/h grc")], [["--unset-all", ALIAS]], []),
    ([(ALIAS, "!ccweb-helper grc")], [["--unset-all", ALIAS]], []),
    ([(ALIAS, "!PYTHONPATH=/src /usr/bin/python3 -m ccweb_helper grc")], [["--unset-all", ALIAS]], []),
    ([(ALIAS, "!my-own-helper grc")], [], ["!my-own-helper grc"]),
    ([(ALIAS, "!ccweb-helper grc --verbose")], [], ["!ccweb-helper grc --verbose"]),
    ([(ALIAS, "!/opt/tools/h grc"), (ALIAS, "!mine")], [["--unset-all", ALIAS, r"^!/opt/tools/h grc$"]], ["!mine"]),
    ([], [], []),
], ids=["this-helper", "an-earlier-setup", "an-earlier-module-form", "someone-elses", "more-arguments", "both",
        "none"])
def test_grc_removals_of_the_alias(have: list[tuple[str, str | None]], removed: list[list[str]],
                                   left: list[str]) -> None:
    assert grc_removals(entries(*have), HELPER) == (removed, left)


def setup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, MAIN, "setup", "--url", "http://127.0.0.1:9", *args], env=env,
                          cwd=env["HOME"], capture_output=True, text=True, timeout=120, check=False)


def aliases(env: dict[str, str]) -> list[str]:
    return subprocess.run(["git", "config", "--global", "--get-all", ALIAS], env=env, capture_output=True, text=True,
                          timeout=60, check=False).stdout.splitlines()


def test_no_grc_takes_out_the_alias_written_for_a_helper_of_another_name(tmp_path: Path) -> None:
    env = home_env(tmp_path, CCWEB_TIMEOUT="2")
    assert setup(env, f"--helper={HELPER}").returncode == 0
    assert aliases(env) == [f"{HELPER} grc"]
    done = setup(env, f"--helper={HELPER}", "--no-grc")
    assert done.returncode == 0, done.stderr
    assert aliases(env) == []
    assert "note:" not in done.stderr
    listed = subprocess.run(["git", "ls-remote", "--get-url", "codecommit::us-east-1://x"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert listed.stdout.strip() == "codecommit::us-east-1://x"  # no longer rewritten to ccweb::


def test_no_grc_says_which_alias_it_leaves(tmp_path: Path) -> None:
    env = home_env(tmp_path, CCWEB_TIMEOUT="2")
    assert setup(env, f"--helper={HELPER}").returncode == 0
    subprocess.run(["git", "config", "--global", ALIAS, "!my-own-helper grc"], env=env, check=True, timeout=60)
    dry = setup(env, f"--helper={HELPER}", "--no-grc", "--dry-run")
    done = setup(env, f"--helper={HELPER}", "--no-grc")
    assert done.returncode == 0, done.stderr
    assert aliases(env) == ["!my-own-helper grc"]
    unset = shlex.join(["git", "config", "--global", "--unset-all", ALIAS])
    note = (f"ccweb-helper setup: note: alias.remote-ccweb = '!my-own-helper grc' is left in your global git config: "
            f"it is not the `{HELPER} grc` setup writes; if it is not yours, run `{unset}`.\n")
    assert note in dry.stderr and note in done.stderr
