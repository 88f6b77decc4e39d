"""What a web session keeps of a verified token's claims, so that ``Policy.decide`` answers on them exactly as on
all of them, and a member of hundreds of groups fits a cookie. Pure, no I/O.

    Kept.of(paths kept whole, conditions)   the shape, as a tree of claim paths (``ccweb.claimpath``)
    Kept.keep(claims)                       the claims pruned to it
    Kept.material()                         what the shape depends on, for its digest

Kept whole: the sign-in's own claims, every ``source_identity`` and session tag claim, and the markers of claims
left out to be fetched elsewhere (``_claim_names``, ``hasgroups``: Entra ID's groups overage), so that a refusal
for a distributed claim is the same on the page. Along a JSON Pointer, a pruned copy of each object on the way.
Where a condition reads a list, only the elements some condition on it accepts (a condition on a list holds when
an element does); a list a path goes through by index is kept whole, so its indexes stay. A claim the token
carries is never dropped from a level a path reads: its presence is what tells a distributed claim apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ccweb.claimpath import ClaimPath
from ccweb.matching import Condition

MARKERS = ("_claim_names", "hasgroups")
"""Top-level claims that say a claim was left out of the token (``ccweb.claimpath.distributed``)."""


@dataclass(slots=True)
class Kept:
    """One level of the shape: what of the value at a path is kept."""

    whole: bool = False
    conditions: list[Condition] = field(default_factory=list)
    children: dict[str, Kept] = field(default_factory=dict)

    @classmethod
    def of(cls, whole: Iterable[ClaimPath], conditions: Iterable[Condition]) -> Kept:
        root = cls()
        for path in whole:
            root._node(path).whole = True
        for condition in conditions:
            root._node(condition.path).conditions.append(condition)
        return root

    def _node(self, path: ClaimPath) -> Kept:
        node = self
        for token in path.tokens:
            node = node.children.setdefault(token, Kept())
        return node

    def keep(self, claims: Mapping[str, Any]) -> dict[str, Any]:
        """``claims`` pruned to this shape (the root: the claims object), with the ``MARKERS`` the token carries."""
        kept = {name: child.prune(claims[name]) for name, child in self.children.items() if name in claims}
        return kept | {name: claims[name] for name in MARKERS if name in claims}

    def prune(self, value: object) -> object:
        if self.whole:
            return value
        if isinstance(value, list):
            if self.children or not self.conditions:
                return value  # a path reads an element by index: the elements keep their places
            return [item for item in value if any(c.matches(item) for c in self.conditions)]
        if isinstance(value, Mapping) and self.children and not self.conditions:
            return {name: child.prune(value[name]) for name, child in self.children.items() if name in value}
        return value

    def material(self) -> dict[str, Any]:
        """What the shape depends on: ``whole``, the paths kept whole, and ``conditions``, each other path a
        condition reads → the set of its conditions (``{"value": …}`` or ``{"pattern": …}`` as JSON: 1, true and "1"
        differ). A top-level claim is named as itself, a deeper one as a JSON Pointer (the ``MARKERS`` are kept
        whatever the policy, and are not named)."""
        whole: list[str] = []
        conditions: dict[str, list[str]] = {}
        for tokens, node in self._levels(()):
            key = tokens[0] if len(tokens) == 1 and not tokens[0].startswith("/") else "/" + "/".join(
                token.replace("~", "~0").replace("/", "~1") for token in tokens)
            if node.whole:
                whole.append(key)
            elif node.conditions:
                conditions[key] = sorted({condition.shown for condition in node.conditions})
        return {"whole": sorted(whole), "conditions": conditions}

    def _levels(self, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Kept]]:
        for name, child in self.children.items():
            yield (*prefix, name), child
            if not child.whole:
                yield from child._levels((*prefix, name))
