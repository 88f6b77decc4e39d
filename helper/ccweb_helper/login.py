"""The interactive login as a token source, with a cache shared by parallel gits.

``token()`` is the last token source: a cached ID token (refreshed silently with the refresh token when it
is within a minute of expiry; only the identity provider's ``invalid_grant`` or ``invalid_client`` ends a
login, and while the provider is down the cached token serves until it expires), else — when a person is at
a terminal — a sign-in in the browser or with a code on another device (``login_flows``). The ID token is what
the ccweb service receives: its ``aud`` is the login client id. A login is kept for the service it was made
for and sent to no other, even one whose discovery names the same issuer and client. Such a service never gets
a sign-in started by ``get``, even at a terminal (an identity provider with a live session would complete it
without asking, and that service would then hold a token the other one accepts): ``get`` says how to sign in
for it on purpose, with ``ccweb-helper login --url``. The checks of a token and
of the cache's entries are in ``login_tokens``, the identity provider's endpoints, renewal and revocation in
``login_idp``. No token, code, verifier or refresh token is ever printed.
"""

from __future__ import annotations

import contextlib
import sys
import time

from ccweb_helper import discovery
from ccweb_helper.audience import service_key
from ccweb_helper.cache import Cache, cache_dir
from ccweb_helper.client import HelperError
from ccweb_helper.login_tokens import (
    CACHE_VERSION,
    LAST_MARGIN,
    LOGIN_SECONDS,
    belongs,
    elsewhere,
    entry_key,
    logins,
    usable,
)

# A cached token is the common case: it needs neither the identity provider (login_idp) nor a sign-in
# (login_flows), which are imported where used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
    from typing import IO, Any

    from ccweb_helper.client import ServiceURL
    from ccweb_helper.discovery import Discovery, LoginIssuer

LOCK_SECONDS = LOGIN_SECONDS + 60  # how long to wait for another helper's sign-in before giving up
EXPIRED = "your login has expired; run `ccweb-helper login`."
NOT_HERE = ("you have not signed in for the ccweb service at {service} (a login is used only with the service it "
            "was made for); run `ccweb-helper login --url {service}`.")


def can_prompt(env: Mapping[str, str], stderr: IO[str] | None = None) -> bool:
    """Whether a person is at a terminal to sign in: stderr, where the sign-in is explained, is a terminal,
    and neither ``CCWEB_LOGIN=never`` nor git's ``GIT_TERMINAL_PROMPT=0`` (set by ``go mod download``, IDEs
    and scripts that must never wait for a person) says no."""
    if env.get("CCWEB_LOGIN", "").strip().lower() == "never":
        return False
    if env.get("GIT_TERMINAL_PROMPT", "").strip().lower() in ("0", "false", "no", "off"):
        return False
    stream = sys.stderr if stderr is None else stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no stderr at all, or a closed one
        return False


def token(service: ServiceURL, env: Mapping[str, str], seconds: float, *, stderr: IO[str],
          interactive: bool, cached_discovery: bool = False, memory: MutableMapping[str, Discovery] | None = None,
          clock: Callable[[], float] = time.time) -> str | None:
    """A valid ID token for one of the service's login issuers: cached, refreshed, or from a new sign-in.

    None when there is none and ``interactive`` is False (or the service offers no login); HelperError when
    the login has expired and cannot be renewed without a person, or cannot be renewed just now, or when the
    person signed in to the service's issuer for another service only (then no sign-in starts, even with a
    person at the terminal: ``NOT_HERE``).
    ``cached_discovery`` and ``memory`` are ``discovery.fetch``'s: where the service's document may come from.
    """
    remember = env if cached_discovery else None
    issuers = discovery.fetch(service, seconds, remember, memory=memory, clock=clock).login
    if not issuers:
        return None
    return token_for(issuers, Cache(cache_dir(env), stderr=stderr), env, seconds, service=service_key(service),
                     stderr=stderr, interactive=interactive, clock=clock)


