"""``ccweb-helper grc <remote> <address>``: the console's GRC URLs through ccweb, as git's remote helper.

The CodeCommit console offers "HTTPS (GRC)" clone URLs for AWS's git-remote-codecommit:
``codecommit::<region>://[profile@]<repo>`` and ``codecommit://[profile@]<repo>``. ``ccweb-helper setup``
writes four git config keys so that git hands them to this command instead::

    url.ccweb::.insteadOf = codecommit::                 # codecommit::us-east-2://Repo -> ccweb::us-east-2://Repo
    url.ccweb::codecommit://.insteadOf = codecommit://   # codecommit://Repo -> ccweb::codecommit://Repo
    alias.remote-ccweb = !ccweb-helper grc               # git runs `git remote-ccweb <remote> <address>`
    protocol.ccweb.allow = always                        # submodules (git sets GIT_PROTOCOL_FROM_USER=0)

It turns the address into ``https://<host>/v1/repos/<repo>`` and becomes ``git remote-https`` for it, so git
asks ccweb-helper for a password as for any https remote: no AWS keys, no AWS CLI. The profile part is
accepted and ignored. The region: the URL's, else git config ``ccweb.region``, else the service's
(``grc.region`` in its discovery document), else ``AWS_REGION``/``AWS_DEFAULT_REGION``. The host: git config
``ccweb.<region>.endpoint`` (``host[:port]``), else the service's ``grc.endpoints[<region>]`` (which must name a
CodeCommit host of that region or one of the service's git endpoints), else the standard host of
``hosts.HOST_FORMS``. Failures are one ``ccweb: …`` sentence on stderr and exit status 128.

The parsing and choosing are pure (``parse_address``, ``resolve``); reading git config, asking the service and
becoming ``git remote-https`` are at the edges (``run``).
"""

from __future__ import annotations

import os
import re
import sys

