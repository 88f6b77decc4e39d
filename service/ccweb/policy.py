"""The decision core: the policy file compiled once into an immutable ``Policy`` with one ``decide()``.

    Policy.decide(issuer, claims, where)   → Granted | Unidentified | Suspended | NoRule
    Policy.decide(issuer, claims, None)    → Entitled | Suspended | NoRule   (every repository: /v1/whoami)

The deny list is checked first: an entry matches a verified token when the token comes from the entry's
issuer (any issuer, if it names none) and every claim condition holds, and then it refuses everything,
whatever the rules say. Then the rules, in file order, first match wins: a rule matches when the token comes
from its issuer and every claim condition holds (exact value of the same type, or a full-match pattern on a
string; for a list-valued claim, any element; a missing claim never matches), and it grants a repository
when one of its ``[region/]name`` globs covers it, as the person or job its ``source_identity`` claim names
(Unidentified when the token lacks that claim: no other claim stands in for it), else as the default identity
(a verified ``email``, else ``sub``).

Every surface that decides (the credentials route, ``/v1/whoami``, ``ccweb explain``) calls only
``decide``. Compiling checks nothing the models have not checked already; it precomputes what every request
would otherwise recompute: the matchers, each rule's session policy, duration, identity claims and the
fingerprint that keys its cached STS sessions. Pure: no I/O.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, overload

from ccweb.claims import ClaimCondition, Pattern, value_pattern
from ccweb.config import Config, DenyEntry, Rule
from ccweb.iam import session_policy, sts_name
from ccweb.identity import MISSING, claim_identity, default_identity, held_as
from ccweb.sts import AssumeRoleRequest

SIGN_IN_CLAIMS = ("iss", "sub", "aud", "azp", "exp", "email", "email_verified", "name", "preferred_username")
"""The claims a web session keeps whatever the rules say (``Policy.kept_claims``): who signed in, and for whom."""

SessionKey = tuple[str, str, str]
"""(the rule's ``name#fingerprint``, issuer name, identity): what a cached STS session is for."""


class Where(Protocol):
    """A repository in a region: what ``decide`` is asked about."""

    @property
    def repository(self) -> str: ...

    @property
    def region(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Repository:
    repository: str
    region: str


@dataclass(frozen=True, slots=True)
class Condition:
    """One claim condition, compiled: the claim must be present and equal ``expected`` (same type), or match
    ``pattern`` in full when it is a string; a list-valued claim holds when any element does."""

    claim: str
    source: ClaimCondition
    expected: object
    pattern: re.Pattern[str] | None

    @classmethod
    def compile(cls, claim: str, source: ClaimCondition) -> Condition:
        if isinstance(source, Pattern):
            return cls(claim, source, None, re.compile(value_pattern(source.pattern)))
        return cls(claim, source, source, None)

    def matches(self, value: object) -> bool:
        """This condition against one claim value (not a list)."""
        if self.pattern is not None:
            return isinstance(value, str) and self.pattern.fullmatch(value) is not None
        expected = self.expected
        if isinstance(expected, bool) or isinstance(value, bool):
            return expected is value
        return type(expected) is type(value) and expected == value

    def holds(self, claims: Mapping[str, Any]) -> bool:
        value = claims.get(self.claim, MISSING)
        if value is MISSING:
            return False
        if isinstance(value, list):
            return any(self.matches(item) for item in value)
        return self.matches(value)


def _all_hold(conditions: tuple[Condition, ...], claims: Mapping[str, Any]) -> bool:
    return all(condition.holds(claims) for condition in conditions)


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


@dataclass(frozen=True, slots=True)
class CompiledDeny:
    index: int
    label: str
    """The entry's ``name``, else ``deny[<index>]``: what the audit line and the log call it."""
    issuer: str | None
    conditions: tuple[Condition, ...]
    source: DenyEntry

    @property
    def reason(self) -> str | None:
        return self.source.reason

    def applies(self, issuer: str, claims: Mapping[str, Any]) -> bool:
        return (self.issuer is None or self.issuer == issuer) and _all_hold(self.conditions, claims)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    index: int
    name: str
    issuer: str
    role_arn: str
    access: str
    conditions: tuple[Condition, ...]
    globs: tuple[Glob, ...]
    identity_claim: str | None
    """The rule's ``source_identity`` claim; None: the default identity."""
    session_policy: str
    duration_seconds: int
    session_key: str
    """``<name>#<fingerprint>``: the fingerprint covers the rule, its issuer entry and its session duration, so
    sessions cached for a rule that changed are never served for the new one."""
    source: Rule

    def matches(self, issuer: str, claims: Mapping[str, Any]) -> bool:
        return self.issuer == issuer and _all_hold(self.conditions, claims)

    def covers(self, where: Where) -> bool:
        return any(glob.covers_name(where.repository) and glob.covers_region(where.region) for glob in self.globs)

    def identity(self, claims: Mapping[str, Any]) -> str | None:
        """The person or job this rule names: its ``source_identity`` claim (None when the token does not carry
        it as an identity, see ``claim_identity``), else the default identity."""
        if self.identity_claim is None:
            return default_identity(claims)
        return claim_identity(claims.get(self.identity_claim))


@dataclass(frozen=True, slots=True)
class Granted:
    """A rule grants the repository: what to ask STS for and under which key to cache it."""

    rule: CompiledRule
    identity: str
    source_identity: str
    session_key: SessionKey
    request: AssumeRoleRequest


@dataclass(frozen=True, slots=True)
class Entitled:
    """Without a repository: the rules that match the token, in order (never empty), and the name each would
    give STS as SourceIdentity and RoleSessionName (None where the token lacks the rule's ``source_identity``
    claim, so a request that rule decides is Unidentified)."""

    rules: tuple[CompiledRule, ...]
    identity: str
    names: tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class Suspended:
    """A deny entry matches the token: nothing is granted."""

    entry: CompiledDeny
    identity: str


@dataclass(frozen=True, slots=True)
class NoRule:
    """No rule grants the repository (or, without one, no rule matches the token)."""

    identity: str


@dataclass(frozen=True, slots=True)
class Unidentified:
    """The rule that grants the repository takes the SourceIdentity from a claim (its ``source_identity``) that
    the token does not carry as an identity: nothing is granted, and no other claim stands in for it."""

    rule: CompiledRule
    claim: str
    held: str | None
    """What the token holds in the claim instead (``a list``, ``an empty string``, …); None when it lacks it."""
    identity: str
    """The default identity (``default_identity``): who was refused, for the audit line and the sentence."""

    def sentence(self, whose: str) -> str:
        """``rule 'r' takes the SourceIdentity from the claim "x", which <whose> does not carry``."""
        held = ("does not carry" if self.held is None
                else f"carries as {self.held}, not as a non-empty string or an integer")
        return f'rule {self.rule.name!r} takes the SourceIdentity from the claim "{self.claim}", which {whose} {held}'


Decision = Granted | Unidentified | Suspended | NoRule


def _grant(rule: CompiledRule, issuer: str, claims: Mapping[str, Any]) -> Granted | Unidentified:
    """What ``rule``, which grants the repository, asks STS for; Unidentified when it cannot name the token's
    holder. The one name ``sts_name`` makes is both the SourceIdentity and the RoleSessionName."""
    claim = rule.identity_claim
    if claim is None:
        identity = default_identity(claims)
    else:
        value = claims.get(claim, MISSING)
        found = claim_identity(value)
        if found is None:
            return Unidentified(rule, claim, None if value is MISSING else held_as(value), default_identity(claims))
        identity = found
    name = sts_name(identity)
    return Granted(
        rule=rule,
        identity=identity,
        source_identity=name,
        session_key=(rule.session_key, issuer, identity),
        request=AssumeRoleRequest(
            role_arn=rule.role_arn,
            session_name=name,
            source_identity=name,
            policy=rule.session_policy,
            duration_seconds=rule.duration_seconds,
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
    _kept_digests: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    @overload
    def decide(
        self, issuer: str, claims: Mapping[str, Any], where: Where
    ) -> Granted | Unidentified | Suspended | NoRule: ...

    @overload
    def decide(self, issuer: str, claims: Mapping[str, Any], where: None) -> Entitled | Suspended | NoRule: ...

    def decide(
        self, issuer: str, claims: Mapping[str, Any], where: Where | None
    ) -> Granted | Unidentified | Entitled | Suspended | NoRule:
        """The decision for a verified token from ``issuer`` with ``claims`` asking for ``where`` (None: for
        every repository at once). The deny list first, then the first rule that matches and covers ``where``.

        Without ``where`` the identity shown is the first matching rule's, or the default identity when the token
        lacks that rule's ``source_identity`` claim (a request the rule decides is then Unidentified)."""
        for entry in self.deny:
            if entry.applies(issuer, claims):
                return Suspended(entry, default_identity(claims))
        if where is None:
            rules = tuple(rule for rule in self.rules if rule.matches(issuer, claims))
            if rules:
                identities = tuple(rule.identity(claims) for rule in rules)
                names = tuple(sts_name(identity) if identity is not None else None for identity in identities)
                return Entitled(rules, identities[0] or default_identity(claims), names)
            return NoRule(default_identity(claims))
        for rule in self.rules:
            if rule.matches(issuer, claims) and rule.covers(where):
                return _grant(rule, issuer, claims)
        return NoRule(default_identity(claims))

    def rule_named(self, name: str) -> CompiledRule | None:
        return next((rule for rule in self.rules if rule.name == name), None)

    @property
    def session_keys(self) -> dict[str, str]:
        """Rule name → its part of the session-cache key."""
        return {rule.name: rule.session_key for rule in self.rules}

    def kept_claims(self, issuer: str, claims: Mapping[str, Any]) -> dict[str, Any]:
        """What of a verified token's ``claims`` from ``issuer`` a web session keeps: ``SIGN_IN_CLAIMS`` and every
        ``source_identity`` claim of its rules as they are; every other claim a rule of ``issuer`` or a deny entry
        that can apply to it conditions on, a list with only the elements some condition on it accepts; nothing
        else. ``decide`` answers on these exactly as on ``claims`` (a condition on a list holds when an element
        does, and every element that one accepts is kept), and a member of hundreds of groups fits a cookie."""
        whole, conditions = self._kept_shape(issuer)
        kept: dict[str, Any] = {}
        for name, value in claims.items():
            if name in whole:
                kept[name] = value
            elif name in conditions:
                accepted = conditions[name]
                kept[name] = ([item for item in value if any(c.matches(item) for c in accepted)]
                              if isinstance(value, list) else value)
        return kept

    def kept_claims_digest(self, issuer: str) -> str:
        """SHA-256 of exactly what ``kept_claims(issuer, …)`` depends on: the claims kept whole, and the conditions
        (claim, value or pattern) on every other claim, as sets. A policy with the same digest keeps the same
        claims, so it decides on those kept under this one exactly; with another it may not (a deny entry on a
        claim not kept). Repositories, roles and every other key do not count."""
        if issuer not in self._kept_digests:
            whole, conditions = self._kept_shape(issuer)
            material = {"whole": sorted(whole), "conditions": {
                name: sorted({json.dumps({"pattern": c.source.pattern} if isinstance(c.source, Pattern)
                                         else {"value": c.source}) for c in found})  # 1, true and "1" differ
                for name, found in conditions.items() if name not in whole}}
            self._kept_digests[issuer] = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
        return self._kept_digests[issuer]

    def _kept_shape(self, issuer: str) -> tuple[frozenset[str], dict[str, list[Condition]]]:
        """(the claims kept whole, the conditions on each other claim kept) for a token from ``issuer``."""
        whole = set(SIGN_IN_CLAIMS)
        conditions: dict[str, list[Condition]] = {}
        sources = [entry.conditions for entry in self.deny if entry.issuer in (None, issuer)]
        for rule in self.rules:
            if rule.issuer == issuer:
                sources.append(rule.conditions)
                if rule.identity_claim is not None:
                    whole.add(rule.identity_claim)
        for source in sources:
            for condition in source:
                conditions.setdefault(condition.claim, []).append(condition)
        return frozenset(whole), conditions


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
