"""What ``ccweb-helper setup`` writes, against a work tree someone else wrote.

- The command it writes when ccweb-helper is not on PATH runs this helper's own files from anywhere: git runs it
  in the repository's work tree, and ``python -m ccweb_helper`` would import a ``ccweb_helper`` found there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ccweb_helper import __version__
from ccweb_helper.setup import helper_command
from support import HELPER_SOURCE, home_env

MAIN = str(HELPER_SOURCE / "ccweb_helper" / "__main__.py")


def test_the_command_setup_writes_runs_this_helper_in_a_work_tree_with_a_ccweb_helper_of_its_own(
        tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "ccweb_helper").mkdir(parents=True)
    marker = tmp_path / "ran"
    for name in ("__init__.py", "__main__.py"):
        (tree / "ccweb_helper" / name).write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    command = helper_command(MAIN, sys.executable, lambda _: None, str(HELPER_SOURCE))
    assert command.startswith("!PYTHONPATH=")
    env = home_env(tmp_path)
    env.pop("PYTHONPATH")  # only what the command itself says
    ran = subprocess.run(["sh", "-c", f"{command[1:]} --version"], cwd=tree, env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert (ran.returncode, ran.stdout) == (0, f"ccweb-helper {__version__}\n"), ran.stderr
    assert not marker.exists()


def test_no_module_of_the_helper_has_a_standard_library_modules_name() -> None:
    """Run as a script, the package's own directory is first on sys.path: none of its modules may hide one of
    the standard library's."""
    names = {path.stem for path in (HELPER_SOURCE / "ccweb_helper").glob("*.py")}
    assert len(names) > 20
    assert names & set(sys.stdlib_module_names) == set()

