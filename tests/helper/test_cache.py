"""The login cache: where it lives on each platform, its modes, atomic replacement and the shared lock."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ccweb_helper import cache
from ccweb_helper.cache import Cache, cache_dir

HOME = "/home/u"


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {}, "/home/u/.cache/ccweb"),
        ("linux", {"XDG_CACHE_HOME": "/xdg"}, "/xdg/ccweb"),
        ("linux", {"XDG_CACHE_HOME": "relative/dir"}, "/home/u/.cache/ccweb"),
        ("freebsd14", {"XDG_CACHE_HOME": "/xdg"}, "/xdg/ccweb"),
        ("darwin", {"XDG_CACHE_HOME": "/xdg"}, "/home/u/Library/Caches/ccweb"),
        ("win32", {"LOCALAPPDATA": "/appdata/local"}, "/appdata/local/ccweb"),
        ("win32", {}, "/home/u/AppData/Local/ccweb"),
        ("linux", {"CCWEB_CACHE_DIR": "/elsewhere", "XDG_CACHE_HOME": "/xdg"}, "/elsewhere"),
        ("darwin", {"CCWEB_CACHE_DIR": "/elsewhere"}, "/elsewhere"),
        ("win32", {"CCWEB_CACHE_DIR": "/elsewhere", "LOCALAPPDATA": "/appdata/local"}, "/elsewhere"),
    ],
    ids=["linux-default", "linux-xdg", "linux-relative-xdg-ignored", "bsd-xdg", "macos", "windows",
         "windows-no-localappdata", "override-linux", "override-macos", "override-windows"],
)
def test_cache_directory_follows_each_platforms_convention(platform: str, env: dict[str, str], expected: str) -> None:
    assert cache_dir(env, platform=platform, home=HOME) == Path(expected)


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_directory_is_0700_and_file_0600_even_under_a_lax_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        store = Cache(tmp_path / "deep" / "ccweb")
        store.write({"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.read() == {"a": 1}


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_an_existing_open_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "ccweb"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    Cache(directory).write({})
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_write_replaces_atomically_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = Cache(tmp_path)
    store.write({"v": "old"})
    inode = store.path.stat().st_ino
    store.write({"v": "new"})
    assert store.read() == {"v": "new"}
    assert store.path.stat().st_ino != inode, "a new file renamed over the old one, not rewritten in place"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["login.json"]

    def failing_replace(src: str, dst: str, **in_directory: int | None) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        store.write({"v": "lost"})
    assert store.read() == {"v": "new"}, "a failed write leaves the old file whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["login.json"], "and removes its temporary file"


def test_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    store = Cache(tmp_path)
    big = {"blob": "x" * 200_000}
    store.write(big)
    stop, reading = threading.Event(), threading.Event()
    seen: list[object] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(store.read() == big)
            reading.set()

    thread = threading.Thread(target=reader)
    thread.start()
    assert reading.wait(30)  # the reader is at work before the writes begin, however busy the machine
    for _ in range(30):
        store.write(big)
    stop.set()
    thread.join()
    assert seen and all(seen)


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]", b"{" * 10, b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                                     b"\xff\xfe{}"],
                         ids=["empty", "garbage", "list", "broken", "nested-deeply", "not-utf8"])
def test_unreadable_content_reads_as_empty(tmp_path: Path, content: bytes) -> None:
    store = Cache(tmp_path)
    store.path.write_bytes(content)
    assert store.read() == {}


def test_missing_file_reads_as_empty_and_remove_says_whether_there_was_one(tmp_path: Path) -> None:
    store = Cache(tmp_path / "nothing")
    assert store.read() == {}
    assert store.remove() is False
    store.write({"x": 1})
    assert store.remove() is True
    assert not store.path.exists()


def _hold_lock(directory: str, ready: Any, release: Any) -> None:
    with Cache(Path(directory)).lock():
        ready.set()
        release.wait(30)
        Cache(Path(directory)).write({"writer": "first"})


def test_lock_makes_a_second_process_wait_then_read_what_the_first_wrote(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        waited: list[bool] = []

        def on_wait() -> None:  # only now may the first process write and let go: this one is waiting
            waited.append(True)
            release.set()

        with Cache(tmp_path).lock(on_wait=on_wait):
            assert Cache(tmp_path).read() == {"writer": "first"}
    finally:
        release.set()
        holder.join(30)
    assert waited == [True], "on_wait is called once when another process holds the lock"


def test_lock_is_free_again_after_use_and_on_wait_is_not_called(tmp_path: Path) -> None:
    store = Cache(tmp_path)
    calls: list[bool] = []
    with store.lock(on_wait=lambda: calls.append(True)):
        pass
    with store.lock(on_wait=lambda: calls.append(True)):
        json.dumps({})
    assert calls == []
    if sys.platform != "win32":
        assert stat.S_IMODE(store.lock_path.stat().st_mode) == 0o600


def test_the_lock_wait_has_a_time_limit(tmp_path: Path) -> None:
    waited: list[bool] = []
    with Cache(tmp_path).lock():  # held through another open file, as another process would
        started = time.monotonic()
        with pytest.raises(TimeoutError), Cache(tmp_path).lock(on_wait=lambda: waited.append(True), timeout=0.3):
            pytest.fail("the lock was held elsewhere")
        assert 0.3 <= time.monotonic() - started < 30  # the limit, not for ever (30: a bound, not a measurement)
    assert waited == [True]
    with Cache(tmp_path).lock(timeout=0.3):
        pass


class Replace:
    """``os.replace`` that fails with PermissionError (another process has the file open) ``failures`` times."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.real = os.replace

    def __call__(self, source: str, target: Path, **in_directory: int | None) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise PermissionError(13, "The process cannot access the file because it is being used")
        self.real(source, target, **in_directory)


