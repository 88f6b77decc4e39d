"""Reading git's configuration the way git's credential code reads it (``setup`` and ``doctor`` share this).

How git 2.39 picks the helpers for a URL (credential.c, ``credential_apply_config``; checked against
``git credential fill`` in tests/helper/test_doctor.py): it walks every configuration entry in the order
``git config --list`` shows them — system, global (``$XDG_CONFIG_HOME/git/config`` then ``~/.gitconfig``),
local, worktree, command line — and applies *every* ``credential.helper`` and ``credential.<url>.helper``
whose ``<url>`` matches, whatever its specificity (unlike ``http.<url>.*``, where the most specific URL
wins and ``git config --get-urlmatch`` tells the truth). An empty value empties the list gathered so far.

A ``<url>`` with a scheme matches when the scheme is equal, the host matches label by label (a ``*`` label
matches exactly one label of any content), the port is equal (default ports dropped), a user name in the
pattern equals the remote's, and the pattern's path is a prefix of the remote's path at a ``/`` boundary.
A ``<url>`` without a scheme (``credential.example.com.helper``) is a partial URL: each part it names —
host (with port, as typed), path, user name — must be equal.

Versions (from git's own release notes, Documentation/RelNotes in git/git):

- 2.26 (``CREDENTIAL_WILDCARDS``): the release notes announce wildcard patterns in the URLs of credential
  configuration — ``credential.<url>`` now goes through the ``http.<url>`` URL matching. Before it, each
  part of ``<url>`` was compared as a plain string, so a ``*`` matched only a literal ``*``: every
  ``credential.https://git-codecommit.*.amazonaws.com.*`` entry, its empty ``helper =`` included, is
  ignored and the user's other helpers answer. 2.26 also brought ``git config --show-scope``.
- 2.30 (``FIXED_VALUE``): ``git config --fixed-value`` (the 2.30 notes call it by its draft name
  ``--literal-value``); before it the value argument of ``--unset-all`` is always an extended regular
  expression (``ere_literal`` makes one that matches a single value exactly).

Pure matching in the middle; the only I/O is running git (``run_git``: ``read``, ``version``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from ccweb_helper import programs

DEFAULT_PORTS = {"http": 80, "https": 443}
CREDENTIAL_WILDCARDS = (2, 26)  # `*` in the host of credential.<url>
FIXED_VALUE = (2, 30)  # git config --fixed-value
TIMEOUT = 15.0  # seconds for one git command; a git config on a locked or slow file must not hang us


class Entry(NamedTuple):
    """One configuration entry as git lists it; ``value`` is None for a bare ``key`` line (no ``=``)."""

    scope: str  # system, global, local, worktree, command, or "" when git cannot tell (before 2.26)
    origin: str  # "file:/home/me/.gitconfig", "command line:", …
    name: str  # section and key lower case, subsection as written: "credential.https://x.helper"
    value: str | None

    @property
    def where(self) -> str:
        """For people: ``global ~/.gitconfig``, ``local .git/config``, ``command line``."""
        kind, _, path = self.origin.partition(":")
        if kind != "file" or not path:
            return self.scope or kind
        home = os.path.expanduser("~")
        if home not in ("", "~", "/") and path.startswith(home + os.sep):
            path = "~" + path[len(home):]
        return f"{self.scope} {path}" if self.scope else path

    @property
    def path(self) -> str | None:
        kind, _, path = self.origin.partition(":")
        return path if kind == "file" and path else None


class Target(NamedTuple):
    """What git matches configuration against: the parts of the remote URL it asks a credential for."""

    protocol: str
    host: str  # name[:port], lower case as git normalises it
    path: str  # without leading slash
    username: str

    @classmethod
    def from_url(cls, url: str) -> Target:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if ":" in host:
            host = f"[{host}]"
        try:
            port = parts.port
        except ValueError:
            port = None
        if port is not None:
            host = f"{host}:{port}"
        return cls(parts.scheme.lower(), host, parts.path.lstrip("/"), unquote(parts.username or ""))

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host}/{self.path}"


class Effective(NamedTuple):
    """The helpers git would run for a target, in order, and the ``useHttpPath`` entry that decides it."""

    helpers: tuple[Entry, ...]
    use_http_path: Entry | None


def run_git(args: Sequence[str], env: Mapping[str, str] | None = None,
            cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``git args`` (output captured, no stdin): the git ``programs.git`` finds, never one in the current
    directory. Raises OSError when git cannot be found or started and ``subprocess.TimeoutExpired`` when it has
    not finished within ``TIMEOUT`` seconds."""
    return subprocess.run(
        [programs.git(env), *args], capture_output=True, text=True, timeout=TIMEOUT, check=False,
        stdin=subprocess.DEVNULL, env=None if env is None else dict(env), cwd=cwd,
    )


def read(pattern: str = "", *, scope_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
         cwd: str | None = None) -> list[Entry]:
    """Every entry whose name matches the regular expression ``pattern`` (all when empty), in git's order.

    ``scope_args`` (``--global``, ``--file PATH``…) limits the reading to one file. Raises OSError when git
    cannot be run and ``GitConfigError`` when git refuses (``--local`` outside a repository, a broken file).
    """
    action = ["--get-regexp", pattern] if pattern else ["--list"]
    result = run_git(["config", *scope_args, "--show-scope", "--show-origin", "-z", *action], env, cwd)
    if result.returncode == 129:  # git before 2.26 has no --show-scope
        result = run_git(["config", *scope_args, "--show-origin", "-z", *action], env, cwd)
        return [Entry(*fields) for fields in _records(result, 2)]
    return [Entry(*fields) for fields in _records(result, 3)]


class GitConfigError(Exception):
    pass


