"""What the service tells the helper (``GET /.well-known/ccweb``): the audience CI tokens must carry, its extra
git endpoints, the issuers that allow interactive login, and the region and endpoints of GRC URLs.

Fetched at most once per process (``fetch``'s ``memory``: this process's unless a caller passes its own).
``git`` starts the helper for every command, so ``get`` also keeps the document for ``TTL_SECONDS`` in
``discovery.json`` in the helper's cache directory (``cache.cache_dir``; the directory 0700, the file 0600
and replaced atomically), one entry per service URL: a CI job or a person with a cached login then spends
one round trip to the service per git command, not two. An entry that is expired, dated in the future, for
another URL or not readable as one is ignored and the document fetched again; a cache that cannot be written
is simply not kept. Only a document the service answered with HTTP 200 and that names its git endpoints is
kept.
"""

from __future__ import annotations

import time

from ccweb_helper.client import HelperError, one_line, request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, MutableMapping
    from typing import Any, NamedTuple

    from ccweb_helper.cache import Cache
    from ccweb_helper.client import ServiceURL

    class LoginIssuer(NamedTuple):
        """An issuer people sign in to interactively: its URL, the public client id and the scopes to ask for."""

        name: str
        issuer: str
        client_id: str
        scopes: tuple[str, ...]

    class Grc(NamedTuple):
        """What the service says about the console's GRC URLs (``codecommit::<region>://<repo>``), as it said it:
        ``ccweb-helper grc`` checks each value before it uses it."""

        region: str | None  # the region of codecommit://<repo> URLs
        endpoints: tuple[tuple[str, str], ...]  # (region, URL prefix such as https://<host>/v1/repos/)

    class Discovery(NamedTuple):
        audience: str
        git_endpoints: tuple[str, ...]  # host[:port], lower case
        login: tuple[LoginIssuer, ...]
        grc: Grc = Grc(None, ())

else:  # the same tuples without importing typing at run time
    from collections import namedtuple

    LoginIssuer = namedtuple("LoginIssuer", "name issuer client_id scopes")
    Grc = namedtuple("Grc", "region endpoints")
    Discovery = namedtuple("Discovery", "audience git_endpoints login grc", defaults=(Grc(None, ()),))


_fetched: dict[str, Discovery] = {}
TTL_SECONDS = 300
FILE_NAME = "discovery.json"
FILE_VERSION = 2  # 2: the document holds ``grc`` (a version 1 entry, without it, is fetched again)
MAX_SERVICES = 16  # entries kept in the file; the oldest go first


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def cached(memory: Mapping[str, Discovery] | None = None) -> tuple[Discovery, ...]:
    """What this process (or ``memory``) has already been told, without asking again (for hints that must not
    do I/O)."""
    return tuple((_fetched if memory is None else memory).values())


def fetch(service: ServiceURL, seconds: float, env: Mapping[str, str] | None = None, *,
          memory: MutableMapping[str, Discovery] | None = None, clock: Callable[[], float] = time.time) -> Discovery:
    """The service's discovery document; HelperError when it cannot be had or is not ccweb's.

    A document in ``memory`` (by default this process's) is used as it is. With ``env`` (``get``: git is
    waiting) a document kept in the cache directory it names is used while it is fresh by ``clock``, and one
    fetched is kept; without it, only the memory is used.
    """
    known_documents = _fetched if memory is None else memory
    known = known_documents.get(service.url)
    if known is not None:
        return known
    store = _store(env) if env is not None else None
    if store is not None:
        remembered = _remembered(store, service, clock())
        if remembered is not None:
            known_documents[service.url] = remembered
            return remembered
    found = request(service, "GET", "/.well-known/ccweb", timeout=seconds)
    discovered = _document(found.body if found.status == 200 else None)
    if discovered is None:
        raise HelperError(
            f"{service.url}/.well-known/ccweb did not list git endpoints (HTTP {found.status}); check that "
            "CCWEB_URL (or git config ccweb.url) names the ccweb service."
        )
    known_documents[service.url] = discovered
    if store is not None:
        _remember(store, service, found.body, clock())
    return discovered


def _document(body: Any) -> Discovery | None:
    """The Discovery a JSON object describes; None when it does not list git endpoints."""
    endpoints = body.get("git_endpoints") if isinstance(body, dict) else None
    if not isinstance(endpoints, list):
        return None
    login = []
    offered = body.get("login")
    for item in offered if isinstance(offered, list) else []:
        if not isinstance(item, dict):
            continue
        name, issuer, client_id = (item.get(k) for k in ("name", "issuer", "client_id"))
        if isinstance(name, str) and isinstance(issuer, str) and isinstance(client_id, str) and issuer and client_id:
            login.append(LoginIssuer(one_line(name, 200), issuer.rstrip("/"), client_id,  # the name is shown
                                     _strings(item.get("scopes")) or ("openid",)))
    audience = body.get("audience")
    return Discovery(
        audience=audience if isinstance(audience, str) else "",
        git_endpoints=tuple(
            str(e.get("host", "")).lower() for e in endpoints if isinstance(e, dict) and e.get("host")
        ),
        login=tuple(login),
        grc=_grc(body.get("grc")),
    )


def _grc(value: Any) -> Grc:
    """The ``grc`` object's strings (anything else in it is left out)."""
    if not isinstance(value, dict):
        return Grc(None, ())
    region, endpoints = value.get("region"), value.get("endpoints")
    if not isinstance(endpoints, dict):
        endpoints = {}
    return Grc(region if isinstance(region, str) else None,
               tuple((k, v) for k, v in endpoints.items() if isinstance(k, str) and isinstance(v, str)))


# --- the file kept between processes -----------------------------------------------------------------------


def _store(env: Mapping[str, str]) -> Cache:
    from ccweb_helper.cache import Cache, cache_dir  # noqa: PLC0415 (only when a document is needed)

    return Cache(cache_dir(env), FILE_NAME)


def _entries(store: Cache) -> dict[str, Any]:
    document = store.read()
    entries = document.get("services") if document.get("version") == FILE_VERSION else None
    return entries if isinstance(entries, dict) else {}


def _fresh(entry: Any, now: float) -> bool:
    fetched = entry.get("fetched_at") if isinstance(entry, dict) else None
    if isinstance(fetched, bool) or not isinstance(fetched, (int, float)):
        return False
    return 0 <= now - fetched < TTL_SECONDS  # a time in the future: the clock was changed, ask again


def _remembered(store: Cache, service: ServiceURL, now: float) -> Discovery | None:
    entry = _entries(store).get(service.url)
    if not isinstance(entry, dict) or not _fresh(entry, now):
        return None
    return _document(entry.get("document"))


def _remember(store: Cache, service: ServiceURL, body: dict[str, Any], now: float) -> None:
    """Keep what the service said (the fields the helper reads) for the next process; best effort."""
    entries = {url: entry for url, entry in _entries(store).items() if url != service.url and _fresh(entry, now)}
    kept = sorted(entries.items(), key=lambda item: float(item[1]["fetched_at"]))[-(MAX_SERVICES - 1):]
    document = {k: body[k] for k in ("audience", "git_endpoints", "login", "grc") if k in body}
    entries = {**dict(kept), service.url: {"fetched_at": int(now), "document": document}}
    import contextlib  # noqa: PLC0415

    with contextlib.suppress(OSError):  # a cache directory that cannot be written: the next process asks again
        store.write({"version": FILE_VERSION, "services": entries})
