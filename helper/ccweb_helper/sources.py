"""Where the helper finds the service URL and the token.

Service URL: ``CCWEB_URL``, else git config ``credential.<url>.ccwebUrl`` (most specific URL match), else
``ccweb.url``. Token, first found: ``CCWEB_TOKEN``; the file named by ``CCWEB_TOKEN_FILE``; the CI
platform's own OIDC token (``ci``); the interactive login cache, or a login when a person is at a terminal
(``login``). Under ``CI=true`` no interactive flow ever starts.
"""

from __future__ import annotations

from ccweb_helper.client import HelperError, checked_service_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import IO, NamedTuple

    from ccweb_helper.client import ServiceURL

MAX_TOKEN_BYTES = 64 * 1024


def _git_config(*args: str) -> str | None:
    import subprocess  # noqa: PLC0415 (not needed when CCWEB_URL is set)

    from ccweb_helper import programs  # noqa: PLC0415

    try:
        # git runs the helper in the repository's work tree, which may be someone else's: never a git from there.
        result = subprocess.run(
            [programs.git(), "config", *args], capture_output=True, text=True, timeout=5, check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = result.stdout.strip()
    return value if result.returncode == 0 and value else None


def without_userinfo(url: str, source: str) -> str:
    """``url`` as it is; HelperError, which never repeats the URL, when it is not fit to name a service: a user
    name or password (``https://user:password@host``: the helper never sends them, and must not show them), a
    space or control character, a query or fragment (``client.checked_service_url``)."""
    checked_service_url(url, source)
    return url


def service_url(env: Mapping[str, str], url: str) -> tuple[str, str] | None:
    """``(url, where it came from)`` for the git remote ``url``, or None when nothing names a service;
    HelperError when it holds a user name or password (``without_userinfo``)."""
    value = env.get("CCWEB_URL", "").strip()
    if value:
        return without_userinfo(value, "CCWEB_URL"), "CCWEB_URL"
    value = _git_config("--get-urlmatch", "credential.ccweburl", url) or ""
    if value:
        where = "git config credential.<url>.ccwebUrl"
        return without_userinfo(value, where), where
    value = _git_config("--get", "ccweb.url") or ""
    if value:
        return without_userinfo(value, "git config ccweb.url"), "git config ccweb.url"
    return None


def _checked(token: str, source: str) -> str:
    token = token.strip()
    if not token:
        raise HelperError(f"{source} is empty; it must hold an OIDC token (a JWT).")
    if not token.isascii() or any(c.isspace() or not c.isprintable() for c in token):
        raise HelperError(f"{source} does not hold a single OIDC token (a JWT has no spaces or line breaks).")
    return token


if TYPE_CHECKING:

    class FoundToken(NamedTuple):
        token: str
        source: str  # for people: "CCWEB_TOKEN", "GitHub Actions", "your ccweb-helper login", …

else:  # the same tuple without importing typing at run time
    from collections import namedtuple

    FoundToken = namedtuple("FoundToken", "token source")


def explicit_token(env: Mapping[str, str]) -> str | None:
    """The token named by ``CCWEB_TOKEN`` or ``CCWEB_TOKEN_FILE``, or None when neither is set."""
    if env.get("CCWEB_TOKEN", "").strip():
        return _checked(env["CCWEB_TOKEN"], "CCWEB_TOKEN")
    path = env.get("CCWEB_TOKEN_FILE", "").strip()
    if path:
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_TOKEN_BYTES + 1)
        except OSError as exc:
            raise HelperError(
                f"cannot read the token file {path} named by CCWEB_TOKEN_FILE ({exc.strerror or exc})."
            ) from None
        if len(raw) > MAX_TOKEN_BYTES:
            raise HelperError(f"the token file {path} named by CCWEB_TOKEN_FILE is too large to hold a token.")
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise HelperError(f"the token file {path} named by CCWEB_TOKEN_FILE does not hold a token.") from None
        return _checked(text, f"the token file {path} named by CCWEB_TOKEN_FILE")
    return None


def in_ci(env: Mapping[str, str]) -> bool:
    return env.get("CI", "").strip().lower() in ("1", "true", "yes")


def find_token(
    env: Mapping[str, str], service: ServiceURL, seconds: float, *, stderr: IO[str], interactive: bool = True,
    cached_discovery: bool = False,
) -> FoundToken:
    """The first token found, in the contract's order; HelperError with what to configure when there is none.

    ``interactive=False`` never starts a login (``doctor``, ``status``); under ``CI=true`` none starts either.
    A token whose audiences are all other services' addresses is refused, not sent (``audience``).
    ``cached_discovery`` (``get``) lets the service's discovery document come from the helper's cache
    directory while it is fresh (``discovery.fetch``).
    """
    from ccweb_helper.audience import refuse_foreign, service_key  # noqa: PLC0415 (not for store and erase)

    token = explicit_token(env)
    if token is not None:
        given = "CCWEB_TOKEN" if env.get("CCWEB_TOKEN", "").strip() else "CCWEB_TOKEN_FILE"
        where = given if given == "CCWEB_TOKEN" else f"the token file {env[given].strip()} named by {given}"
        return FoundToken(refuse_foreign(token, service_key(service), where), given)
    from ccweb_helper import ci, discovery  # noqa: PLC0415 (only when no token was given)

    remember = env if cached_discovery else None
    found = ci.platform_token(env, lambda: discovery.fetch(service, seconds, remember).audience, seconds,
                              service=service_key(service))
    if found is not None:
        return FoundToken(found.token, found.platform)
    from ccweb_helper import login  # noqa: PLC0415 (only when no CI platform gave one)

    person = interactive and not in_ci(env) and login.can_prompt(env, stderr)
    token = login.token(service, env, seconds, stderr=stderr, interactive=person, cached_discovery=cached_discovery)
    if token is not None:
        return FoundToken(token, "your ccweb-helper login")
    raise HelperError(no_token_sentence(env, service, seconds))


def no_token_sentence(env: Mapping[str, str], service: ServiceURL, seconds: float) -> str:
    from ccweb_helper import ci, discovery  # noqa: PLC0415

    hint = ci.missing_hint(env)
    if hint is not None:
        return f"no OIDC token found: {hint}"
    base = (
        "no OIDC token found: set CCWEB_TOKEN to a token of your identity provider, or CCWEB_TOKEN_FILE to a "
        "file that holds one"
    )
    if in_ci(env):
        return (
            f"{base}; CI=true, so no interactive login is started (on GitHub Actions grant `permissions: "
            "id-token: write`; on GitLab CI add `id_tokens: CCWEB_TOKEN: aud: <audience>`)."
        )
    try:
        can_login = bool(discovery.fetch(service, seconds).login)
    except HelperError:
        can_login = False
    if can_login:
        return f"{base}, or sign in with `ccweb-helper login`."
    return base + "."


DEFAULT_TIMEOUT_SECONDS = 10.0
"""How long one request of the helper may take, unless ``CCWEB_TIMEOUT`` says otherwise."""


def timeout(env: Mapping[str, str]) -> float:
    text = env.get("CCWEB_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 600:
        raise HelperError(f"CCWEB_TIMEOUT must be a number of seconds between 0 and 600, not {text!r}.")
    return value
