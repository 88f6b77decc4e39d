"""The signing keys of each configured issuer: discovery document and key set, fetched and cached (I/O).

Discovery documents and key sets are capped at ``MAX_DOCUMENT_BYTES`` and never redirected; a discovery
document must name its own issuer and an https ``jwks_uri`` (http only on loopback). Only RSA and EC
signature keys are kept, by ``kid``.

An unknown ``kid`` refetches the key set at most once per issuer per ``refetch_interval``, so a rotated key
is picked up without a restart and a flood of made-up ``kid``s costs the identity provider one request.

When the identity provider is down, slow or throttling, the keys already fetched keep verifying tokens
(stale, with a warning in the log and ``"state": "stale"`` in ``/readyz``); only an issuer whose keys were
never fetched answers 503 ``upstream_unavailable``, and it tries again every ``retry_interval``. One refresh
(discovery and key set together) is cut after ``fetch_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from ccweb.config import Issuer
from ccweb.errors import UpstreamUnavailable
from ccweb_helper.hosts import is_loopback

if TYPE_CHECKING:
    from ccweb.metrics import Metrics

log = logging.getLogger("ccweb.tokens")  # one logger for the whole token path, as operators know it

MAX_DOCUMENT_BYTES = 256 * 1024
FETCH_TIMEOUT_SECONDS = 5.0

Key = RSAKey | ECKey


class DocumentError(Exception):
    """A discovery document or key set could not be fetched or understood."""


async def fetch_json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """GET a JSON object, refusing bodies larger than MAX_DOCUMENT_BYTES and any redirect."""
    try:
        async with http.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise DocumentError(f"{url} answered HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise DocumentError(f"{url} is larger than {MAX_DOCUMENT_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise DocumentError(f"{url}: {type(exc).__name__}") from None
    try:
        value = json.loads(body)
    except ValueError:
        raise DocumentError(f"{url} is not JSON") from None
    if not isinstance(value, dict):
        raise DocumentError(f"{url} is not a JSON object")
    return value


def _import_keys(document: dict[str, Any]) -> dict[str | None, list[Key]]:
    """Signing keys by ``kid``; keys that are not RSA/EC signature keys are skipped."""
    keys: dict[str | None, list[Key]] = {}
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise DocumentError("the key set has no 'keys' list")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") not in ("RSA", "EC") or "d" in entry:
            continue
        try:
            key: Key = RSAKey.import_key(entry) if entry["kty"] == "RSA" else ECKey.import_key(entry)
        except (JoseError, ValueError, TypeError):
            continue
        kid = entry.get("kid")
        keys.setdefault(kid if isinstance(kid, str) else None, []).append(key)
    return keys


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("key set fetch failed: %s", type(exc).__name__)


@dataclass
class IssuerKeys:
    """The cached key set of one issuer, refetched on expiry or (bounded) on an unknown ``kid``.

    Refreshes are serialized and spaced: at most one per ``refetch_interval`` (``retry_interval`` while no
    key set was ever fetched). A failed refresh keeps the keys already fetched.
    """

    issuer: Issuer
    http: httpx.AsyncClient
    clock: Callable[[], float]
    max_age: float = 3600.0
    refetch_interval: float = 60.0
    retry_interval: float = 5.0
    fetch_timeout: float = FETCH_TIMEOUT_SECONDS
    keys: dict[str | None, list[Key]] | None = None
    fetched_at: float = 0.0
    attempted_at: float = -1e18
    last_error: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    warming: asyncio.Task[None] | None = None
    metrics: Metrics | None = None

    async def _jwks_uri(self) -> str:
        if self.issuer.jwks_uri:
            return self.issuer.jwks_uri
        url = self.issuer.issuer.rstrip("/") + "/.well-known/openid-configuration"
        discovery = await fetch_json(self.http, url)
        if discovery.get("issuer") != self.issuer.issuer:
            raise DocumentError(f"{url} names a different issuer")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise DocumentError(f"{url} has no jwks_uri")
        parts = urlsplit(jwks_uri)
        if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(parts.hostname or "")):
            raise DocumentError(f"{url} names a jwks_uri that is not https")
        return jwks_uri

    def _interval(self) -> float:
        return self.refetch_interval if self.keys is not None else min(self.retry_interval, self.refetch_interval)

    def next_attempt_in(self) -> float:
        """Seconds until a refresh may reach the identity provider again."""
        return max(0.0, self.attempted_at + self._interval() - self.clock())

    async def _fetch(self) -> dict[str | None, list[Key]]:
        try:
            async with asyncio.timeout(self.fetch_timeout):
                return _import_keys(await fetch_json(self.http, await self._jwks_uri()))
        except TimeoutError:
            raise DocumentError(f"no answer within {self.fetch_timeout:g} s") from None

    async def refresh(self) -> None:
        async with self.lock:
            now = self.clock()
            if now - self.attempted_at < self._interval():
                return  # someone else just tried; do not hammer the identity provider
            self.attempted_at = now
            try:
                self.keys = await self._fetch()
            except DocumentError as exc:
                self._count("error")
                self.last_error = str(exc)
                if self.keys is None:
                    log.warning("issuer %s: no key set yet: %s", self.issuer.name, exc)
                else:
                    log.warning("issuer %s: key set not refreshed, still using the one fetched %ds ago: %s",
                                self.issuer.name, now - self.fetched_at, exc)
                return
            self._count("ok")
            self.fetched_at = now
            self.last_error = None
            log.info("issuer %s: key set fetched (%d keys)", self.issuer.name, sum(map(len, self.keys.values())))

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.key_refreshes.labels(issuer=self.issuer.name, result=result).inc()

    async def warm(self, wait: float) -> None:
        """Start fetching the key set if none was ever fetched, and wait at most ``wait`` seconds for it
        (readiness probes warm a new replica this way without hanging on a slow identity provider)."""
        if self.keys is not None:
            return
        if self.warming is None or self.warming.done():
            self.warming = asyncio.ensure_future(self.refresh())
            self.warming.add_done_callback(_log_failure)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.warming), wait)

    async def candidates(self, kid: str | None) -> list[Key]:
        if self.keys is None:
            await self.refresh()
        elif self.clock() - self.fetched_at > self.max_age and not self.lock.locked():
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
