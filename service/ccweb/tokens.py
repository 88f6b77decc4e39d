"""OIDC token verification: a strict JWT check against the issuer's key set (``ccweb.keys``).

Secure defaults, in the order they are applied:
- a size cap on the token; compact JWS only (three parts), never JWE;
- an algorithm allowlist (RS*, PS*, ES*) — never ``none`` or HS*;
- ``jku``, ``x5u``, ``jwk``, ``x5c`` and ``crit`` headers are refused, never followed;
- the issuer must be configured (exact ``iss``); keys come only from that issuer's key set;
- ``aud`` must contain one of the issuer's audiences, and ``azp`` (the client the token was issued to), when
  present, must be one of them too; ``exp`` and ``sub`` are required; ``nbf``/``iat`` are checked with a
  small leeway.

A token is identified (``token_sha256``: audit lines, logs, the memory below) by the SHA-256 of what its
issuer signed, the ``header.payload`` before the last dot: its signature is not part of its identity, so an
ECDSA signature re-shaped as (r, n - s), which verifies as well, does not make the same token a second one.
High-S ECDSA signatures are accepted: common signing libraries produce them for half their signatures.

A verified token is remembered under that identity (at most ``MAX_VERIFIED_TOKENS``, least recently used
first), beside the SHA-256 of each whole token, signature included, that verified, while it is unexpired, its
issuer's key set is the very one it was verified with and that set is not older than ``key_max_age``: the
next request with the same bytes costs a hash instead of a signature check. Anything else, another signature
over the same signed part included, goes through every check again. A policy reload starts with an empty
memory.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from joserfc import jws
from joserfc.errors import (
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwt import JWTClaimsRegistry

from ccweb.config import Config, Issuer
from ccweb.errors import InvalidToken
from ccweb.keys import FETCH_TIMEOUT_SECONDS, IssuerKeys

if TYPE_CHECKING:
    from ccweb.metrics import Metrics

ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
MAX_TOKEN_BYTES = 16 * 1024
LEEWAY_SECONDS = 60
LAST_EXPIRY = 253_402_300_799
"""The last second of the year 9999: a later ``exp`` is no time a token can mean (nor a date to print)."""
MAX_VERIFIED_TOKENS = 10_000
"""Verified tokens one worker remembers (least recently used forgotten first): a bound on its memory."""
_ENCODINGS_REMEMBERED = 2
"""Signatures remembered per verified token: an ECDSA signature and its (r, n - s) twin."""


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token whose signature and claims have been checked; ``sha256`` (``token_sha256``) identifies it."""

    issuer: Issuer
    claims: dict[str, Any]
    sha256: str
    expires_at: float

    @property
    def subject(self) -> str:
        return str(self.claims["sub"])


def token_sha256(token: str) -> str:
    """A token's identity in audit lines and logs: the SHA-256 of its signing input (all of it if it has no dot),
    the same for every signature over it. ``printf %s "${TOKEN%.*}" | sha256sum`` gives it in a shell."""
    return _digests(token)[0].hex()


def _digests(token: str) -> tuple[bytes, bytes]:
    """The SHA-256 of the signing input (``token_sha256``) and of the whole token, in one pass over it."""
    raw = token.encode("utf-8", "replace")
    dot = raw.rfind(b".")
    if dot < 0:
        dot = len(raw)
    hashed = hashlib.sha256(memoryview(raw)[:dot])
    signed = hashed.digest()
    hashed.update(memoryview(raw)[dot:])
    return signed, hashed.digest()


def _b64json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    if not isinstance(value, dict):
        raise TypeError("not a JSON object")
    return value


def _refuse(reason: str, detail: str) -> InvalidToken:
    return InvalidToken(f"The OIDC token was refused: {detail}.", reason=reason)