from ccweb_helper import programs
from ccweb_helper.client import HelperError, one_line
from ccweb_helper.hosts import (
    HOST_FORMS,
    REGION_PATTERN,
    REPOSITORY_NAME_PATTERN,
    git_endpoint_host,
    is_loopback,
    parse_codecommit_host,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import IO, NamedTuple

    from ccweb_helper.client import ServiceURL
    from ccweb_helper.discovery import Discovery

    class Address(NamedTuple):
        """A GRC URL as git hands it over (after ``url.ccweb::.insteadOf``)."""

        region: str | None  # None for codecommit://<repo>
        repository: str
        shown: str  # the URL as the person wrote it, for messages

    class Target(NamedTuple):
        """Where git is sent: ``url`` and where its host came from (for ``doctor`` and the tests)."""

        url: str
        region: str
        source: str

    Service = Callable[[str], "tuple[ServiceURL, Discovery] | None"]
else:
    from collections import namedtuple

    Address = namedtuple("Address", "region repository shown")
    Target = namedtuple("Target", "url region source")

EXIT_FAILURE = 128  # git's own status for a fatal error
AREA = "codecommit"
FORMS = "codecommit::<region>://<repository> or codecommit://<repository>"
USAGE = """usage: ccweb-helper grc <remote> <address>

git runs this for the console's GRC URLs (codecommit::<region>://<repository>, codecommit://<repository>)
once `ccweb-helper setup` has configured them; it is not meant to be run by hand.
"""


def parse_address(address: str) -> Address:
    """``<region>://[profile@]<repo>`` or ``codecommit://[profile@]<repo>``; HelperError for anything else."""
    scheme, sep, rest = address.partition("://")
    shown = one_line(address if scheme == AREA else f"{AREA}::{address}", 300)
    if not sep:
        raise HelperError(f"{shown} is not a GRC URL: write {FORMS}.")
    region: str | None = None
    if scheme != AREA:
        if not re.fullmatch(REGION_PATTERN, scheme):
            raise HelperError(f"'{one_line(scheme, 100)}' in {shown} is not an AWS region (such as us-east-2); "
                              f"write {FORMS}.")
        region = scheme
    repository = rest[:-1] if rest.endswith("/") else rest
    repository = repository.rpartition("@")[2]  # a profile before it is accepted and ignored
    if not re.fullmatch(REPOSITORY_NAME_PATTERN, repository) or repository in (".", ".."):
        raise HelperError(f"{shown} does not end in a CodeCommit repository name (up to 100 letters, digits, "
                          f"'.', '_' and '-'): write {FORMS}.")
    return Address(region, repository, shown)


def standard_host(region: str) -> str:
    """The CodeCommit host of ``region`` that needs no configuration (``.amazonaws.com.cn`` in China)."""
    form = next(f for f in HOST_FORMS if f.name == ("china" if region.startswith("cn-") else "standard"))
    return form.git_url.partition("://")[2].replace("*", region)


def _from_git_config(value: str, key: str) -> str:
    """The URL prefix for ``ccweb.<region>.endpoint`` = ``host[:port]``: https, plain http for loopback."""
    try:
        name, port = git_endpoint_host(value)
    except ValueError:
        raise HelperError(f"git config {key} must be host[:port] (such as "
                          f"git-codecommit-fips.us-east-1.amazonaws.com), not '{one_line(value, 200)}'.") from None
    authority = name if port is None else f"{name}:{port}"
    return f"{'http' if is_loopback(name) else 'https'}://{authority}/v1/repos/"


def _prefix_problem(prefix: str, region: str, git_endpoints: Sequence[str]) -> str | None:
    """Why the service's URL prefix for ``region`` cannot be used (None when it can): it must be exactly
    ``https://<host[:port]>/v1/repos/`` (http for loopback only) with a CodeCommit host of ``region`` or one of
    the service's git endpoints as host — git would send the repository there."""
    scheme, sep, rest = prefix.partition("://")
    authority, slash, path = rest.partition("/")
    if scheme not in ("http", "https") or not sep or not slash or path != "v1/repos/":
        return "is not https://<host>/v1/repos/"
    try:
        name, port = git_endpoint_host(authority)
    except ValueError:
        return "does not name a host"
    if scheme == "http" and not is_loopback(name):
        return "is plain http:// to a host other than loopback"
    codecommit = parse_codecommit_host(authority)
    if codecommit is not None and scheme == "https":
        return None if codecommit.region == region else f"is a CodeCommit host of {codecommit.region}"
    key = name if port is None else f"{name}:{port}"
    if key in git_endpoints:
        return None
    return f"is neither a CodeCommit host of {region} nor one of the service's git endpoints"


def _region(address: Address, config: Mapping[str, str], env: Mapping[str, str],
            service: Callable[[], tuple[ServiceURL, Discovery] | None]) -> tuple[str, str]:
    """The region and where it came from."""
    if address.region is not None:
        return address.region, "the URL"
    candidates: list[tuple[str | None, str]] = [(config.get("ccweb.region"), "git config ccweb.region")]
    if not candidates[0][0]:
        found = service()
        if found is not None:
            candidates.append((found[1].grc.region, f"the ccweb service {found[0].url} (grc.region)"))
    candidates += [(env.get(name, "").strip(), name) for name in ("AWS_REGION", "AWS_DEFAULT_REGION")]
    for value, source in candidates:
        if not value:
            continue
        if not re.fullmatch(REGION_PATTERN, value):
            raise HelperError(f"{source} is '{one_line(value, 100)}', which is not an AWS region (such as us-east-2).")
        return value, source
    raise HelperError(
        f"{address.shown} names no region and none is configured: write codecommit::<region>://"
        f"{address.repository}, or run `git config --global ccweb.region <region>` (or set AWS_REGION)."
    )


def resolve(address: Address, config: Mapping[str, str], env: Mapping[str, str], service: Service) -> Target:
    """Where ``address`` sends git. ``config``: git config ``ccweb.*`` (name → last value); ``service(url)``:
    the ccweb service for the remote ``url`` and its discovery document, None when none is configured (called
    only when git config does not settle the matter; HelperError when it cannot be asked)."""
    asked: dict[str, tuple[ServiceURL, Discovery] | None] = {}

    def ask(url: str) -> tuple[ServiceURL, Discovery] | None:
        if url not in asked:
            asked[url] = service(url)
        return asked[url]

    region, _ = _region(address, config, env, lambda: ask(""))
    key = f"ccweb.{region}.endpoint"
    configured = config.get(key, "").strip()
    if configured:
        return Target(_from_git_config(configured, key) + address.repository, region, f"git config {key}")
    standard = f"https://{standard_host(region)}/v1/repos/"
    found = ask(standard + address.repository)
    prefix = dict(found[1].grc.endpoints).get(region) if found is not None else None
    if found is None or prefix is None:
        return Target(standard + address.repository, region, "the standard CodeCommit host")
    problem = _prefix_problem(prefix, region, found[1].git_endpoints)
    if problem is not None:
        raise HelperError(
            f"the ccweb service {found[0].url} names '{one_line(prefix, 200)}' for the GRC URLs of {region}, which "
            f"{problem}; tell its operators, or set `git config --global {key} <host>`."
        )
    return Target(prefix + address.repository, region, f"the ccweb service {found[0].url} (grc.endpoints)")


# --- the edges ---------------------------------------------------------------------------------------------


def read_config(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """git config ``ccweb.*`` as git sees it here (the repository's too: git sets GIT_DIR); the last value wins."""
    import subprocess  # noqa: PLC0415

    from ccweb_helper.gitconfig import run_git  # noqa: PLC0415

    try:
        result = run_git(["config", "-z", "--get-regexp", r"^ccweb\."], env)
    except (OSError, subprocess.SubprocessError) as exc:
        raise HelperError(f"cannot read git's configuration ({type(exc).__name__}).") from None
    if result.returncode not in (0, 1):
        raise HelperError(f"cannot read git's configuration ({one_line(result.stderr.strip(), 300)}).")
    found: dict[str, str] = {}
    for record in result.stdout.split("\0"):
        name, _, value = record.partition("\n")
        if name:
            found[name.lower()] = value
    return found


def ask_service(env: Mapping[str, str]) -> Service:
    """The ``service`` of ``resolve``: the one ``get`` would ask about ``url``, and its discovery document (kept
    in the cache directory for a few minutes, as ``get`` keeps it)."""

    def service(url: str) -> tuple[ServiceURL, Discovery] | None:
        from ccweb_helper import discovery  # noqa: PLC0415
        from ccweb_helper.client import parse_service_url  # noqa: PLC0415
        from ccweb_helper.sources import service_url, timeout  # noqa: PLC0415

        configured = service_url(env, url)
        if configured is None:
            return None
        found = parse_service_url(*configured)
        return found, discovery.fetch(found, timeout(env), env)

    return service


def run(argv: Sequence[str], env: Mapping[str, str], stderr: IO[str],
        become: Callable[[list[str]], int] | None = None) -> int:
    """``grc <remote> <address>``: resolve, then hand over to ``git remote-https`` (``become``)."""
    if len(argv) != 2 or argv[0] in ("-h", "--help"):
        stderr.write(USAGE)
        return 2
    remote, address = argv
    try:
        target = resolve(parse_address(address), read_config(env), env, ask_service(env))
        git = _git(env)
    except HelperError as exc:
        stderr.write(f"ccweb: {one_line(exc.message)}\n")
        stderr.flush()
        return EXIT_FAILURE
    scheme = target.url.partition(":")[0]
    return (become or _become)([git, f"remote-{scheme}", remote, target.url])


def _git(env: Mapping[str, str]) -> str:
    """The git that started us (``programs.git``): the current directory is the work tree of a repository that
    may be someone else's, so never a git found there."""
    try:
        return programs.git(env)
    except OSError:
        raise HelperError("cannot find git in GIT_EXEC_PATH nor in an absolute directory of PATH; check that git "
                          "is installed and on PATH.") from None


def _become(command: list[str]) -> int:
    """Become ``command``, whose program is an absolute path (POSIX: exec, so git talks to it directly); on
    Windows run it and pass its status on."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        if os.name != "nt":
            os.execv(command[0], command)  # noqa: S606 (git's own program, arguments git gave us; no shell)
        import subprocess  # noqa: PLC0415

        return subprocess.call(command)
    except OSError as exc:
        sys.stderr.write(f"ccweb: cannot run `git {command[1]}` ({exc.strerror or type(exc).__name__}); check that "
                         "git is installed and on PATH.\n")
        return EXIT_FAILURE


def main(command: str, argv: list[str]) -> int:
    return run(argv, os.environ, sys.stderr)
