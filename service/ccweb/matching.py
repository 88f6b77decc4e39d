"""What a rule or deny entry matches: its claim conditions and its repository globs, compiled. Pure, no I/O.

    Condition.compile(key, source)   one claim condition; ``key`` a claim name or a JSON Pointer (``ccweb.claimpath``)
    evaluate(conditions, claims)     True, False, or the condition that reads a claim the token left out to be
                                     fetched elsewhere (``distributed``: Entra ID's groups overage), which cannot
                                     be told
    Glob.compile(text)               one ``[region/]name`` glob

A condition holds when the value its key finds is equal to the one it names (the same type: ``true`` is not ``1``
nor ``"true"``) or, for a pattern, a string the pattern matches in full; for a list, when any element does. A
claim the token lacks never matches.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ccweb.claimpath import ClaimPath, claim_path, distributed
from ccweb.claims import ClaimCondition, Pattern, value_pattern
from ccweb.identity import MISSING


@dataclass(frozen=True, slots=True)
class Condition:
    """One claim condition, compiled: the value ``path`` finds must equal ``expected`` (same type), or match
    ``pattern`` in full when it is a string; a list holds when any element does."""

    claim: str
    """The key as the policy file writes it: a claim name, or a JSON Pointer."""
    path: ClaimPath
    source: ClaimCondition
    expected: object
    pattern: re.Pattern[str] | None

    @classmethod
    def compile(cls, claim: str, source: ClaimCondition) -> Condition:
        path = claim_path(claim)
        if isinstance(source, Pattern):
            return cls(claim, path, source, None, re.compile(value_pattern(source.pattern)))
        return cls(claim, path, source, source, None)

    def matches(self, value: object) -> bool:
        """This condition against one value (not a list)."""
        if self.pattern is not None:
            return isinstance(value, str) and self.pattern.fullmatch(value) is not None
        expected = self.expected
        if isinstance(expected, bool) or isinstance(value, bool):
            return expected is value
        return type(expected) is type(value) and expected == value

    @property
    def shown(self) -> str:
        """The condition's value or pattern as JSON (``{"value": 1}``, ``{"pattern": "a.*"}``): 1, true and "1"
        differ."""
        source = self.source
        return json.dumps({"pattern": source.pattern} if isinstance(source, Pattern) else {"value": source})

    def found(self, claims: Mapping[str, Any]) -> object:
        """The value this condition's key finds in ``claims``, or ``MISSING``."""
        return self.path.find(claims)

    def holds(self, claims: Mapping[str, Any]) -> bool:
        value = self.found(claims)
        if value is MISSING:
            return False
        if isinstance(value, list):
            return any(self.matches(item) for item in value)
        return self.matches(value)


def evaluate(conditions: tuple[Condition, ...], claims: Mapping[str, Any]) -> bool | Condition:
    """True when every condition holds; False when one that can be told does not; else the first condition that
    reads a claim the token names as distributed (``ccweb.claimpath.distributed``, Entra ID's groups overage):
    whether it holds cannot be told from the token."""
    unknown: Condition | None = None
    for condition in conditions:
        if condition.holds(claims):
            continue
        if not distributed(claims, condition.path.top):
            return False
        unknown = unknown or condition
    return True if unknown is None else unknown


def all_hold(conditions: tuple[Condition, ...], claims: Mapping[str, Any]) -> bool:
    return evaluate(conditions, claims) is True


@dataclass(frozen=True, slots=True)
class Glob:
    """One ``[region/]name`` glob of a rule; no region part means every region."""

    text: str
    name: re.Pattern[str]
    region: re.Pattern[str] | None

    @classmethod
    def compile(cls, text: str) -> Glob:
        region, _, name = text.rpartition("/")
        return cls(text, re.compile(fnmatch.translate(name)), re.compile(fnmatch.translate(region)) if region else None)

    def covers_name(self, repository: str) -> bool:
        return self.name.match(repository) is not None

    def covers_region(self, region: str) -> bool:
        return self.region is None or self.region.match(region) is not None