class TokenVerifier:
    def __init__(
        self,
        config: Config,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        key_max_age: float = 3600.0,
        fetch_timeout: float = FETCH_TIMEOUT_SECONDS,
        metrics: Metrics | None = None,
        max_verified: int = MAX_VERIFIED_TOKENS,
    ) -> None:
        """``max_verified``: how many verified tokens to remember (least recently used go first; 0: none)."""
        self._clock = clock
        # By token_sha256: the verified token, the key set that verified it, the SHA-256s of the whole tokens
        # (signature included) that verified; by the whole token's SHA-256: the checks under way.
        self._verified: OrderedDict[bytes, tuple[VerifiedToken, object, tuple[bytes, ...]]] = OrderedDict()
        self._checking: dict[bytes, asyncio.Future[tuple[VerifiedToken, object]]] = {}
        self._max_verified = max_verified
        self._issuers = {
            issuer.issuer: IssuerKeys(
                issuer, http, clock, max_age=key_max_age, fetch_timeout=fetch_timeout, metrics=metrics,
            )
            for issuer in config.issuers
        }

    def issuer_keys(self) -> list[IssuerKeys]:
        return list(self._issuers.values())

    async def readiness(self, wait: float = 0.5) -> dict[str, dict[str, Any]]:
        """Each issuer's ``IssuerKeys.state()``, after warming those without keys for at most ``wait`` s."""
        await asyncio.gather(*(keys.warm(wait) for keys in self._issuers.values()))
        return {keys.issuer.name: keys.state() for keys in self._issuers.values()}

    def __len__(self) -> int:
        """Verified tokens remembered."""
        return len(self._verified)

    async def verify(self, token: str) -> VerifiedToken:
        if len(token) > MAX_TOKEN_BYTES:
            raise _refuse("too_large", f"it is larger than {MAX_TOKEN_BYTES} bytes")
        signed, whole = _digests(token)
        remembered = self._verified.get(signed)
        if remembered is not None and whole in remembered[2]:  # these very bytes verified: not just what they sign
            verified, keyset, _ = remembered
            keys = self._issuers[verified.issuer.issuer]
            now = self._clock()
            if (
                keys.keys is keyset
                and now - keys.fetched_at <= keys.max_age
                and now - LEEWAY_SECONDS <= verified.expires_at
            ):
                self._verified.move_to_end(signed)
                return verified
            del self._verified[signed]  # expired, or the key set changed: check it again from the start
        checking = self._checking.get(whole)
        if checking is None:
            # One check per token at a time: the requests that bring the same token meanwhile (a job's parallel
            # fetches, a crowd arriving while the key set is fetched) wait for it and share its outcome. Keyed
            # by the whole token: another signature over the same signed part waits for no one's outcome.
            checking = asyncio.ensure_future(self._verify(token, signed.hex()))
            self._checking[whole] = checking
            checking.add_done_callback(lambda done: self._checked(signed, whole, done))
        verified, _ = await asyncio.shield(checking)
        return verified

    def _checked(self, signed: bytes, whole: bytes, done: asyncio.Future[tuple[VerifiedToken, object]]) -> None:
        del self._checking[whole]
        if done.cancelled() or done.exception() is not None:
            return  # its waiters raise the exception; asking for it here keeps asyncio from calling it unretrieved
        # Remembered with the key set its signature was checked against, taken before any later refresh, and
        # beside the other signatures over the same signed part that verified against that same set.
        verified, keyset = done.result()
        earlier = self._verified.pop(signed, None)
        wholes: tuple[bytes, ...] = (whole,)
        if earlier is not None and earlier[1] is keyset:
            wholes = tuple(dict.fromkeys((*earlier[2], whole)))[-_ENCODINGS_REMEMBERED:]
        self._verified[signed] = (verified, keyset, wholes)
        if self._max_verified <= 0:
            self._verified.clear()
        while len(self._verified) > self._max_verified:
            self._verified.popitem(last=False)

    async def _verify(self, token: str, sha256: str) -> tuple[VerifiedToken, object]:
        """The verified token, and the key set (the very object) its signature was checked against."""
        parts = token.split(".")
        if len(parts) != 3:
            raise _refuse("malformed", "it is not a signed JWT")
        try:
            header, payload = _b64json(parts[0]), _b64json(parts[1])
        except (ValueError, TypeError, RecursionError):  # bad base64, UTF-8 or JSON, not an object, too deep
            raise _refuse("malformed", "it is not a signed JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise _refuse("algorithm", f"the signing algorithm {str(alg)[:16]!r} is not accepted")
        if FORBIDDEN_HEADERS & header.keys():
            raise _refuse("forbidden_header", "its header names keys by URL or embeds a key")
        if not parts[2]:
            raise _refuse("malformed", "it is not a signed JWT")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _refuse("malformed", "its key id is not a string")
        iss = payload.get("iss")
        keys = self._issuers.get(iss) if isinstance(iss, str) else None
        if keys is None:
            raise _refuse("unknown_issuer", "its issuer is not one this service trusts")
        claims, keyset = await self._check_signature(token, alg, kid, keys)
        self._check_claims(claims, keys.issuer)
        return VerifiedToken(keys.issuer, claims, sha256, float(claims["exp"])), keyset

    async def _check_signature(
        self, token: str, alg: str, kid: str | None, keys: IssuerKeys
    ) -> tuple[dict[str, Any], object]:
        """The claims, and the key set the candidate keys came from."""
        candidates = await keys.candidates(kid)
        keyset = keys.keys  # no await since: the set the candidates are from
        if not candidates:
            raise _refuse("unknown_key", "it is signed with a key its issuer does not publish")
        for key in candidates:
            try:
                signed = jws.deserialize_compact(token, key, algorithms=[alg])
            except JoseError:  # wrong key type for the algorithm, bad signature, …: try the next key
                continue
            try:
                claims = json.loads(signed.payload)
            except (ValueError, RecursionError):
                break
            if isinstance(claims, dict):
                return claims, keyset
            break
        raise _refuse("bad_signature", "its signature does not verify")

    def _check_claims(self, claims: dict[str, Any], issuer: Issuer) -> None:
        registry = JWTClaimsRegistry(
            now=int(self._clock()),
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer.issuer},
            aud={"essential": True, "values": issuer.audiences},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise _refuse("expired", "it has expired; get a new token and try again") from None
        except MissingClaimError as exc:
            names = ", ".join(repr(n) for n in exc.claim.split(","))
            raise _refuse("missing_claim", f"it lacks the required claim {names}") from None
        except InvalidClaimError as exc:
            claim = exc.claim
            if claim == "aud":
                raise _refuse(
                    "audience",
                    "it is not meant for this service (its 'aud' has none of: "
                    + ", ".join(issuer.audiences) + ")",
                ) from None
            if claim in ("nbf", "iat"):
                raise _refuse("not_yet_valid", "it is not valid yet; check this machine's clock") from None
            raise _refuse("invalid_claim", f"its {claim or 'claims'} claim is invalid") from None
        if "azp" in claims and not (isinstance(claims["azp"], str) and claims["azp"] in issuer.audiences):
            # OIDC Core 3.1.3.7: the party it was issued to must be this service, whatever else 'aud' names.
            raise _refuse(
                "authorized_party",
                "it was issued to another application (its 'azp', the client it was issued to, is none of: "
                + ", ".join(issuer.audiences) + "); use a token issued for this service",
            )
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise _refuse("missing_claim", "it has no subject ('sub')")
        if not isinstance(claims["exp"], int | float) or not 0 < claims["exp"] <= LAST_EXPIRY:
            raise _refuse("invalid_claim", "its exp claim is invalid")
