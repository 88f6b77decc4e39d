"""``ccweb-helper doctor``'s checks of git itself: its version, the helper list it builds for each CodeCommit
host form and git endpoint, remotes, stored passwords, TLS and proxies.

The helper list is computed as git's credential code builds it (``gitconfig.effective``), not with
``git config --get-urlmatch``, which answers how ``http.<url>.*`` settings resolve and would hide a keychain
configured for all hosts; on a git older than 2.26, which ignores the ``*`` host patterns setup writes,
it is computed as that git would (``wildcards=False``). No user name from a remote URL is shown beyond a
short prefix (a CodeCommit one is ``ASIA…%<session token>``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from ccweb_helper import gitconfig
from ccweb_helper.client import one_line
from ccweb_helper.doctor_report import SAMPLES, Report
from ccweb_helper.hosts import HOST_FORMS, parse_codecommit_host

OTHER_HOST = "https://example.com/some/repository.git"

STORAGE = {
    "osxkeychain": "the macOS keychain (osxkeychain)",
    "manager": "Git Credential Manager",
    "manager-core": "Git Credential Manager",
    "wincred": "the Windows credential store (wincred)",
    "store": "store (~/.git-credentials, plain text)",
    "cache": "cache (in memory)",
    "libsecret": "libsecret (the desktop keyring)",
    "gnome-keyring": "gnome-keyring",
}


class Helper(NamedTuple):
    kind: str  # ccweb, storage, aws, other
    label: str


def classify(value: str) -> Helper:
    """What a ``credential.helper`` value runs, for people."""
    text = value.strip()
    if "ccweb-helper" in text or "ccweb_helper" in text:
        return Helper("ccweb", "ccweb-helper")
    command = text[1:] if text.startswith("!") else text
    if "codecommit" in command and "credential-helper" in command:
        return Helper("aws", "the AWS CLI credential helper")
    words = _words(command)
    name = os.path.basename(words[0]) if words else ""
    name = name[len("git-credential-"):] if name.startswith("git-credential-") else name
    name = name[:-4] if name.lower().endswith(".exe") else name
    if name in STORAGE:
        return Helper("storage", STORAGE[name])
    return Helper("other", f"`{one_line(text, 80)}`")


def _words(command: str) -> list[str]:
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    while words and "=" in words[0] and not words[0].startswith(("/", ".")):
        words.pop(0)  # VAR=value assignments before the command
    return words


def program_of(command: str, env: Mapping[str, str]) -> tuple[str, bool]:
    """The program a ``credential.helper`` or ``!`` alias command runs, and whether it can be found (on ``env``'s
    PATH when it names no directory)."""
    words = _words(command[1:] if command.startswith("!") else command)
    program = words[0] if words else ""
    if "/" in program or os.sep in program:
        return program, os.path.isfile(program) and os.access(program, os.X_OK)
    return program, bool(program) and shutil.which(program, path=env.get("PATH")) is not None


def runs_module(command: str) -> bool:
    """Whether ``command`` runs ``python -m ccweb_helper``, as ``setup`` wrote it before it named the package's
    ``__main__.py`` by its path: ``-m`` imports a ``ccweb_helper/`` from the current directory first, and git
    runs helpers in the repository's work tree."""
    words = _words(command[1:] if command.startswith("!") else command)
    return "-mccweb_helper" in words or any(word == "-m" and after == "ccweb_helper"
                                            for word, after in zip(words, words[1:]))


def _fix(entry: gitconfig.Entry, *, before: bool, git: tuple[int, ...]) -> str:
    """How to stop ``entry`` from speaking for CodeCommit hosts."""
    remove = f"remove it (`{_unset(entry, git)}`)"
    if gitconfig.split_name(entry.name)[1] is not None:
        return remove  # configured for these very hosts
    if entry.scope in ("local", "worktree"):
        return f"run `ccweb-helper setup --local` (its empty `helper =` line then comes after it), or {remove}"
    if before:
        return f"run `ccweb-helper setup` (its empty `helper =` line then comes after it), or {remove}"
    return f"move that line above the [credential \"https://…\"] sections in {entry.where}, or {remove}"


