"""Which file to run for ``git`` (or another program the helper starts): never one in the current directory.

git runs the helper in the work tree of the repository at hand: the credential helper, and ``grc`` for a
``codecommit::`` URL, during ``git clone --recurse-submodules`` too, in a superproject someone else wrote. A
bare ``git`` there is a risk: Windows' CreateProcess looks in the current directory before PATH (so does
``shutil.which`` on Windows before Python 3.12), so a ``git.exe`` committed at the top of that tree would run;
a relative or empty PATH entry does the same on every system.

So the helper runs programs by an absolute path: for git, the ``git`` in ``GIT_EXEC_PATH`` when git set it
(git 2.39 exports it to aliases and credential helpers, and prepends it to their PATH: it is the directory of
the very git that started the helper); else the first absolute PATH entry that holds it. Empty, ``.`` and
relative PATH entries are skipped; on Windows an entry must name a drive (``C:\\…``) or a share
(``\\\\server\\share\\…``), since ``\\dir`` is on the current directory's drive. Nothing found: FileNotFoundError.

``candidates`` is pure (the Windows rules can be checked anywhere); ``find`` and ``git`` look at the disk.
"""

from __future__ import annotations

import ntpath
import os
import posixpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

WINDOWS = os.name == "nt"


def _absolute(entry: str, windows: bool) -> bool:
    if windows:
        return bool(ntpath.splitdrive(entry)[0]) and ntpath.isabs(entry)
    return posixpath.isabs(entry)


def candidates(name: str, env: Mapping[str, str], *, windows: bool = WINDOWS, git_exec_path: bool = False) -> list[str]:
    """The files that may be ``name``, in the order they are tried: ``GIT_EXEC_PATH``'s first when
    ``git_exec_path``, then each absolute entry of ``env``'s PATH; ``name.exe`` on Windows. Pure."""
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"a program name, not a path: {name!r}")
    paths = ntpath if windows else posixpath
    file_name = name + ".exe" if windows and not name.lower().endswith(".exe") else name
    directories: list[str] = []
    if git_exec_path:
        directories.append(env.get("GIT_EXEC_PATH", ""))
    directories += env.get("PATH", "").split(";" if windows else ":")
    found: list[str] = []
    for directory in directories:
        if directory and _absolute(directory, windows):
            path = paths.join(directory, file_name)
            if path not in found:
                found.append(path)
    return found


def _is_program(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find(name: str, env: Mapping[str, str] | None = None, *, git_exec_path: bool = False,
         is_program: Callable[[str], bool] = _is_program) -> str:
    """The absolute path of the program ``name`` (``candidates``, the first that is an executable file);
    FileNotFoundError when there is none. ``env``: the environment the program will run in (default: ours)."""
    for path in candidates(name, os.environ if env is None else env, git_exec_path=git_exec_path):
        if is_program(path):
            return path
    raise FileNotFoundError(2, f"{name} is not in any absolute directory of PATH", name)


def git(env: Mapping[str, str] | None = None) -> str:
    """The git to run: the one that started us (``GIT_EXEC_PATH``), else the first on PATH (absolute entries)."""
    return find("git", env, git_exec_path=True)