def test_a_replace_refused_for_a_moment_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Replace(failures=3)
    monkeypatch.setattr(os, "replace", fake)
    (tmp_path / "new").write_text("new")
    cache.replace(str(tmp_path / "new"), tmp_path / "login.json", retry_seconds=1.0)
    assert (tmp_path / "login.json").read_text() == "new" and fake.calls == 4


def test_a_replace_refused_for_longer_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Replace(failures=1_000_000)
    monkeypatch.setattr(os, "replace", fake)
    started = time.monotonic()
    with pytest.raises(PermissionError):
        cache.replace(str(tmp_path / "new"), tmp_path / "login.json", retry_seconds=0.3)
    assert 0.3 <= time.monotonic() - started < 30 and fake.calls > 1  # retried for the time given, then not
    fake.calls = 0
    with pytest.raises(PermissionError):
        cache.replace(str(tmp_path / "new"), tmp_path / "login.json", retry_seconds=0.0)
    assert fake.calls == 1, "no retry where a refusal is no passing matter (POSIX)"


def test_write_retries_the_replace_on_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Replace(failures=2)
    monkeypatch.setattr(os, "replace", fake)
    Cache(tmp_path, platform="win32").write({"v": 1})
    assert Cache(tmp_path).read() == {"v": 1} and fake.calls == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["login.json"]


# A cache no one else controls ------------------------------------------------------------------------------

POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX owners and modes")
ME = 1000


@pytest.mark.parametrize(("mode", "owner", "why"), [
    (0o700, ME, None),
    (0o755, ME, None),
    (0o600, ME, None),
    (0o644, 0, None),
    (0o700, 65534, "is owned by another user (uid 65534)"),
    (0o770, ME, "is writable by group (mode 0770)"),
    (0o702, ME, "is writable by others (mode 0702)"),
    (0o1777, ME, "is writable by group and others (mode 1777)"),
    (0o666, 65534, "is owned by another user (uid 65534)"),
], ids=["mine", "mine-readable", "my-file", "root's", "another-user's", "group-writable", "world-writable",
        "sticky-world-writable", "another-user's-writable"])
