"""The decision core: the policy file compiled once into an immutable ``Policy`` with one ``decide()``.

    Policy.decide(issuer, claims, where)   → Granted | Unidentified | Untagged | Distributed | Suspended | NoRule
    Policy.decide(issuer, claims, None)    → Entitled | Distributed | Suspended | NoRule (every repository: whoami)

A claim in a condition, a deny entry, ``source_identity`` or a session tag is a ``ccweb.claimpath.ClaimPath``: a
key starting with ``/`` is an RFC 6901 JSON Pointer into the claims, any other key one top-level claim, verbatim.

The deny list is checked first: an entry matches a verified token when the token comes from the entry's
issuer (any issuer, if it names none) and every claim condition holds, and then it refuses everything,
whatever the rules say. Then the rules, in file order, first match wins: a rule matches when the token comes
from its issuer and every claim condition holds (exact value of the same type, or a full-match pattern on a
string; for a list-valued claim, any element; a missing claim never matches), and it grants a repository
when one of its ``[region/]name`` globs covers it, as the person or job its ``source_identity`` claim names
(Unidentified when the token lacks that claim: no other claim stands in for it), else as the default identity
(a verified ``email``, else ``sub``), with its session tags, each from its claim (Untagged when the token lacks
one, or holds a value no tag can carry: ``ccweb.tags.tag_value``).

A claim the token names as distributed instead of carrying it (``_claim_names``; Entra ID's groups overage:
``ccweb.claimpath.distributed``) cannot be told: a deny entry whose other conditions hold, or a rule that could
decide (its issuer, a repository it covers, its other conditions holding), that reads one is Distributed: nothing
is granted, and the sentence names the claim and the fix.

Every surface that decides (the credentials route, ``/v1/whoami``, ``ccweb explain``, the web page) calls only
``decide``. Compiling checks nothing the models have not checked already; it precomputes what every request
would otherwise recompute: the matchers, each rule's session policy, duration, identity and tag claims and the
fingerprint that keys its cached STS sessions. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from ccweb.claimpath import ClaimPath, claim_path, distributed
from ccweb.config import Config, DenyEntry, Rule
from ccweb.iam import session_policy, sts_name
from ccweb.identity import MISSING, claim_identity, default_identity, held_as
from ccweb.keptclaims import Kept
from ccweb.matching import Condition, Glob
from ccweb.outcomes import (
    CompiledDeny,
    CompiledRule,
    Decision,
    Distributed,
    Entitled,
    Granted,
    NoRule,
    Repository,
    RuleOutcome,
    SessionKey,
    Suspended,
    Unidentified,
    Untagged,
    Where,
)
from ccweb.sts import AssumeRoleRequest
from ccweb.tags import TagValueError, tag_value

__all__ = [
    "SIGN_IN_CLAIMS", "CompiledDeny", "CompiledRule", "Condition", "Decision", "Distributed", "Entitled", "Glob",
    "Granted", "NoRule", "Policy", "Repository", "RuleOutcome", "SessionKey", "Suspended", "Unidentified", "Untagged",
    "Where", "compile_policy", "config_digest", "tags_fingerprint",
]

SIGN_IN_CLAIMS = ("iss", "sub", "aud", "azp", "exp", "email", "email_verified", "name", "preferred_username")
"""The claims a web session keeps whatever the rules say (``Policy.kept_claims``): who signed in, and for whom."""


def tags_fingerprint(tags: tuple[tuple[str, str], ...]) -> str:
    """The session tags' part of a session's cache key: SHA-256 of the (key, value) list; "" without tags."""
    return hashlib.sha256(json.dumps(tags).encode()).hexdigest() if tags else ""


def _grant(rule: CompiledRule, issuer: str, claims: Mapping[str, Any]) -> RuleOutcome:
    """What ``rule``, which matches the token, asks STS for; Distributed when it reads a claim the token left out,
    Unidentified when it cannot name the token's holder, Untagged when a session tag has no value. The one name
    ``sts_name`` makes is both the SourceIdentity and the RoleSessionName."""
    for path in rule.granted_from:
        if distributed(claims, path.top):
            return Distributed(path.top, path.key, None, rule, default_identity(claims))
    if rule.identity_path is None:
        identity = default_identity(claims)
    else:
        value = rule.identity_path.find(claims)
        found = claim_identity(value)
        if found is None:
            return Unidentified(rule, rule.identity_path.key, None if value is MISSING else held_as(value),
                                default_identity(claims))
        identity = found
    tags: list[tuple[str, str]] = []
    for key, path in rule.tags:
        value = path.find(claims)
        if value is MISSING:
            return Untagged(rule, key, path.key, None, identity)
        try:
            tags.append((key, tag_value(value)))
        except TagValueError as exc:
            return Untagged(rule, key, path.key, str(exc), identity)
    name = sts_name(identity)
    return Granted(
        rule=rule,
        identity=identity,
        source_identity=name,
        session_key=(rule.session_key, issuer, identity, tags_fingerprint(tuple(tags))),
        request=AssumeRoleRequest(
            role_arn=rule.role_arn,
            session_name=name,
            source_identity=name,
            policy=rule.session_policy,
            duration_seconds=rule.duration_seconds,
            tags=tuple(tags),
            transitive_tag_keys=rule.transitive_tag_keys,
        ),
    )


def _session_key(rule: Rule, config: Config) -> str:
    material = [
        rule.model_dump(mode="json"),
        config.issuer_named(rule.issuer).model_dump(mode="json"),
        config.session_duration(rule),
    ]
    return f"{rule.name}#{hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]}"


def _compile_rule(index: int, rule: Rule, config: Config) -> CompiledRule:
    return CompiledRule(
        index=index,
        name=rule.name,
        issuer=rule.issuer,
        role_arn=rule.role_arn,
        access=rule.access,
        conditions=tuple(Condition.compile(claim, cond) for claim, cond in rule.claims.items()),
        globs=tuple(Glob.compile(glob) for glob in rule.repositories),
        identity_claim=rule.source_identity,
        identity_path=None if rule.source_identity is None else claim_path(rule.source_identity),
        tags=tuple((key, claim_path(claim)) for key, claim in rule.session_tags.items()),
        transitive_tag_keys=tuple(rule.transitive_session_tags),
        session_policy=session_policy(rule.access, rule.role_arn, rule.account, rule.repositories),
        duration_seconds=config.session_duration(rule),
        session_key=_session_key(rule, config),
        source=rule,
    )


def _compile_deny(index: int, entry: DenyEntry) -> CompiledDeny:
    return CompiledDeny(
        index=index,
        label=entry.name or f"deny[{index}]",
        issuer=entry.issuer,
        conditions=tuple(Condition.compile(claim, cond) for claim, cond in entry.claims.items()),
        source=entry,
    )


@dataclass(frozen=True, slots=True)
class Policy:
    """The policy file, compiled (``compile_policy``). Immutable: a reload compiles a new one."""

    config: Config
    digest: str
    """SHA-256 of the validated configuration (not of the file: comments and layout do not count)."""
    deny: tuple[CompiledDeny, ...]
    rules: tuple[CompiledRule, ...]
    _kept: dict[str, tuple[Kept, str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @overload
    def decide(
        self, issuer: str, claims: Mapping[str, Any], where: Where
    ) -> Granted | Unidentified | Untagged | Distributed | Suspended | NoRule: ...

    @overload
    def decide(
        self, issuer: str, claims: Mapping[str, Any], where: None
    ) -> Entitled | Distributed | Suspended | NoRule: ...

    def decide(
        self, issuer: str, claims: Mapping[str, Any], where: Where | None
    ) -> Granted | Unidentified | Untagged | Distributed | Entitled | Suspended | NoRule:
        """The decision for a verified token from ``issuer`` with ``claims`` asking for ``where`` (None: for
        every repository at once). The deny list first, then the first rule that matches and covers ``where``.

        Without ``where``: every rule that matches (or whose match a distributed claim leaves untold), each with
        what it decides for its repositories; the identity shown is the first such rule's, or the default
        identity when the token lacks that rule's ``source_identity`` claim."""
        untold: Distributed | None = None
        for entry in self.deny:
            told = entry.evaluate(issuer, claims)
            if told is True:
                return Suspended(entry, default_identity(claims))
            if isinstance(told, Condition) and untold is None:  # unless a later entry suspends: it says why
                untold = Distributed(told.path.top, told.claim, entry, None, default_identity(claims))
        if untold is not None:
            return untold
        if where is None:
            return self._entitled(issuer, claims)
        for rule in self.rules:
            if rule.issuer != issuer or not rule.covers(where):
                continue
            told = rule.evaluate(issuer, claims)
            if isinstance(told, Condition):
                return Distributed(told.path.top, told.claim, None, rule, default_identity(claims))
            if told:
                return _grant(rule, issuer, claims)
        return NoRule(default_identity(claims))

    def _entitled(self, issuer: str, claims: Mapping[str, Any]) -> Entitled | NoRule:
        rules: list[CompiledRule] = []
        outcomes: list[RuleOutcome] = []
        for rule in self.rules:
            told = rule.evaluate(issuer, claims)
            if isinstance(told, Condition):
                rules.append(rule)
                outcomes.append(Distributed(told.path.top, told.claim, None, rule, default_identity(claims)))
            elif told:
                rules.append(rule)
                outcomes.append(_grant(rule, issuer, claims))
        if not rules:
            return NoRule(default_identity(claims))
        identities = tuple(rule.identity(claims) for rule in rules)
        names = tuple(sts_name(identity) if identity is not None else None for identity in identities)
        return Entitled(tuple(rules), identities[0] or default_identity(claims), names, tuple(outcomes))

    def rule_named(self, name: str) -> CompiledRule | None:
        return next((rule for rule in self.rules if rule.name == name), None)

    @property
    def session_keys(self) -> dict[str, str]:
        """Rule name → its part of the session-cache key."""
        return {rule.name: rule.session_key for rule in self.rules}

    def kept_claims(self, issuer: str, claims: Mapping[str, Any]) -> dict[str, Any]:
        """What of a verified token's ``claims`` from ``issuer`` a web session keeps (``ccweb.keptclaims``):
        ``SIGN_IN_CLAIMS``, every ``source_identity`` and session tag claim of its rules and the markers of
        distributed claims as they are; along a JSON Pointer, a pruned copy of each object on the way; every
        other claim a rule of ``issuer`` or a deny entry that can apply to it conditions on, a list with only the
        elements some condition on it accepts; nothing else. ``decide`` answers on these exactly as on ``claims``
        (a condition on a list holds when an element does, and every element that one accepts is kept), and a
        member of hundreds of groups fits a cookie."""
        return self._kept_shape(issuer)[0].keep(claims)

    def kept_claims_digest(self, issuer: str) -> str:
        """SHA-256 of exactly what ``kept_claims(issuer, …)`` depends on: the claims kept whole, and the conditions
        (claim, value or pattern) on every other claim, as sets. A policy with the same digest keeps the same
        claims, so it decides on those kept under this one exactly; with another it may not (a deny entry on a
        claim not kept). Repositories, roles and every other key do not count."""
        return self._kept_shape(issuer)[1]

    def _kept_shape(self, issuer: str) -> tuple[Kept, str]:
        """The shape of what is kept for a token from ``issuer``, and its digest."""
        if issuer not in self._kept:
            whole: list[ClaimPath] = [claim_path(name) for name in SIGN_IN_CLAIMS]
            conditions = [condition for entry in self.deny if entry.issuer in (None, issuer)
                          for condition in entry.conditions]
            for rule in self.rules:
                if rule.issuer == issuer:
                    conditions += rule.conditions
                    whole += rule.granted_from
            kept = Kept.of(whole, conditions)
            digest = hashlib.sha256(json.dumps(kept.material(), sort_keys=True).encode()).hexdigest()
            self._kept[issuer] = (kept, digest)
        return self._kept[issuer]


def config_digest(config: Config) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()


def compile_policy(config: Config) -> Policy:
    """``config`` (validated by its models) compiled for ``decide``."""
    return Policy(
        config=config,
        digest=config_digest(config),
        deny=tuple(_compile_deny(index, entry) for index, entry in enumerate(config.deny)),
        rules=tuple(_compile_rule(index, rule, config) for index, rule in enumerate(config.rules)),
    )
