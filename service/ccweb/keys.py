"""The signing keys of each configured issuer: discovery document and key set, fetched and cached (I/O).

Discovery documents and key sets are capped at ``MAX_DOCUMENT_BYTES`` and never redirected; a discovery
document must name its own issuer and an https ``jwks_uri`` of printable ASCII (``discovered_jwks_uri``); http
only when both it and the issuer itself are on loopback (the ``ccweb dev`` sandbox, tests), and loopback only
for an issuer on loopback, so that no identity provider elsewhere can send ccweb to the pod's own loopback (the
cluster-keys proxy, the metrics listener). A
``jwks_uri`` the policy names is the operator's choice, http on loopback included (as the config allows). Only
RSA and EC signature keys are kept, by ``kid``; a key ccweb cannot use (another key type, a curve it does not
know, a malformed or private key) is skipped and named in one log line per fetch, and the others serve. A key
set with no key ccweb can use is a failed fetch, as an HTTP error is: the keys fetched before stay.

Whatever goes wrong in a fetch (an HTTP error, a timeout, a document that is not JSON, nests too deeply or names
a jwks_uri that is not a URL, anything a key raises) is that fetch's failure and nothing more: it is counted
(``ccweb_key_refreshes_total{result="error"}``), logged, and kept as the issuer's ``last_error`` (a sentence
that never quotes the identity provider's own text) until a fetch succeeds; it never reaches ``/readyz`` or a
request as an exception.

Fetches of one issuer's keys (discovery document and key set together) are paced by ``fetch_wait``: at least
``KEY_FETCH_SPACING_SECONDS`` apart and at most ``KEY_FETCHES_PER_MINUTE`` in any minute, whatever the reason
(first fetch, a retry, a key set past ``max_age``, an unknown ``kid``). So a key the identity provider has just
published is found by the first token that names it once the last fetch is a few seconds old, and a flood of
made-up ``kid``s costs the identity provider a handful of requests a minute. Callers that want a fetch while
one is under way share it.

When the identity provider is down, slow or throttling, the keys already fetched keep verifying tokens
(stale, with a warning in the log and ``"state": "stale"`` in ``/readyz``); only an issuer whose keys were
never fetched answers 503 ``upstream_unavailable``, with the time until the next fetch may start as its
``Retry-After``. One fetch is cut after ``fetch_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from joserfc.jwk import ECKey, RSAKey

from ccweb.config import Issuer
from ccweb.display import printable
from ccweb.errors import UpstreamUnavailable
from ccweb_helper.hosts import is_loopback

if TYPE_CHECKING:
    from ccweb.metrics import Metrics

log = logging.getLogger("ccweb.tokens")  # one logger for the whole token path, as operators know it

MAX_DOCUMENT_BYTES = 256 * 1024
FETCH_TIMEOUT_SECONDS = 5.0
KEY_FETCH_SPACING_SECONDS = 5.0
"""The least time between the starts of two fetches of one issuer's keys: an unknown ``kid`` refetches once the
last fetch is this old, and an issuer whose keys could not be fetched is tried again this much later."""
KEY_FETCHES_PER_MINUTE = 6
"""The most fetches of one issuer's keys that start in any minute (per worker), whatever tokens arrive."""
MAX_SKIPPED_LOGGED = 10
"""The most keys one fetch's log line names among those skipped (it counts them all)."""

Key = RSAKey | ECKey


class DocumentError(Exception):
    """A discovery document or key set could not be fetched or understood."""