def token_for(issuers: Sequence[LoginIssuer], store: Cache, env: Mapping[str, str], seconds: float, *,
              service: str, stderr: IO[str], interactive: bool, clock: Callable[[], float] = time.time) -> str | None:
    """``token`` for these issuers, the service ``service`` (a ``service_key``) and this cache; ``clock`` tells
    the time (seconds since 1970).

    Only the identity provider's ``invalid_grant`` or ``invalid_client`` ends a login; when renewal fails for
    any other reason (the provider is down, busy or unreachable) the refresh token is kept, and the cached ID
    token is used while it is valid at all. A login made for another service is neither used nor renewed, nor
    is a sign-in started when there is one: that is for ``ccweb-helper login --url`` to do, on purpose.
    """
    cached = logins(store.read())
    for login in issuers:  # the common case needs no lock: files are replaced atomically
        found = usable(cached.get(entry_key(login, service)), login, service, clock())
        if found is not None:
            return found
    from ccweb_helper.login_idp import NotRenewed, refresh  # noqa: PLC0415 (the identity provider, when needed)

    with locked(store, stderr):
        entries = logins(store.read())
        expired = False
        for login in issuers:
            key = entry_key(login, service)
            entry = entries.get(key)
            found = usable(entry, login, service, clock())
            if found is not None:
                return found  # another process signed in or refreshed while we waited
            if not isinstance(entry, dict) or not belongs(entry, login, service):
                continue  # no login, or one made for another service: never renewed for this one
            try:
                renewed = refresh(login, entry, seconds, now=clock())
            except NotRenewed as exc:
                if exc.keep != entry:  # a rotated refresh token, without an ID token
                    entries[key] = exc.keep
                    save(store, entries)
                last = usable(exc.keep, login, service, clock(), margin=LAST_MARGIN)
                if last is not None:
                    return last
                raise
            if renewed is not None:
                entries[key] = renewed
                save(store, entries)
                return str(renewed["id_token"])
            expired = True
            del entries[key]
            save(store, entries)
        if not expired and elsewhere(entries, issuers, service):
            raise HelperError(NOT_HERE.format(service=service))  # never a sign-in the person did not ask for
        if not interactive:
            if expired:
                raise HelperError(EXPIRED)
            return None
        if expired:
            stderr.write("ccweb: your login has expired; signing in again.\n")
        from ccweb_helper.login_flows import sign_in  # noqa: PLC0415 (only when a person signs in)

        entry = {**sign_in(issuers[0], env, seconds, stderr=stderr, clock=clock), "service": service}
        entries[entry_key(issuers[0], service)] = entry
        save(store, entries)
        return str(entry["id_token"])


@contextlib.contextmanager
def locked(store: Cache, stderr: IO[str], seconds: float = LOCK_SECONDS) -> Iterator[None]:
    """Hold the login cache's lock; wait at most ``seconds`` for another helper's sign-in to finish."""
    def waiting() -> None:
        stderr.write("ccweb: waiting for another ccweb-helper to finish signing in…\n")
        stderr.flush()

    stack = contextlib.ExitStack()
    try:
        stack.enter_context(store.lock(on_wait=waiting, timeout=seconds))
    except TimeoutError:
        raise HelperError(
            f"another ccweb-helper has held the login cache lock {store.lock_path} for over "
            f"{seconds:.0f} seconds; finish or cancel its sign-in, then try again."
        ) from None
    except OSError as exc:
        raise HelperError(
            f"cannot use the login cache in {store.directory} ({exc.strerror or exc}); set CCWEB_CACHE_DIR to a "
            "directory of your own."
        ) from None
    with stack:
        yield


def save(store: Cache, entries: Mapping[str, Any]) -> None:
    try:
        store.write({"version": CACHE_VERSION, "logins": dict(entries)})
    except OSError as exc:
        raise HelperError(
            f"cannot write the login cache {store.path} ({exc.strerror or exc}); set CCWEB_CACHE_DIR to a "
            "directory of your own."
        ) from None

