"""Where the policy finds a claim: one top-level claim name, verbatim, or an RFC 6901 JSON Pointer into the
token's claims when the key starts with ``/``. Pure, no I/O.

    claim_path(key)           the key compiled (ValueError with a sentence for a malformed pointer)
    ClaimPath.find(claims)    the value it names, or MISSING
    distributed(claims, top)  whether the token names a top-level claim it does not carry as "distributed"
                              (OpenID Connect's ``_claim_names``, Entra ID's groups overage)

``https://example.com/groups`` and ``a.b`` are names, not paths: only a leading ``/`` makes a pointer. In a
pointer ``~1`` is ``/`` and ``~0`` is ``~`` (``/a~1b`` is the claim ``a/b``); a token of decimal digits (no
leading zero) indexes a list; ``-`` and an index past the end find nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ccweb.identity import MISSING

MAX_KEY = 512
"""The longest key (name or pointer) the policy accepts."""
_ESCAPE = re.compile(r"~(?![01])")
_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")
OVERAGE_CLAIM = "groups"
"""The claim Entra ID leaves out, with a ``_claim_names`` marker (or ``hasgroups: true``), for a person in too
many groups."""


@dataclass(frozen=True, slots=True)
class ClaimPath:
    key: str
    """As the policy file writes it: what messages name."""
    tokens: tuple[str, ...]
    """The unescaped reference tokens; one, the name itself, for a top-level claim."""

    @property
    def pointer(self) -> bool:
        return self.key.startswith("/")

    @property
    def top(self) -> str:
        """The top-level claim the path starts in."""
        return self.tokens[0]

    def find(self, claims: Mapping[str, Any]) -> object:
        """The value this path names in ``claims``, or ``MISSING`` (null is a value)."""
        value: object = claims
        for token in self.tokens:
            if isinstance(value, Mapping):
                value = value.get(token, MISSING)
            elif isinstance(value, list) and _INDEX.fullmatch(token) and int(token) < len(value):
                value = value[int(token)]
            else:
                return MISSING
            if value is MISSING:
                return MISSING
        return value


def claim_path(key: str) -> ClaimPath:
    """``key`` compiled; ValueError (a sentence naming what is wrong) for a key that names nothing."""
    if not key:
        raise ValueError("an empty key names no claim")
    if len(key) > MAX_KEY:
        raise ValueError(f"{key[:40]!r}… is longer than {MAX_KEY} characters")
    if not key.isprintable():
        raise ValueError(f"{key[:100]!r} holds a control or invisible character")
    if not key.startswith("/"):
        return ClaimPath(key, (key,))
    bad = _ESCAPE.search(key)
    if bad is not None:
        raise ValueError(
            f"{key[:100]!r} is not a JSON Pointer (RFC 6901): '~' at character {bad.start() + 1} must be followed by "
            "0 (for '~') or 1 (for '/')"
        )
    tokens = tuple(token.replace("~1", "/").replace("~0", "~") for token in key[1:].split("/"))
    if tokens[0] == "":
        raise ValueError(f"{key[:100]!r} starts with an empty claim name ('/' alone or '//')")
    return ClaimPath(key, tokens)


def distributed(claims: Mapping[str, Any], top: str) -> bool:
    """Whether the token says it left the top-level claim ``top`` out, to be fetched elsewhere: it lacks it and
    names it in ``_claim_names`` (OpenID Connect's aggregated and distributed claims; Entra ID's groups overage),
    or, for ``groups``, carries Entra ID's ``hasgroups: true``.

    Fail closed on a marker in another JSON type than Entra ID writes it (a broker that writes every claim as a
    string): ``hasgroups`` as the string ``"true"`` in any letter case, and a ``_claim_names`` that is not an
    object, which may name any claim the token lacks."""
    if top in claims:
        return False
    names = claims.get("_claim_names")
    if names is not None and (not isinstance(names, Mapping) or top in names):
        return True
    marker = claims.get("hasgroups")
    return top == OVERAGE_CLAIM and (marker is True or (isinstance(marker, str) and marker.lower() == "true"))