async def fetch_json(http: httpx.AsyncClient, url: str, name: str | None = None) -> dict[str, Any]:
    """GET a JSON object, refusing bodies larger than MAX_DOCUMENT_BYTES and any redirect. ``name``: how errors
    name the document (default: ``url``; one whose URL the identity provider chose is named, not quoted)."""
    name = name or url
    try:
        async with http.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise DocumentError(f"{name} answered HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise DocumentError(f"{name} is larger than {MAX_DOCUMENT_BYTES} bytes")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise DocumentError(f"{name} could not be fetched ({type(exc).__name__})") from None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise DocumentError(f"{name} is not JSON (or nests too deeply)") from None
    if not isinstance(value, dict):
        raise DocumentError(f"{name} is not a JSON object")
    return value


def _shown(value: object) -> str:
    """A key's parameter as a log line names it: quoted, escaped, at most 40 characters of it."""
    if isinstance(value, str):
        return printable(repr(value[:40]) + ("…" if len(value) > 40 else ""))
    return type(value).__name__


def _describe(entry: object) -> str:
    """One key of a key set, for the log line that names the keys skipped: its kid, kty and crv."""
    if not isinstance(entry, dict):
        return f"an entry that is a JSON {type(entry).__name__}, not an object"
    parts = [f"{name} {_shown(entry[name])}" for name in ("kid", "kty", "crv") if name in entry]
    return "a key with " + (", ".join(parts) if parts else "no kid, kty or crv")


def _import_keys(document: dict[str, Any]) -> tuple[dict[str | None, list[Key]], list[str]]:
    """The RSA and EC signature keys by ``kid``, and the keys ccweb cannot use, described for the log.

    Keys marked for encryption (``use`` other than ``sig``) are left out without a word: they are not for
    signatures. Every other key that does not import as an RSA or EC public key (another ``kty``, a curve
    joserfc does not know, missing or malformed parameters, a private key) is skipped and described, whatever
    it raises.
    """
    keys: dict[str | None, list[Key]] = {}
    skipped: list[str] = []
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise DocumentError("the key set has no 'keys' list")
    for entry in entries:
        if isinstance(entry, dict) and entry.get("use", "sig") != "sig":
            continue
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC") or "d" in entry:
            skipped.append(_describe(entry))
            continue
        try:
            key: Key = RSAKey.import_key(entry) if entry["kty"] == "RSA" else ECKey.import_key(entry)
        except Exception:  # noqa: BLE001 (joserfc raises KeyError for an unknown curve, ValueError, JoseError, …)
            skipped.append(_describe(entry))
            continue
        kid = entry.get("kid")
        keys.setdefault(kid if isinstance(kid, str) else None, []).append(key)
    return keys, skipped


def fetch_wait(now: float, last: float, recent: deque[float]) -> float:
    """Seconds until a fetch of one issuer's keys may start (0: now), given when the last one started and the
    starts of the last ``KEY_FETCHES_PER_MINUTE`` (oldest first). Pure: the time is passed in."""
    if last > now:
        return 0.0  # the clock was set back: fetches "after" now are no guide
    wait = last + KEY_FETCH_SPACING_SECONDS - now
    if len(recent) >= KEY_FETCHES_PER_MINUTE and (oldest := recent[-KEY_FETCHES_PER_MINUTE]) <= now:
        wait = max(wait, oldest + 60.0 - now)  # this minute's fetches are spent
    return max(0.0, wait)


def discovered_jwks_uri(discovery: dict[str, Any], issuer: str, url: str) -> str:
    """The ``jwks_uri`` that ``issuer``'s discovery document (fetched from ``url``) names, if ccweb may fetch it;
    else a ``DocumentError`` that names the document and never quotes it. Pure.

    It must be a URL of printable ASCII, https; plain http only when both the issuer and the ``jwks_uri`` are on
    loopback (the ``ccweb dev`` sandbox, tests); and only an issuer on loopback may name loopback at all. An
    identity provider elsewhere (or whoever answers for its discovery URL) that names ``http://127.0.0.1:…``
    would otherwise have every replica send a GET to its own pod: the cluster-keys ``kubectl proxy``, the
    metrics listener.
    """
    if discovery.get("issuer") != issuer:
        raise DocumentError(f"{url} names a different issuer")
    jwks_uri = discovery.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise DocumentError(f"{url} has no jwks_uri")
    if not jwks_uri.isascii() or not jwks_uri.isprintable() or " " in jwks_uri:
        raise DocumentError(f"{url} names a jwks_uri that is not a URL of printable ASCII characters")
    try:
        parts = urlsplit(jwks_uri)
        loopback = is_loopback(parts.hostname or "")
    except ValueError:  # "https://[::1/jwks": an unclosed IPv6 address, a bad port
        raise DocumentError(f"{url} names a jwks_uri that is not a URL") from None
    issuer_on_loopback = is_loopback(urlsplit(issuer).hostname or "")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback and issuer_on_loopback):
        raise DocumentError(f"{url} names a jwks_uri that is not https")
    if loopback and not issuer_on_loopback:
        raise DocumentError(f"{url} names a jwks_uri on loopback, which only an issuer on loopback may")
    return jwks_uri


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("key set fetch failed: %s", type(exc).__name__)


