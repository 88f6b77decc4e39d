"""The login cache: one JSON file of identity-provider tokens in the user's cache directory.

``CCWEB_CACHE_DIR`` overrides the place; otherwise ``$XDG_CACHE_HOME/ccweb`` (else ``~/.cache/ccweb``) on
Linux and the BSDs, ``~/Library/Caches/ccweb`` on macOS and ``%LOCALAPPDATA%\\ccweb`` on Windows. The
directory is 0700 and the file 0600; the file is replaced atomically (a temporary file in the same directory,
then ``os.replace``, retried for a moment on Windows while another process has the file open), so a reader
never sees half of it. Writers and logins hold an exclusive lock on a separate lock file (``flock`` on
POSIX, ``msvcrt.locking`` on Windows), so parallel git processes share one login: the second waits for the
first, for a bounded time, then reads what it wrote. The cache holds only identity-provider
tokens, never a CodeCommit password.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any

FILE_NAME = "login.json"
LOCK_NAME = "login.lock"
MAX_BYTES = 1 << 20
REPLACE_SECONDS = 1.0  # Windows: how long to retry replacing a file another process has open
POLL_SECONDS = 0.1


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
    decides whether a refused replacement is retried for a moment (on Windows).
    """

    def __init__(self, directory: Path, name: str = FILE_NAME, *, platform: str = sys.platform) -> None:
        self.directory = directory
        self.path = directory / name
        self.lock_path = directory / LOCK_NAME
        self.replace_seconds = REPLACE_SECONDS if platform == "win32" else 0.0

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.name == "posix":
            info = self.directory.stat()
            if info.st_uid == os.geteuid() and info.st_mode & 0o777 != 0o700:
                os.chmod(self.directory, 0o700)

    def read(self) -> dict[str, Any]:
        """The cached document, or ``{}`` when there is none or it cannot be read as one."""
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read(MAX_BYTES + 1)
        except OSError:
            return {}
        if len(raw) > MAX_BYTES:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def write(self, data: Mapping[str, Any]) -> None:
        """Replace the file atomically with ``data``; mode 0600 from the first byte."""
        self._ensure_directory()
        fd, temporary = _temporary(self.directory, "." + self.path.stem + "-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, separators=(",", ":"), sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            replace(temporary, self.path, self.replace_seconds)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def remove(self) -> bool:
        """Delete the file; whether there was one."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        return True

    @contextlib.contextmanager
    def lock(self, on_wait: Callable[[], None] | None = None, timeout: float | None = None) -> Iterator[None]:
        """Hold the exclusive lock; ``on_wait`` is called once if another process holds it first.

        TimeoutError when another process holds it for more than ``timeout`` seconds (None: wait for ever).
        """
        self._ensure_directory()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
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


def _temporary(directory: Path, prefix: str) -> tuple[int, str]:
    """A new file of mode 0600 next to the target, as ``tempfile.mkstemp`` makes one (without importing
    ``tempfile``, which costs more than the write)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = os.path.join(directory, f"{prefix}{os.urandom(6).hex()}.tmp")
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


def replace(source: str, target: Path, retry_seconds: float) -> None:
    """``os.replace``, retried for ``retry_seconds`` on PermissionError: on Windows a file another process
    has open (a parallel helper reading it, an anti-virus scanner) cannot be replaced for that moment."""
    deadline = time.monotonic() + retry_seconds
    while True:
        try:
            os.replace(source, target)
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
