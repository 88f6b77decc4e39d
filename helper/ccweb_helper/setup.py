"""``ccweb-helper setup``: configure git so that ccweb-helper, and only it, answers for CodeCommit hosts.

For every CodeCommit host form and every git endpoint the service announces it writes one URL-scoped
section::

    [credential "https://git-codecommit.*.amazonaws.com"]
        helper =
        helper = !ccweb-helper
        useHttpPath = true

The empty ``helper =`` empties the helper list git has gathered so far (see ``gitconfig``), so a keychain,
Git Credential Manager, ``store`` or ``cache`` configured for all hosts is neither asked for nor handed a
CodeCommit password; for every other host the user's own helpers keep working. git's ``*`` in a URL's host
matches exactly one label, so ``git-codecommit.us-east-1.amazonaws.com.evil.example`` is not matched.

git applies ``*`` host patterns to credential settings only from git 2.26 on (``gitconfig``); an older git
would ignore every section written here, so setup refuses to run on it and says to upgrade. (Spelling out
each host instead is no way round: VPC endpoint names hold an endpoint id no list can foresee.)

It also hands the console's GRC URLs (``codecommit::<region>://<repo>``, ``codecommit://<repo>``) to
``ccweb-helper grc`` (``grc``) with four keys, ``GRC_KEYS``; ``--no-grc`` leaves them to AWS's
git-remote-codecommit (and removes those keys where setup wrote them).

Idempotent: it reads the target file first and runs ``git config`` only for keys that differ. The two
``insteadOf`` keys are lists: setup adds its value when missing and never replaces a value of the person's own.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import IO, NamedTuple

from ccweb_helper import gitconfig
from ccweb_helper.client import HelperError, ServiceURL, one_line, parse_service_url
from ccweb_helper.hosts import HOST_FORMS, git_endpoint_host, is_loopback

USAGE_EPILOG = """\
Writes, for every CodeCommit host form and each git endpoint of the service, a [credential "<url>"] section
with an empty `helper =` (so no keychain, Git Credential Manager, store or cache sees CodeCommit passwords),
`helper = !ccweb-helper` and `useHttpPath = true`, plus ccweb.url. Your own helpers keep working for every
other host. It also sends the console's GRC URLs (codecommit::<region>://<repo>, codecommit://<repo>) through
ccweb (`url.ccweb::.insteadOf`, `alias.remote-ccweb`, `protocol.ccweb.allow`); --no-grc leaves them to AWS's
git-remote-codecommit instead. Running it again changes nothing. Check the result with `ccweb-helper doctor`.
Needs git 2.26 or newer (older git ignores the `*` host patterns).
"""


class Section(NamedTuple):
    what: str
    url: str


def endpoint_urls(host: str) -> list[str]:
    """The URLs git uses for a service git endpoint ``host[:port]``: https, and http too when on loopback; none
    for what is not a host name (``git_endpoint_host``: a ``*`` would be a wildcard in git's eyes)."""
    try:
        name, _ = git_endpoint_host(host)
    except ValueError:
        return []
    urls = [f"https://{host}"]
    if is_loopback(name):
        urls.append(f"http://{host}")
    return urls


def helper_command(
    argv0: str, executable: str, which: Callable[[str], str | None], package_root: str,
) -> str:
    """The ``credential.helper`` value that runs this very helper.

    ``!ccweb-helper`` when that is what PATH finds; else the zipapp through this Python
    (``python3 /path/ccweb-helper``); else the script by its absolute path; else the package's ``__main__.py``
    by its absolute path through this Python (with ``PYTHONPATH`` naming the package's directory unless it is
    installed in site-packages: the helper imports nothing else, so that is safe). Never ``python -m
    ccweb_helper``: ``-m`` puts the current directory first on ``sys.path``, and git runs the helper in the
    work tree of the repository at hand — a ``ccweb_helper/`` committed at its top would run instead (a
    script's own directory comes first, not the current one).
    """
    program = os.path.realpath(argv0) if argv0 else ""
    found = which("ccweb-helper")
    if found and program and os.path.realpath(found) == program:
        return "!ccweb-helper"
    if program and os.path.isfile(program) and zipfile.is_zipfile(program):
        return "!" + shlex.join([executable, program])
    if program and os.path.basename(program).startswith("ccweb-helper") and os.access(program, os.X_OK):
        return "!" + shlex.quote(program)
    command = shlex.join([executable, os.path.join(package_root, "ccweb_helper", "__main__.py")])
    if os.path.basename(package_root) not in ("site-packages", "dist-packages"):
        command = f"PYTHONPATH={shlex.quote(package_root)} {command}"
    return "!" + command


# The directory that holds this ``ccweb_helper`` package: what ``PYTHONPATH`` names in the command above.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def this_helper() -> str:
    return helper_command(sys.argv[0], sys.executable, shutil.which, PACKAGE_ROOT)


def grc_keys(helper: str) -> list[tuple[str, list[str]]]:
    """The keys that send GRC URLs to ``<helper> grc``: git rewrites ``codecommit::`` to ``ccweb::``, runs
    ``git remote-ccweb`` for it, which is the alias; submodules need the protocol allowed."""
    return [("url.ccweb::.insteadOf", ["codecommit::"]), ("url.ccweb::codecommit://.insteadOf", ["codecommit://"]),
            ("alias.remote-ccweb", [f"{helper} grc"]), ("protocol.ccweb.allow", ["always"])]


def desired(sections: Sequence[Section], helper: str, url: str, *, grc: bool = True) -> list[tuple[str, list[str]]]:
    """(key, values) for every key setup owns, in the order it writes them."""
    keys: list[tuple[str, list[str]]] = [("ccweb.url", [url])]
    for section in sections:
        keys.append((f"credential.{section.url}.helper", ["", helper]))
        keys.append((f"credential.{section.url}.useHttpPath", ["true"]))
    return keys + (grc_keys(helper) if grc else [])


def _listed(key: str) -> bool:
    """Whether ``key`` is a list git reads every value of, to which setup adds its own (``insteadOf``)."""
    return key.lower().endswith(".insteadof")


def _current(entries: Sequence[gitconfig.Entry], key: str) -> list[str | None]:
    section, sub, name = gitconfig.split_name(key)
    return [e.value for e in entries if gitconfig.split_name(e.name) == (section, sub, name)]


def _same(key: str, have: list[str | None], want: list[str]) -> bool:
    if key.lower().endswith(".usehttppath"):
        return len(have) == 1 and gitconfig.as_bool(have[0]) is True
    return have == want


def commands(entries: Sequence[gitconfig.Entry], wanted: list[tuple[str, list[str]]]) -> list[list[str]]:
    """The ``git config`` arguments (after the scope) that turn ``entries`` into ``wanted``: only differing keys."""
    todo: list[list[str]] = []
    for key, values in wanted:
        have = _current(entries, key)
        if _listed(key):
            todo.extend(["--add", key, value] for value in values if value not in have)
            continue
        if _same(key, have, values):
            continue
        todo.append(["--replace-all", key, values[0]])
        todo.extend(["--add", key, value] for value in values[1:])
    return todo


def _our_alias(value: str | None, helper: str) -> bool:
    """Whether an ``alias.remote-ccweb`` value is one setup writes: ``<helper> grc``, or a ccweb-helper's ``grc``
    (an earlier setup's helper command)."""
    if value is None:
        return False
    return value == f"{helper} grc" or (value.endswith(" grc") and ("ccweb-helper" in value or "ccweb_helper" in value))


def grc_removals(entries: Sequence[gitconfig.Entry], helper: str) -> tuple[list[list[str]], list[str]]:
    """The ``git config`` arguments that take the GRC keys setup writes out of ``entries`` (``--no-grc``): its
    ``insteadOf`` values, an alias that runs ``<helper> grc`` (``_our_alias``), the protocol setting; and the
    values of ``alias.remote-ccweb`` left because they are not setup's."""
    todo: list[list[str]] = []
    left: list[str] = []
    for key, values in grc_keys(helper):
        have = _current(entries, key)
        if _listed(key):
            todo.extend(["--unset-all", key, gitconfig.ere_literal(v)] for v in values if v in have)
        elif key.startswith("alias."):
            ours = [v for v in have if v is not None and _our_alias(v, helper)]
            left += [v or "" for v in have if not _our_alias(v, helper)]
            if ours and not left:
                todo.append(["--unset-all", key])
            else:
                todo.extend(["--unset-all", key, gitconfig.ere_literal(v)] for v in dict.fromkeys(ours))
        elif have:
            todo.append(["--unset-all", key])
    return todo, left


def _scope_args(args: argparse.Namespace) -> tuple[list[str], str]:
    if args.file:
        return ["--file", args.file], args.file
    if args.local:
        return ["--local"], "this repository's .git/config"
    return ["--global"], "your global git config"


def _url(args: argparse.Namespace, env: Mapping[str, str], scope: list[str]) -> tuple[ServiceURL, str] | None:
    if args.url:
        return parse_service_url(args.url, "--url"), "--url"
    if env.get("CCWEB_URL", "").strip():
        return parse_service_url(env["CCWEB_URL"], "CCWEB_URL"), "CCWEB_URL"
    for where in (scope, []):
        entries = [e for e in gitconfig.read(r"^ccweb\.url$", scope_args=where, env=env) if e.value]
        if entries:
            return parse_service_url(entries[-1].value or "", "git config ccweb.url"), "the existing ccweb.url"
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccweb-helper setup", description="Configure git to use ccweb-helper for AWS CodeCommit.",
        epilog=USAGE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="the ccweb service (default: CCWEB_URL, else the existing ccweb.url)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--global", dest="global_", action="store_true", help="~/.gitconfig (the default)")
    where.add_argument("--local", action="store_true", help="this repository's .git/config")
    where.add_argument("--file", metavar="PATH", help="this git config file")
    parser.add_argument("--helper", metavar="CMD",
                        help="the command git runs (default: ccweb-helper if PATH finds this helper, else its path)")
    parser.add_argument("--no-grc", dest="grc", action="store_false",
                        help="leave codecommit:: URLs (the console's GRC URLs) to AWS's git-remote-codecommit")
    parser.add_argument("--dry-run", action="store_true", help="print the git config commands; change nothing")
    return parser