@dataclass
class IssuerKeys:
    """The cached key set of one issuer, fetched again when older than ``max_age`` or for an unknown ``kid``.

    Fetches are paced (``fetch_wait``) and shared: a caller that wants one while one is under way waits for
    that one. A failed fetch (one whose key set holds no key ccweb can use included) keeps the keys already
    fetched, and never raises to the callers that wait for it.
    """

    issuer: Issuer
    http: httpx.AsyncClient
    clock: Callable[[], float]
    max_age: float = 3600.0
    fetch_timeout: float = FETCH_TIMEOUT_SECONDS
    keys: dict[str | None, list[Key]] | None = None
    fetched_at: float = 0.0
    attempted_at: float = -1e18
    """When the last fetch started."""
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=KEY_FETCHES_PER_MINUTE))
    """When the last ``KEY_FETCHES_PER_MINUTE`` fetches started, oldest first."""
    last_error: str | None = None
    metrics: Metrics | None = None
    fetching: asyncio.Future[None] | None = field(default=None, init=False, repr=False)
    """The fetch under way (done once it ended)."""

    async def _jwks_uri(self) -> tuple[str, str]:
        """The key set's URL, and how errors name it: the configured URL as it is, or (never quoted: the
        identity provider chose it) the jwks_uri that the discovery document names."""
        if self.issuer.jwks_uri:
            return self.issuer.jwks_uri, self.issuer.jwks_uri
        url = self.issuer.issuer.rstrip("/") + "/.well-known/openid-configuration"
        discovery = await fetch_json(self.http, url)
        return discovered_jwks_uri(discovery, self.issuer.issuer, url), f"the jwks_uri that {url} names"

    def next_attempt_in(self) -> float:
        """Seconds until a fetch may reach the identity provider again."""
        return fetch_wait(self.clock(), self.attempted_at, self.recent)

    async def _fetch(self) -> dict[str | None, list[Key]]:
        """The usable keys of a fresh key set (the keys skipped logged); a ``DocumentError`` if it has none."""
        try:
            async with asyncio.timeout(self.fetch_timeout):
                jwks_uri, name = await self._jwks_uri()
                keys, skipped = _import_keys(await fetch_json(self.http, jwks_uri, name))
        except TimeoutError:
            raise DocumentError(f"no answer within {self.fetch_timeout:g} s") from None
        if skipped:
            log.warning("issuer %s: %d key(s) of the key set skipped, which ccweb cannot use: %s",
                        self.issuer.name, len(skipped),
                        "; ".join(skipped[:MAX_SKIPPED_LOGGED]) + ("; …" if len(skipped) > MAX_SKIPPED_LOGGED else ""))
        if not keys:
            raise DocumentError(f"{name} holds no RSA or EC signature key that ccweb can use")
        return keys

    def _start(self) -> asyncio.Future[None] | None:
        """The fetch under way, else a new one if the pacing allows it now; else None."""
        if self.fetching is not None and not self.fetching.done():
            return self.fetching
        now = self.clock()
        if fetch_wait(now, self.attempted_at, self.recent) > 0:
            return None  # fetched moments ago, or this minute's fetches are spent: do not hammer the IdP
        self.attempted_at = now
        self.recent.append(now)
        self.fetching = asyncio.ensure_future(self._refresh(now))
        self.fetching.add_done_callback(_log_failure)
        return self.fetching

    async def refresh(self) -> None:
        """Fetch the key set again (or wait for the fetch under way); nothing if the pacing says not yet."""
        fetching = self._start()
        if fetching is not None:
            await asyncio.shield(fetching)  # a caller that gives up does not cut the fetch the others wait for

    async def _refresh(self, now: float) -> None:
        """One fetch. It never raises: whatever goes wrong is this fetch's failure, and the keys stay."""
        try:
            keys = await self._fetch()
        except DocumentError as exc:
            self._failed(now, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 (anything else a document or key raises: the fetch failed, no more)
            self._failed(now, f"the key set could not be read ({type(exc).__name__})")
            return
        self.keys = keys
        self._count("ok")
        self.fetched_at = now
        self.last_error = None
        log.info("issuer %s: key set fetched (%d keys)", self.issuer.name, sum(map(len, keys.values())))

    def _failed(self, now: float, error: str) -> None:
        self._count("error")
        self.last_error = error
        if self.keys is None:
            log.warning("issuer %s: no key set yet: %s", self.issuer.name, error)
        else:
            log.warning("issuer %s: key set not refreshed, still using the one fetched %ds ago: %s",
                        self.issuer.name, now - self.fetched_at, error)

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.key_refreshes.labels(issuer=self.issuer.name, result=result).inc()

    async def warm(self, wait: float) -> None:
        """Start fetching the key set if none was ever fetched, and wait at most ``wait`` seconds for it
        (readiness probes warm a new replica this way without hanging on a slow identity provider)."""
        if self.keys is not None:
            return
        fetching = self._start()
        if fetching is not None:
            await asyncio.wait([fetching], timeout=wait)  # neither cuts the fetch nor raises what it raised

    async def candidates(self, kid: str | None) -> list[Key]:
        if self.keys is None:
            await self.refresh()
        elif self.clock() - self.fetched_at > self.max_age and (self.fetching is None or self.fetching.done()):
            await self.refresh()  # while another caller refreshes, the keys in hand still serve
        if self.keys is None:
            raise UpstreamUnavailable(
                f"ccweb cannot fetch the signing keys of the identity provider {self.issuer.issuer}; "
                "try again shortly, and tell the ccweb operators if it persists.",
                reason="jwks_unavailable",
                retry_after=max(1, math.ceil(self.next_attempt_in())),
            )
        found = self._lookup(kid)
        if not found:
            await self.refresh()
            found = self._lookup(kid)
        return found

    def state(self) -> dict[str, Any]:
        """For ``/readyz``: ``ok``; ``stale`` (the last refresh failed; the keys fetched before still serve);
        ``unavailable`` (no key set was ever fetched: its tokens get 503); ``loading`` (first fetch under way)."""
        if self.keys is None:
            state = "loading" if self.last_error is None else "unavailable"
        else:
            state = "ok" if self.last_error is None else "stale"
        age = None if self.keys is None else max(0, int(self.clock() - self.fetched_at))
        return {"state": state, "keys_loaded": self.keys is not None, "keys_age_seconds": age,
                "last_error": self.last_error}

    def _lookup(self, kid: str | None) -> list[Key]:
        if self.keys is None:
            return []
        if kid is None:
            return [key for keys in self.keys.values() for key in keys]
        return list(self.keys.get(kid, ()))