def _records(result: subprocess.CompletedProcess[str], width: int) -> Iterable[tuple[str, str, str, str | None]]:
    if result.returncode == 1 and not result.stdout:
        return []  # nothing matched
    if result.returncode != 0:
        raise GitConfigError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "git config failed")
    fields = result.stdout.split("\0")
    records = []
    for start in range(0, len(fields) - width, width):
        chunk = fields[start:start + width]
        if width == 3:
            scope, origin, item = chunk
        else:
            scope, (origin, item) = "", chunk
        name, newline, value = item.partition("\n")
        records.append((scope, origin, name, value if newline else None))
    return records


def split_name(name: str) -> tuple[str, str | None, str]:
    """``credential.https://x.helper`` → ``("credential", "https://x", "helper")``; no subsection → None."""
    section, _, rest = name.partition(".")
    middle, dot, key = rest.rpartition(".")
    return section.lower(), (middle if dot else None), (key if dot else rest).lower()


def _host_matches(pattern: str, host: str, wildcards: bool) -> bool:
    if not wildcards:
        return pattern == host  # git before 2.26: a `*` is just a character, which no host name holds
    want, have = pattern.split("."), host.split(".")
    return len(want) == len(have) and all(w in ("*", h) for w, h in zip(want, have))


def _split_authority(authority: str, protocol: str) -> tuple[str, str, str]:
    """``user@host:port`` → (user, host lower case, port or "") with the protocol's default port dropped."""
    user, at, hostport = authority.rpartition("@")
    user = user.split(":", 1)[0] if at else ""
    if hostport.startswith("["):
        end = hostport.find("]")
        name, port = hostport[: end + 1], hostport[end + 2 :] if end >= 0 else ""
    else:
        name, _, port = hostport.partition(":")
    if port and port.isdigit() and int(port) == DEFAULT_PORTS.get(protocol):
        port = ""
    return unquote(user), name.lower(), port


def url_matches(pattern: str, target: Target, *, wildcards: bool = True) -> bool:
    """Whether git applies ``credential.<pattern>.*`` to ``target`` (pure; see the module docstring).

    ``wildcards`` is whether the git in question matches ``*`` in hosts (``has_wildcards``); without it
    only the host spelled out matches. (Older git's other differences — exact rather than prefix paths —
    are not modelled.)"""
    scheme, sep, rest = pattern.partition("://")
    if not sep:
        return _partial_matches(pattern, target)
    if scheme.lower() != target.protocol:
        return False
    authority, _, path = rest.partition("/")
    user, host, port = _split_authority(authority, target.protocol)
    _, have_host, have_port = _split_authority(target.host, target.protocol)
    if not _host_matches(host, have_host, wildcards) or port != have_port:
        return False
    if user and user != target.username:
        return False
    prefix = path.rstrip("/")
    if not prefix:
        return True
    have = target.path.strip("/")
    return have == prefix or have.startswith(prefix + "/")


def _partial_matches(pattern: str, target: Target) -> bool:
    stop = min((i for i in (pattern.find(c) for c in "/?#") if i >= 0), default=len(pattern))
    authority, path = pattern[:stop], pattern[stop:]
    user, at, host = authority.rpartition("@")
    if at and unquote(user.split(":", 1)[0]) != target.username:
        return False
    if host and unquote(host) != target.host:
        return False
    path = unquote(path.lstrip("/")).rstrip("/")
    return not path or path == target.path.strip("/")


def applies(entry: Entry, target: Target, key: str, *, wildcards: bool = True) -> bool:
    """Whether git's credential code applies ``entry`` as ``credential.<key>`` for ``target``."""
    section, url, name = split_name(entry.name)
    return section == "credential" and name == key and (url is None or url_matches(url, target, wildcards=wildcards))


def effective(entries: Iterable[Entry], target: Target, *, wildcards: bool = True) -> Effective:
    """The helper list git builds for ``target`` from ``entries`` (in git's order), and its useHttpPath.

    ``wildcards=False`` for a git older than 2.26 (``has_wildcards``), which ignores ``*`` host patterns."""
    helpers: list[Entry] = []
    use_http_path = None
    for entry in entries:
        if applies(entry, target, "helper", wildcards=wildcards):
            if entry.value is None:
                continue  # git refuses a bare `helper` line (no value) and keeps going
            if entry.value == "":
                helpers.clear()
            else:
                helpers.append(entry)
        elif applies(entry, target, "usehttppath", wildcards=wildcards):
            use_http_path = entry
    return Effective(tuple(helpers), use_http_path)


def as_bool(value: str | None) -> bool | None:
    """git's boolean: a bare key is true; None for a value git would not accept as a boolean."""
    if value is None:
        return True
    text = value.strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", ""):
        return False
    return None


def version(env: Mapping[str, str] | None = None) -> tuple[int, ...] | None:
    """``git --version`` as numbers (``(2, 39, 5)``); None when git cannot be run or says something else."""
    try:
        result = run_git(["--version"], env, None)
    except (OSError, subprocess.SubprocessError):
        return None
    words = result.stdout.split()
    if result.returncode != 0 or len(words) < 3:
        return None
    numbers = []
    for part in words[2].split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers) or None


def has_wildcards(found: tuple[int, ...]) -> bool:
    """Whether git ``found`` (``version()``) matches ``*`` in the host of ``credential.<url>``."""
    return found >= CREDENTIAL_WILDCARDS


def ere_literal(value: str) -> str:
    """An extended regular expression (git config's value pattern before ``--fixed-value``) matching exactly
    ``value``: anchored, every ERE special character escaped (``]`` and ``}`` are ordinary on their own)."""
    return "^" + "".join("\\" + c if c in "\\^.[$()|*+?{" else c for c in value) + "$"