def main(command: str, argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return run(args, os.environ, sys.stdout, sys.stderr)


def run(args: argparse.Namespace, env: Mapping[str, str], out: IO[str], err: IO[str]) -> int:
    scope, place = _scope_args(args)
    refused = _git_refused(gitconfig.version(env))
    if refused:
        err.write(f"ccweb-helper setup: {refused}\n")
        return 1
    try:
        found = _url(args, env, scope)
    except HelperError as exc:
        err.write(f"ccweb-helper setup: {one_line(exc.message)}\n")
        return 2
    except (OSError, subprocess.SubprocessError, gitconfig.GitConfigError) as exc:
        err.write(f"ccweb-helper setup: cannot read git's configuration ({exc}).\n")
        return 1
    if found is None:
        err.write(
            "ccweb-helper setup: which ccweb service? Pass --url https://<your ccweb service> (or set CCWEB_URL).\n"
        )
        return 2
    service, _ = found
    helper = args.helper.strip() if args.helper else this_helper()
    if not helper.startswith("!"):
        helper = "!" + helper
    sections = [Section(form.what, form.git_url) for form in HOST_FORMS]
    endpoints, warning, skipped = _git_endpoints(service, env)
    for host in endpoints:
        sections.extend(Section(f"git endpoint {host}", url) for url in endpoint_urls(host))
    for host in skipped:
        err.write(f"ccweb-helper setup: warning: skipped the git endpoint '{one_line(host, 100)}' the service names: "
                  "it is not a host name (letters, digits, hyphens and dots, or an IP address) with an optional "
                  "port, so git would not read it as one host; tell the service's operators.\n")
    try:
        existing = gitconfig.read(scope_args=scope, env=env) if not _missing_file(args, env) else []
    except (OSError, subprocess.SubprocessError, gitconfig.GitConfigError) as exc:
        err.write(f"ccweb-helper setup: cannot read {place} ({exc}).\n")
        return 1
    todo = commands(existing, desired(sections, helper, service.url, grc=args.grc))
    if not args.grc:
        removals, left = grc_removals(existing, helper)
        todo += removals
        for value in left:
            err.write(f"ccweb-helper setup: note: alias.remote-ccweb = '{one_line(value, 200)}' is left in {place}: "
                      f"it is not the `{one_line(helper, 200)} grc` setup writes; if it is not yours, run "
                      f"`{shlex.join(['git', 'config', *scope, '--unset-all', 'alias.remote-ccweb'])}`.\n")
    if warning:
        err.write(f"ccweb-helper setup: warning: {warning}\n")
    if args.dry_run:
        for step in todo:
            out.write(one_line(shlex.join(["git", "config", *scope, *step]), 2000) + "\n")
        if not todo:
            out.write(f"Already configured in {place}; nothing to do.\n")
        return 0
    for done, step in enumerate(todo):
        shown = shlex.join(["git", "config", *scope, *step])
        again = (f" {done} of {len(todo)} changes were written; run `ccweb-helper setup` again (it writes only "
                 "what is missing)." if done else "")
        try:
            result = gitconfig.run_git(["config", *scope, *step], env)
        except subprocess.TimeoutExpired:
            err.write(f"ccweb-helper setup: `{shown}` did not finish within {gitconfig.TIMEOUT:g} seconds (is "
                      f"{place} on a slow or unreachable drive, or locked by another git?).{again}\n")
            return 1
        except (OSError, subprocess.SubprocessError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            err.write(f"ccweb-helper setup: `{shown}` could not be started ({reason}); check that git is installed "
                      f"and on PATH.{again}\n")
            return 1
        if result.returncode != 0:
            reason = one_line(result.stderr.strip(), 500) or f"exit status {result.returncode}"
            err.write(f"ccweb-helper setup: `{shown}` failed: {reason.rstrip('.')}.{again}\n")
            return 1
    _summary(out, place, todo=todo, service=service, helper=helper, sections=sections, endpoints=endpoints,
             warning=warning, grc=args.grc)
    return 0


def _git_refused(found: tuple[int, ...] | None) -> str:
    """Why setup cannot configure this git ("" when it can)."""
    if found is None:
        return "git cannot be run: install git (2.26 or newer) and make sure it is on PATH."
    if not gitconfig.has_wildcards(found):
        shown = ".".join(map(str, found))
        need = ".".join(map(str, gitconfig.CREDENTIAL_WILDCARDS))
        return (f"git {shown} is too old: it ignores the `{HOST_FORMS[0].git_url}` host patterns "
                f"setup writes (git applies `*` in credential URLs from {need} on), so your other credential "
                f"helpers would keep answering for CodeCommit; upgrade git to {need} or newer, then run "
                "`ccweb-helper setup` again. Nothing was changed.")
    return ""


def _missing_file(args: argparse.Namespace, env: Mapping[str, str]) -> bool:
    """Whether the file setup writes does not exist yet (git refuses to list it; there is nothing to read)."""
    if args.file:
        return not os.path.exists(args.file)
    if args.local:
        return False  # git itself says when this is not a repository
    home = env.get("HOME") or os.path.expanduser("~")
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files = (os.path.join(home, ".gitconfig"), os.path.join(xdg, "git", "config"))
    return not any(os.path.exists(path) for path in files)


def _git_endpoints(service: ServiceURL, env: Mapping[str, str]) -> tuple[tuple[str, ...], str, list[str]]:
    """The service's git endpoints that are host names (``git_endpoint_host``), why none could be read ("" when
    they could), and those skipped as no host name."""
    from ccweb_helper import discovery  # noqa: PLC0415 (network only when setup runs)
    from ccweb_helper.sources import timeout  # noqa: PLC0415

    try:
        hosts = discovery.fetch(service, timeout(env)).git_endpoints
    except HelperError as exc:
        return (), (
            f"could not read the service's git endpoints ({one_line(exc.message).rstrip('.')}); the CodeCommit "
            "hosts are configured, the service's own git hosts (if any) are not: run `ccweb-helper setup` "
            "again once the service is reachable."
        ), []
    valid: list[str] = []
    skipped: list[str] = []
    for host in hosts:
        (valid if endpoint_urls(host) else skipped).append(host)
    return tuple(valid), "", skipped


def _summary(out: IO[str], place: str, *, todo: list[list[str]], service: ServiceURL, helper: str,
             sections: list[Section], endpoints: tuple[str, ...], warning: str, grc: bool) -> None:
    if not todo:
        out.write(f"Already configured in {place} ({len(sections)} host patterns, service {service.url}); "
                  "nothing changed.\nCheck it with `ccweb-helper doctor`.\n")
        return
    out.write(f"Wrote {len(todo)} git config change{'s' if len(todo) != 1 else ''} to {place}:\n")
    out.write(f"  service        {service.url}\n")
    out.write(f"  helper         {helper}  (after an empty `helper =`, with useHttpPath = true)\n")
    for section in sections:
        out.write(f"  {one_line(section.url, 200):<52} {one_line(section.what, 200)}\n")
    if warning:
        out.write("  (the service's git endpoints could not be read; see the warning)\n")
    elif not endpoints:
        out.write("  (the service announces no extra git endpoints)\n")
    if grc:
        out.write(f"  {'codecommit::<region>://<repo>, codecommit://<repo>':<52} the console's GRC URLs, through "
                  f"`{one_line(helper.removeprefix('!'), 200)} grc`\n")
    else:
        out.write("  (codecommit:: URLs are left to AWS's git-remote-codecommit: --no-grc)\n")
    out.write("Your other credential helpers still answer for every other host.\n")
    out.write("Next: run `ccweb-helper doctor` to check the whole chain.\n")