def test_only_what_this_user_or_root_owns_and_no_one_else_may_write_is_trusted(
    mode: int, owner: int, why: str | None,
) -> None:
    assert cache.untrusted(mode, owner, ME) == why


def nobody() -> tuple[int, int]:
    """The uid and gid of ``nobody``; the test is skipped unless it may give files away (root)."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    import pwd

    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


class Said(io.StringIO):
    """The stderr a Cache explains itself on."""

    def lines(self) -> list[str]:
        return self.getvalue().splitlines()


def planted(directory: Path, document: dict[str, Any]) -> None:
    directory.mkdir(mode=0o700, exist_ok=True)
    (directory / "login.json").write_text(json.dumps(document))


def contents(directory: Path) -> dict[str, bytes]:
    """The regular files of ``directory`` but the lock (which a usable lock creates, empty)."""
    return {p.name: p.read_bytes() for p in directory.iterdir()
            if p.is_file() and not p.is_symlink() and p.name != "login.lock"}


def assert_not_used(directory: Path, said: Said, sentence: str) -> None:
    """A Cache in ``directory`` reads nothing and writes nothing, and says ``sentence`` once."""
    before = contents(directory)
    for _ in range(2):  # two Caches of one process, as get's discovery and login are
        store = Cache(directory, stderr=said)
        with store.lock():  # as a login does: lock, read, write
            assert store.read() == {}
            store.write({"version": 1, "logins": {"written": {}}})
        assert store.refused is not None and store.remove() is False
        assert store.read() == {}
    assert contents(directory) == before, "nothing was written, created or removed"
    assert len(said.lines()) == 1, said.lines()
    assert said.lines()[0].startswith("ccweb: not using the cache ") and sentence in said.lines()[0]


@POSIX
def test_a_directory_of_another_user_is_not_used(tmp_path: Path) -> None:
    uid, gid = nobody()
    directory = tmp_path / "ccweb"
    planted(directory, {"version": 1, "logins": {"k": {"id_token": "a.b.c"}}})
    for path in (directory, directory / "login.json"):
        os.chown(path, uid, gid)
    said = Said()
    assert_not_used(directory, said, f"{directory}: it is owned by another user (uid {uid}); chown it to yourself")
    assert "CCWEB_CACHE_DIR" in said.getvalue() and not (directory / "login.lock").exists()


@POSIX
@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o1777], ids=["group", "others", "everyone", "sticky"])
def test_a_directory_others_may_write_is_not_used(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "ccweb"
    planted(directory, {"version": 1, "logins": {}})
    directory.chmod(mode)
    assert_not_used(directory, Said(), f"run `chmod 700 {directory}`")
    assert stat.S_IMODE(directory.stat().st_mode) == mode, "left as it was for its owner to decide"


@POSIX
@pytest.mark.parametrize("name", ["login.json", "login.lock"])
def test_a_file_of_another_user_in_the_directory_is_not_used(tmp_path: Path, name: str) -> None:
    uid, gid = nobody()
    planted(tmp_path, {"version": 1, "logins": {}})
    (tmp_path / name).touch()
    os.chown(tmp_path / name, uid, gid)
    assert_not_used(tmp_path, Said(), f"{tmp_path / name}: it is owned by another user (uid {uid}); remove it")


@POSIX
@pytest.mark.parametrize("name", ["login.json", "login.lock"])
def test_a_file_others_may_write_is_not_used(tmp_path: Path, name: str) -> None:
    planted(tmp_path, {"version": 1, "logins": {}})
    (tmp_path / name).touch()
    (tmp_path / name).chmod(0o666)
    assert_not_used(tmp_path, Said(), f"{tmp_path / name}: it is writable by group and others (mode 0666)")


@POSIX
def test_a_symbolic_link_in_the_lock_files_place_is_not_followed(tmp_path: Path) -> None:
    directory, elsewhere = tmp_path / "ccweb", tmp_path / "elsewhere"
    directory.mkdir(mode=0o700)
    elsewhere.mkdir()
    (directory / "login.lock").symlink_to(elsewhere / "created-through-the-link")
    said = Said()
    assert_not_used(directory, said, f"{directory / 'login.lock'}: it is a symbolic link; remove it")
    assert list(elsewhere.iterdir()) == [], "no file was created where the link points"


@POSIX
def test_a_symbolic_link_in_the_cache_files_place_is_not_read(tmp_path: Path) -> None:
    directory = tmp_path / "ccweb"
    directory.mkdir(mode=0o700)
    target = tmp_path / "target.json"
    target.write_text(json.dumps({"version": 1, "logins": {"planted": {}}}))
    target.chmod(0o600)
    (directory / "login.json").symlink_to(target)
    assert_not_used(directory, Said(), f"{directory / 'login.json'}: it is a symbolic link; remove it")
    assert json.loads(target.read_text()) == {"version": 1, "logins": {"planted": {}}}


@POSIX
@pytest.mark.parametrize("owner", ["another user", "me"])
def test_a_cache_directory_that_is_a_symbolic_link_is_not_followed(tmp_path: Path, owner: str) -> None:
    """The link may be another user's, pointing at a directory of this user's that holds a file they chose
    (another user's ``/tmp/shared/ccweb`` → a victim's own directory): neither the link nor what it points to is
    read, written or locked."""
    target = tmp_path / "mine"
    planted(target, {"version": 1, "logins": {"planted": {"id_token": "a.b.c"}}})
    link = tmp_path / "ccweb"
    link.symlink_to(target, target_is_directory=True)
    if owner == "another user":
        uid, gid = nobody()
        os.lchown(link, uid, gid)
    said = Said()
    before = contents(target)
    for _ in range(2):
        store = Cache(link, stderr=said)
        with store.lock():
            assert store.read() == {}
            store.write({"version": 1, "logins": {"written": {}}})
        assert store.refused is not None and store.remove() is False
    assert contents(target) == before and not (target / "login.lock").exists()
    assert said.lines() == [f"ccweb: not using the cache directory {link}: it is a symbolic link, which another "
                            "user could point elsewhere; remove it, or set CCWEB_CACHE_DIR to a directory of your "
                            "own. Working without a cache: a login is not kept."]


@POSIX
def test_a_directory_swapped_for_a_link_after_the_check_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The files are opened in the directory that was checked (``dir_fd``), not wherever its path leads a
    moment later: a directory renamed away and replaced by a link between the check and the open still reads
    its own file, and nothing is written where the link points."""
    directory, elsewhere = tmp_path / "ccweb", tmp_path / "elsewhere"
    planted(directory, {"version": 1, "logins": {"own": {}}})
    planted(elsewhere, {"version": 1, "logins": {"planted": {}}})
    store = Cache(directory)
    checked = store._open_directory

    def swapped() -> int | None:  # the check, then the swap an attacker would race to make
        fd = checked()
        directory.rename(tmp_path / "moved")
        directory.symlink_to(elsewhere, target_is_directory=True)
        return fd

    monkeypatch.setattr(store, "_open_directory", swapped)
    assert store.read() == {"version": 1, "logins": {"own": {}}}
    directory.unlink()
    (tmp_path / "moved").rename(directory)
    monkeypatch.setattr(store, "_ensure_directory", swapped)
    store.write({"version": 1, "logins": {"written": {}}})
    assert json.loads((elsewhere / "login.json").read_text()) == {"version": 1, "logins": {"planted": {}}}
    assert json.loads((tmp_path / "moved" / "login.json").read_text()) == {"version": 1, "logins": {"written": {}}}


@POSIX
def test_the_users_own_cache_says_nothing(tmp_path: Path) -> None:
    said = Said()
    store = Cache(tmp_path / "ccweb", stderr=said)
    assert store.read() == {}
    with store.lock():
        store.write({"a": 1})
    assert Cache(tmp_path / "ccweb", stderr=said).read() == {"a": 1}
    assert said.getvalue() == "" and store.refused is None