def _unset(entry: gitconfig.Entry, git: tuple[int, ...]) -> str:
    """A command that removes exactly ``entry`` and works on git ``git`` (``--fixed-value`` needs 2.30)."""
    path = entry.path
    if path is None:
        return f"drop the {entry.where} setting {entry.name}"
    value = entry.value or ""
    if git >= gitconfig.FIXED_VALUE:
        return shlex.join(["git", "config", "--file", path, "--fixed-value", "--unset-all", entry.name, value])
    return shlex.join(["git", "config", "--file", path, "--unset-all", entry.name, gitconfig.ere_literal(value)])


def _short_user(user: str) -> str:
    """A user name from a URL, shown safely: nothing from its first ``%`` on (a CodeCommit user name is
    ``<access key id>%<session token>``), at most 8 characters."""
    head = user.split("%", 1)[0]
    cut = head[:8]
    return cut + "…" if cut != user else cut


class GitChecks(Report):
    """The checks of git's version, configuration and files."""

    def git_version(self) -> bool:
        found = gitconfig.version(self.env)
        if found is None:
            self.say("FAIL", "git cannot be run: install git and make sure it is on PATH.")
            return False
        self.git = found
        shown = ".".join(map(str, found))
        if not gitconfig.has_wildcards(found):
            need = ".".join(map(str, gitconfig.CREDENTIAL_WILDCARDS))
            self.say("FAIL", f"git {shown} is too old: it ignores the host patterns ccweb-helper setup writes "
                             f"(`{HOST_FORMS[0].git_url}`; `*` in credential URLs needs git {need}), "
                             "so your other credential helpers answer for CodeCommit; upgrade git to "
                             f"{need} or newer.")
        elif found < (2, 41):
            self.say("note", f"git {shown} works; git 2.41 and newer also honour password_expiry_utc and drop a "
                             "password once it has expired — upgrade when convenient.")
        else:
            self.say("ok", f"git {shown}.")
        return True

    def read_config(self) -> bool:
        try:
            self.entries = gitconfig.read(r"^credential\.")
        except (OSError, subprocess.SubprocessError, gitconfig.GitConfigError) as exc:
            self.say("FAIL", f"cannot read git's configuration ({exc}); fix the file it names.")
            return False
        return True

    def targets(self) -> list[tuple[str, gitconfig.Target]]:
        from ccweb_helper.setup import endpoint_urls  # noqa: PLC0415

        found = [(label, gitconfig.Target.from_url(url)) for label, url in SAMPLES]
        for host in self.endpoints:
            found.extend((f"git endpoint {url}", gitconfig.Target.from_url(f"{url}/v1/repos/example"))
                         for url in endpoint_urls(host))
        for name, url in self.remotes():
            target = gitconfig.Target.from_url(url)
            if self._ours(target.host):
                found.append((f"remote {name}", target))
        return found

    def _ours(self, host: str) -> bool:
        return parse_codecommit_host(host) is not None or host.lower() in self.endpoints

    def remotes(self) -> list[tuple[str, str]]:
        try:
            entries = gitconfig.read(r"^remote\..*\.(push)?url$")
        except (OSError, subprocess.SubprocessError, gitconfig.GitConfigError):
            return []
        found = []
        for entry in entries:
            _, name, _ = gitconfig.split_name(entry.name)
            if name and entry.value and urlsplit(entry.value).scheme.lower() in ("http", "https"):
                found.append((name, entry.value))
        return found

    def helper_lists(self) -> None:
        """One line per distinct finding, naming every host it holds for (most configurations are uniform)."""
        grouped: dict[tuple[str, str], list[str]] = {}
        for label, target in self.targets():
            for status, text in self.helpers(target):
                grouped.setdefault((status, text), []).append(label)
        for (status, text), labels in grouped.items():
            self.say(status, f"{', '.join(dict.fromkeys(labels))}: {text}")

    def helpers(self, target: gitconfig.Target) -> list[tuple[str, str]]:
        """The findings about the helpers git would run for ``target``, each with its fix."""
        wildcards = gitconfig.has_wildcards(self.git)
        chosen = gitconfig.effective(self.entries, target, wildcards=wildcards)
        kinds = [classify(e.value or "") for e in chosen.helpers]
        first = next((i for i, k in enumerate(kinds) if k.kind == "ccweb"), None)
        if first is None:
            others = ", ".join(f"{k.label} ({e.where})" for k, e in zip(kinds, chosen.helpers))
            fix = "run `ccweb-helper setup`" if wildcards else \
                f"upgrade git to {'.'.join(map(str, gitconfig.CREDENTIAL_WILDCARDS))} or newer (see the git line)"
            return [("FAIL", "git would not ask ccweb-helper"
                     + (f", only {others}" if others else " (no helper at all, so it would prompt)")
                     + f"; {fix}.")]
        self.ccweb_values.setdefault(chosen.helpers[first].value or "", chosen.helpers[first])
        found: list[tuple[str, str]] = []
        for index, (kind, entry) in enumerate(zip(kinds, chosen.helpers)):
            if index == first or kind.kind == "ccweb":
                continue
            fix = _fix(entry, before=index < first, git=self.git)
            if index < first:
                found.append(("FAIL", f"{kind.label} from {entry.where} would answer before ccweb-helper, with a "
                                      "stored or differently made password (a dead one gives `403` after 15 "
                                      f"minutes); {fix}."))
            elif kind.kind == "storage":
                found.append(("FAIL", f"{kind.label} from {entry.where} comes after ccweb-helper and would be "
                                      "handed every CodeCommit password to keep (and replay once it has expired); "
                                      f"{fix}."))
            elif kind.kind == "aws":
                found.append(("note", f"{kind.label} from {entry.where} comes after ccweb-helper and is never "
                                      f"asked; remove it when convenient (`{_unset(entry, self.git)}`)."))
            else:
                found.append(("warn", f"{kind.label} from {entry.where} comes after ccweb-helper and is handed "
                                      f"each CodeCommit password; if it stores passwords, {fix}."))
        use_path = chosen.use_http_path
        if use_path is None or gitconfig.as_bool(use_path.value) is not True:
            found.append(("FAIL", "useHttpPath is off, so git would not send the repository path and a "
                                  "CodeCommit password is signed for one repository; run `ccweb-helper setup` (or "
                                  "`git config --global credential.useHttpPath true`)."))
        if not [f for f in found if f[0] != "note"]:
            found.insert(0, ("ok", "git asks ccweb-helper first, no storage helper sees the password, useHttpPath "
                                   "is on."))
        return found

    def helper_for_all_hosts(self) -> None:
        chosen = gitconfig.effective(self.entries, gitconfig.Target.from_url(OTHER_HOST),
                                     wildcards=gitconfig.has_wildcards(self.git))
        for entry in chosen.helpers:
            if classify(entry.value or "").kind == "ccweb" and gitconfig.split_name(entry.name)[1] is None:
                self.say("warn", f"ccweb-helper is configured for every host (credential.helper in {entry.where}): "
                                 "git asks it about github.com and every other remote too; remove that line "
                                 f"(`{_unset(entry, self.git)}`) and keep the per-host sections of "
                                 "`ccweb-helper setup`.")

    def runnable(self) -> None:
        for value, entry in self.ccweb_values.items():
            program, found = program_of(value, self.env)
            if found:
                self.say("ok", f"git runs ccweb-helper as `{value}` ({entry.where}).")
            else:
                self.say("FAIL", f"git would run `{value}` ({entry.where}) but `{program}` cannot be found"
                                 f"{' on PATH' if '/' not in program else ''}; run `ccweb-helper setup` with the "
                                 "helper you installed (it writes a command that runs it), or pass --helper CMD.")

    def module_form(self) -> None:
        """One line when git runs ccweb-helper as ``python -m ccweb_helper`` (``runs_module``) for CodeCommit
        hosts or as ``alias.remote-ccweb``: the command ``setup`` wrote before; running it again replaces it."""
        try:
            aliases = gitconfig.read(r"^alias\.remote-ccweb$", env=self.env)[-1:]  # git runs the last one
        except (OSError, subprocess.SubprocessError, gitconfig.GitConfigError):
            aliases = []
        found = [f"credential helper in {entry.where}" for value, entry in self.ccweb_values.items()
                 if runs_module(value)]
        found += [f"alias.remote-ccweb in {entry.where}" for entry in aliases if runs_module(entry.value or "")]
        if found:
            self.say("warn", f"git runs ccweb-helper as `python -m ccweb_helper` ({', '.join(dict.fromkeys(found))}), "
                             "which runs a ccweb_helper/ folder of the repository at hand instead; run "
                             "`ccweb-helper setup` again (it writes a command that runs the helper by its path).")

    def remote_users(self) -> None:
        for name, url in self.remotes():
            parts = urlsplit(url)
            if not parts.hostname or not self._ours(parts.netloc.rpartition("@")[2]):
                continue
            clean = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
            if parts.password is not None:
                self.say("FAIL", f"remote {name} has a password in its URL, so git sends it and never asks "
                                 f"ccweb-helper; run `git remote set-url {name} {clean}`.")
            elif parts.username:
                self.say("warn", f"remote {name} names a user in its URL ({_short_user(parts.username)}@…): git "
                                 "sends that user to every helper and matches credential settings per user; "
                                 "CodeCommit needs the username ccweb issues; run "
                                 f"`git remote set-url {name} {clean}`.")

    def stored(self) -> None:
        home = os.path.expanduser("~")
        xdg = self.env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        files = [os.path.join(home, ".git-credentials"), os.path.join(xdg, "git", "credentials")]
        for entry in self.entries:
            words = _words(entry.value or "")
            if gitconfig.split_name(entry.name)[2] == "helper" and words and words[0] == "store":
                for i, word in enumerate(words):
                    if word.startswith("--file="):
                        files.append(os.path.expanduser(word[len("--file="):]))
                    elif word == "--file" and i + 1 < len(words):
                        files.append(os.path.expanduser(words[i + 1]))
        found = False
        for path in dict.fromkeys(files):
            hosts = self._stored_hosts(path)
            if not hosts:
                continue
            found = True
            shown = path.replace(home, "~", 1) if path.startswith(home + os.sep) else path
            first = hosts[0]
            self.say("FAIL", f"{shown} holds stored passwords for {', '.join(hosts)}, which `store` replays "
                             "(they expire 15 minutes after issue); remove them, for each host: "
                             f"`printf 'protocol=https\\nhost={first}\\n\\n' | git credential-store --file "
                             f"{shlex.quote(path)} erase`, or delete those lines.")
        if not found:
            self.say("ok", "no stored CodeCommit passwords in ~/.git-credentials or git's other credential files.")

    def _stored_hosts(self, path: str) -> list[str]:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                lines = handle.read(1 << 20).splitlines()
        except OSError:
            return []
        hosts: list[str] = []
        for line in lines:
            try:
                parts = urlsplit(line.strip())
                host = parts.netloc.rpartition("@")[2].lower()
            except ValueError:
                continue
            if host and self._ours(host) and host not in hosts:
                hosts.append(host)
        return hosts

    def tls_and_proxies(self) -> None:
        if self.env.get("GIT_SSL_NO_VERIFY"):
            self.say("FAIL", "GIT_SSL_NO_VERIFY is set, so git does not check CodeCommit's TLS certificate and "
                             "could hand a password to an impostor; unset it.")
        off = []
        for label, url in SAMPLES:
            value = _get_urlmatch("http.sslVerify", url, self.env)
            if value is not None and gitconfig.as_bool(value) is False:
                off.append(label)
        if off:
            self.say("FAIL", f"http.sslVerify is false for {', '.join(off)}: git does not check the server's TLS "
                             "certificate and could hand a password to an impostor; remove it (`git config --global "
                             "--unset-all http.sslVerify`, and any http.<url>.sslVerify), and trust a company CA with "
                             "http.sslCAInfo instead.")
        elif not self.env.get("GIT_SSL_NO_VERIFY"):
            self.say("ok", "git verifies the TLS certificates of CodeCommit hosts.")
        proxies = [_redacted(name, self.env[name]) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                   if self.env.get(name)]
        configured = _get_urlmatch("http.proxy", SAMPLES[0][1], self.env)
        if configured:
            proxies.append(_redacted("http.proxy", configured))
        if proxies:
            self.say("note", f"git reaches CodeCommit through a proxy ({', '.join(proxies)}); ccweb-helper reads "
                             "HTTPS_PROXY, ALL_PROXY and NO_PROXY as git's curl does (not http.proxy): the service "
                             "line above says how it reached the service.")


def _redacted(name: str, value: str) -> str:
    """``name=<the proxy's address>`` as ccweb reads ``value`` (``proxy.parse_proxy``: never a user name or
    password); ``name=<not shown>`` when ccweb cannot read it (git may: a SOCKS proxy): never any part of the value."""
    from ccweb_helper.proxy import ProxySettingError, parse_proxy  # noqa: PLC0415

    try:
        return f"{name}={parse_proxy(value, name).url}"
    except ProxySettingError:
        return f"{name}=<not shown>"


def _get_urlmatch(key: str, url: str, env: Mapping[str, str]) -> str | None:
    try:
        result = gitconfig.run_git(["config", "--get-urlmatch", key, url], env)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
