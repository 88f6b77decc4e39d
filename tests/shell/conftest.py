"""Fixtures for the POSIX sh helper's tests: the script exactly as the service serves it
(``ccweb.shell_dist.helper_script()``), under each shell in turn (``shells``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ccweb.shell_dist import helper_script
from shell.shells import MISSING, SHELLS, ShellHelper, tool_dirs


@pytest.fixture(scope="session")
def served_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The script exactly as ``GET /helper/ccweb-helper.sh`` serves it, as a job saves it (mode 0755)."""
    path = tmp_path_factory.mktemp("served") / "ccweb-helper"
    path.write_bytes(helper_script())
    path.chmod(0o755)
    return path


@pytest.fixture(params=sorted(SHELLS))
def shell_helper(request: pytest.FixtureRequest, served_script: Path, tmp_path: Path) -> ShellHelper:
    """The served script under each shell in turn (a shell that is not installed is skipped, saying why)."""
    shell = str(request.param)
    program = shutil.which(SHELLS[shell][0])
    if program is None:
        pytest.skip(MISSING.get(shell, f"{shell} is not installed"))
    root = tmp_path / f"tools-{shell}"
    root.mkdir()
    _, bin_ = tool_dirs(root, shell)
    return ShellHelper(shell, [program, *SHELLS[shell][1:], str(served_script)], bin_, root / "argv.log",
                       root / "curl-env.log")
