"""The login cache: one JSON file of identity-provider tokens in the user's cache directory.

``CCWEB_CACHE_DIR`` overrides the place; otherwise ``$XDG_CACHE_HOME/ccweb`` (else ``~/.cache/ccweb``) on
Linux and the BSDs, ``~/Library/Caches/ccweb`` on macOS and ``%LOCALAPPDATA%\\ccweb`` on Windows. The
directory is 0700 and the file 0600; the file is replaced atomically (a temporary file in the same directory,
then ``os.replace``, retried for a moment on Windows while another process has the file open), so a reader
never sees half of it. Writers and logins hold an exclusive lock on a separate lock file (``flock`` on
POSIX, ``msvcrt.locking`` on Windows), so parallel git processes share one login: the second waits for the
first, for a bounded time, then reads what it wrote. The cache holds only identity-provider
tokens, never a CodeCommit password.

Only a cache no one else controls is used. On POSIX the directory and each file in it (``login.json``,
``discovery.json``, the lock) must belong to this user (or root) and be writable by no one else, and neither
the directory nor the files are reached through a symbolic link: the directory is opened with ``O_NOFOLLOW``
and checked, and each file is then opened relative to it (``dir_fd``, with ``O_NOFOLLOW``), so the directory
checked is the one used even if its path is changed in between. Another user's directory, one that group or
others may write, a file another user planted, a symbolic link (the directory itself or a file in it): the
cache is not used — not read, not written, not locked — and the helper says so once per process on stderr
(``notice``), then works on without it (a login is kept in memory only). Windows has no such modes; there the
checks are skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import time
from pathlib import Path

from ccweb_helper.client import parse_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import IO, Any

FILE_NAME = "login.json"
LOCK_NAME = "login.lock"
MAX_BYTES = 1 << 20
REPLACE_SECONDS = 1.0  # Windows: how long to retry replacing a file another process has open
POLL_SECONDS = 0.1
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # POSIX: a symbolic link in the file's place is refused (ELOOP)
DIRECTORY_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | NOFOLLOW
AT = os.name == "posix" and {os.open, os.stat, os.unlink, os.rename} <= os.supports_dir_fd
"""Whether files can be opened relative to an open directory (``dir_fd``): every POSIX system Python runs on.
Where not, the directory is checked by its path (``lstat``) and its files opened by theirs."""
READ_FLAGS = os.O_RDONLY | NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
LOCK_FLAGS = os.O_RDWR | os.O_CREAT | NOFOLLOW | getattr(os, "O_BINARY", 0)
ROOT = 0  # the other owner a cache may have: root can change anything of this user's anyway
_said: set[str] = set()  # what ``notice`` has said in this process


def untrusted(mode: int, owner: int, me: int) -> str | None:
    """Why a file or directory of ``mode`` owned by ``owner`` is not to be trusted by the user ``me``, as the
    end of a sentence ("is owned by …"); None when it is (pure)."""
    if owner not in (me, ROOT):
        return f"is owned by another user (uid {owner})"
    writers = [who for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit]
    if writers:
        return f"is writable by {' and '.join(writers)} (mode {stat.S_IMODE(mode):04o})"
    return None


def notice(text: str, stderr: IO[str] | None = None) -> None:
    """``ccweb: text`` on ``stderr`` (by default the process's), at most once per process."""
    if text in _said:
        return
    _said.add(text)
    stream = sys.stderr if stderr is None else stderr
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no stderr, or a closed one
        stream.write(f"ccweb: {text}\n")
        stream.flush()


def _shown(path: Path) -> str:
    return "".join(c if c.isprintable() else "?" for c in str(path))


def cache_dir(env: Mapping[str, str], platform: str = sys.platform, home: str | None = None) -> Path:
    """Where the login cache lives for this user and platform (pure: the environment is passed in)."""
    override = env.get("CCWEB_CACHE_DIR", "").strip()
    if override:
        return Path(override)
    base = Path(home if home is not None else os.path.expanduser("~"))
    if platform == "win32":
        local = env.get("LOCALAPPDATA", "").strip()
        return (Path(local) if local else base / "AppData" / "Local") / "ccweb"
    if platform == "darwin":
        return base / "Library" / "Caches" / "ccweb"
    xdg = env.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative path is invalid and ignored
        return Path(xdg) / "ccweb"
    return base / ".cache" / "ccweb"


class Cache:
    """The cache file and its lock in ``directory``; ``read`` never fails, ``write`` and ``lock`` may (OSError).

    ``name`` is the file: the login cache by default; ``discovery.json`` holds what services said about
    themselves (``discovery``), with the same modes and atomic replacement. ``platform`` (``sys.platform``)
    decides whether a refused replacement is retried for a moment (on Windows). ``stderr`` is where a cache
    that is not used is explained (``notice``); ``refused`` says why, once found.
    """

    def __init__(self, directory: Path, name: str = FILE_NAME, *, platform: str = sys.platform,
                 stderr: IO[str] | None = None) -> None:
        self.directory = directory
        self.path = directory / name
        self.lock_path = directory / LOCK_NAME
        self.replace_seconds = REPLACE_SECONDS if platform == "win32" else 0.0
        self.stderr = stderr
        self.refused: str | None = None

    def _refuse(self, text: str) -> None:
        self.refused = text
        notice(text, self.stderr)

    def _trusted_directory(self, info: os.stat_result) -> bool:
        """Whether the directory ``info`` describes (not followed if a link) is the user's alone; else said once."""
        where = _shown(self.directory)
        if stat.S_ISLNK(info.st_mode):
            self._refuse(f"not using the cache directory {where}: it is a symbolic link, which another user could "
                         "point elsewhere; remove it, or set CCWEB_CACHE_DIR to a directory of your own. Working "
                         "without a cache: a login is not kept.")
            return False
        why = untrusted(info.st_mode, info.st_uid, os.geteuid())
        if why is None:
            return True
        fix = (f"run `chmod 700 {where}`" if why.startswith("is writable") else "chown it to yourself")
        self._refuse(f"not using the cache directory {where}: it {why}; {fix}, or set CCWEB_CACHE_DIR to a "
                     "directory of your own. Working without a cache: a login is not kept.")
        return False

    def _open_directory(self) -> int | None:
        """The cache directory, opened without following a symbolic link and checked to be the user's alone:
        its descriptor, through which each file in it is then opened (``dir_fd``), so the directory checked is
        the one used even if its path changes meanwhile. None on Windows (paths, no checks), when there is no
        directory (yet), or when it is not to be used (``refused`` then says why, once)."""
        if self.refused is not None or os.name != "posix":
            return None
        try:
            fd = os.open(self.directory, DIRECTORY_FLAGS) if AT else None
        except OSError:  # none yet, not a directory, or a symbolic link (O_NOFOLLOW)
            fd = None
        if fd is None:
            with contextlib.suppress(OSError):
                self._trusted_directory(os.lstat(self.directory))
            return None
        if self._trusted_directory(os.fstat(fd)):
            return fd
        os.close(fd)
        return None

    def _name(self, directory: int | None, path: Path) -> str:
        """How to name ``path`` to the system: its name in the open ``directory``, else the whole path."""
        return path.name if directory is not None else str(path)

    def _absent(self, directory: int | None) -> bool:
        """After ``_open_directory``: whether there is nothing to use (refused, or no directory to work in)."""
        return self.refused is not None or (AT and directory is None)

    def _trusted_file(self, fd: int, path: Path) -> bool:
        """Whether the file open as ``fd`` is one to use: a regular file no one else controls (else said once)."""
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return False
        why = untrusted(info.st_mode, info.st_uid, os.geteuid()) if os.name == "posix" else None
        if why is not None:
            self._refuse(f"not using the cache file {_shown(path)}: it {why}; remove it. Working without a cache.")
        return why is None

    def _symbolic_link(self, directory: int | None, path: Path) -> bool:
        """After an open refused: whether ``path`` is a symbolic link (then said once)."""
        try:
            info = os.stat(self._name(directory, path), dir_fd=directory, follow_symlinks=False)
        except OSError:
            return False
        if not stat.S_ISLNK(info.st_mode):
            return False
        self._refuse(f"not using the cache file {_shown(path)}: it is a symbolic link; remove it. Working without "
                     "a cache.")
        return True

    def _ensure_directory(self) -> int | None:
        """``_open_directory``, made first (0700) where there is none; one of the user's own that others may
        read is made 0700."""
        if not os.path.islink(self.directory):  # a link is refused, not followed to make what it points to
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory = self._open_directory()
        if directory is not None:
            info = os.fstat(directory)
            if info.st_uid == os.geteuid() and info.st_mode & 0o777 != 0o700:
                os.fchmod(directory, 0o700)
        return directory

    def read(self) -> dict[str, Any]:
        """The cached document, or ``{}`` when there is none, it cannot be read as one, or it is not to be used."""
        directory = self._open_directory()
        try:
            if self._absent(directory):
                return {}
            try:
                fd = os.open(self._name(directory, self.path), READ_FLAGS, dir_fd=directory)
            except OSError:
                self._symbolic_link(directory, self.path)
                return {}
        finally:
            _close(directory)
        try:
            if not self._trusted_file(fd, self.path):
                return {}
            with os.fdopen(fd, "rb", closefd=False) as handle:  # a regular file, checked before
                raw = handle.read(MAX_BYTES + 1)
        except OSError:
            return {}
        finally:
            os.close(fd)
        if len(raw) > MAX_BYTES:
            return {}
        try:
            data = parse_json(raw)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def write(self, data: Mapping[str, Any]) -> None:
        """Replace the file atomically with ``data``; mode 0600 from the first byte. Nothing is written to a
        cache that is not used (``refused``)."""
        directory = self._ensure_directory() if self.refused is None else None
        try:
            if self.refused is not None:
                return
            fd, temporary = _temporary(directory, self.directory, "." + self.path.stem + "-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(data, handle, separators=(",", ":"), sort_keys=True)
                    handle.flush()
                    os.fsync(handle.fileno())
                replace(temporary, self._name(directory, self.path), self.replace_seconds, directory)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary, dir_fd=directory)
                raise
        finally:
            _close(directory)

    def remove(self) -> bool:
        """Delete the file; whether there was one (nothing is removed from a cache that is not used)."""
        directory = self._open_directory()
        try:
            if self._absent(directory):
                return False
            os.unlink(self._name(directory, self.path), dir_fd=directory)
        except FileNotFoundError:
            return False
        finally:
            _close(directory)
        return True

    @contextlib.contextmanager
    def lock(self, on_wait: Callable[[], None] | None = None, timeout: float | None = None) -> Iterator[None]:
        """Hold the exclusive lock; ``on_wait`` is called once if another process holds it first.

        TimeoutError when another process holds it for more than ``timeout`` seconds (None: wait for ever). A
        cache that is not used (``refused``, or found so now) is not locked: there is nothing to share.
        """
        directory = self._ensure_directory() if self.refused is None else None
        try:
            fd = self._open_lock(directory) if self.refused is None else None
        finally:
            _close(directory)
        if fd is None:
            yield
            return
        try:
            if not _try_lock(fd):
                if on_wait is not None:
                    on_wait()
                deadline = None if timeout is None else time.monotonic() + timeout
                while not _try_lock(fd):
                    if deadline is not None and time.monotonic() >= deadline:
                        raise TimeoutError(f"the lock {self.lock_path} is held by another process")
                    time.sleep(POLL_SECONDS)
            try:
                yield
            finally:
                _unlock(fd)
        finally:
            os.close(fd)

    def _open_lock(self, directory: int | None) -> int | None:
        """The lock file, open; None when it is not one to use (said once)."""
        try:
            fd = os.open(self._name(directory, self.lock_path), LOCK_FLAGS, 0o600, dir_fd=directory)
        except OSError:
            if self._symbolic_link(directory, self.lock_path):
                return None
            raise
        try:
            trusted = self._trusted_file(fd, self.lock_path)
        except BaseException:
            os.close(fd)
            raise
        if not trusted:
            os.close(fd)
            if self.refused is None:
                self._refuse(f"not using the lock {_shown(self.lock_path)}: it is not a regular file; remove it. "
                             "Working without a cache.")
            return None
        return fd


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def _temporary(directory_fd: int | None, directory: Path, prefix: str) -> tuple[int, str]:
    """A new file of mode 0600 next to the target, as ``tempfile.mkstemp`` makes one (without importing
    ``tempfile``, which costs more than the write): its descriptor and its name in ``directory_fd`` (else its
    path in ``directory``)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = f"{prefix}{os.urandom(6).hex()}.tmp"
        path = name if directory_fd is not None else os.path.join(directory, name)
        try:
            return os.open(path, flags, 0o600, dir_fd=directory_fd), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


def replace(source: str, target: str | Path, retry_seconds: float, directory_fd: int | None = None) -> None:
    """``os.replace`` (both names in ``directory_fd`` when given), retried for ``retry_seconds`` on
    PermissionError: on Windows a file another process has open (a parallel helper reading it, an anti-virus
    scanner) cannot be replaced for that moment."""
    deadline = time.monotonic() + retry_seconds
    while True:
        try:
            os.replace(source, target, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
        except PermissionError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
        else:
            return


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
