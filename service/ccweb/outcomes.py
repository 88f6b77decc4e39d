"""The compiled deny entries and rules, and what ``Policy.decide`` answers with them. Pure, no I/O.

    Granted        a rule grants the repository: the AssumeRole request (session tags included) and its cache key
    Entitled       without a repository: the rules that match the token, and what each would decide
    Suspended      a deny entry matches the token
    NoRule         no rule grants the repository (or, without one, matches the token)
    Unidentified   the rule that decides takes the SourceIdentity from a claim the token does not carry as one
    Untagged       the rule that decides sends a session tag from a claim the token lacks, or holds as no tag value
    Distributed    a deny entry or the rule that could decide reads a claim the token left out to be fetched
                   elsewhere (Entra ID's groups overage): what it would say cannot be told, so nothing is granted

The refusals' ``sentence(whose)`` say what is wrong in words that follow "The ccweb " (``whose``: "the token",
"your token (subject …)"); the surfaces add what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ccweb.claimpath import OVERAGE_CLAIM, ClaimPath
from ccweb.config import DenyEntry, Rule
from ccweb.identity import claim_identity, default_identity
from ccweb.matching import Condition, Glob, evaluate
from ccweb.sts import AssumeRoleRequest

SessionKey = tuple[str, str, str, str]
"""(the rule's ``name#fingerprint``, issuer name, identity, the session tags' fingerprint: "" without tags): what a
cached STS session is for. ``ccweb.sessions.SessionKey`` is the same."""


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

    def evaluate(self, issuer: str, claims: Mapping[str, Any]) -> bool | Condition:
        """True when the entry suspends the token, False when it does not, else the condition on a distributed
        claim that leaves it untold (``ccweb.matching.evaluate``)."""
        if self.issuer is not None and self.issuer != issuer:
            return False
        return evaluate(self.conditions, claims)

    def applies(self, issuer: str, claims: Mapping[str, Any]) -> bool:
        return self.evaluate(issuer, claims) is True


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
    """The rule's ``source_identity`` claim as written; None: the default identity."""
    identity_path: ClaimPath | None
    tags: tuple[tuple[str, ClaimPath], ...]
    """The rule's ``session_tags``: (tag key, the claim its value comes from), in the rule's order."""
    transitive_tag_keys: tuple[str, ...]
    session_policy: str
    duration_seconds: int
    session_key: str
    """``<name>#<fingerprint>``: the fingerprint covers the rule, its issuer entry and its session duration, so
    sessions cached for a rule that changed are never served for the new one."""
    source: Rule

    def evaluate(self, issuer: str, claims: Mapping[str, Any]) -> bool | Condition:
        """Whether the rule matches the token: True, False, or the condition on a distributed claim that leaves
        it untold (``ccweb.matching.evaluate``)."""
        if self.issuer != issuer:
            return False
        return evaluate(self.conditions, claims)

    def matches(self, issuer: str, claims: Mapping[str, Any]) -> bool:
        return self.evaluate(issuer, claims) is True

    def covers(self, where: Where) -> bool:
        return any(glob.covers_name(where.repository) and glob.covers_region(where.region) for glob in self.globs)

    def identity(self, claims: Mapping[str, Any]) -> str | None:
        """The person or job this rule names: its ``source_identity`` claim (None when the token does not carry
        it as an identity, see ``claim_identity``), else the default identity."""
        if self.identity_path is None:
            return default_identity(claims)
        return claim_identity(self.identity_path.find(claims))

    @property
    def granted_from(self) -> tuple[ClaimPath, ...]:
        """The claims a grant reads besides the conditions': the ``source_identity`` claim, the session tags'."""
        paths = tuple(path for _, path in self.tags)
        return paths if self.identity_path is None else (self.identity_path, *paths)


@dataclass(frozen=True, slots=True)
class Granted:
    """A rule grants the repository: what to ask STS for and under which key to cache it."""

    rule: CompiledRule
    identity: str
    source_identity: str
    session_key: SessionKey
    request: AssumeRoleRequest

    @property
    def tags(self) -> dict[str, str]:
        """The session tags the request carries, key → value."""
        return dict(self.request.tags)


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


@dataclass(frozen=True, slots=True)
class Untagged:
    """The rule that grants the repository sends a session tag whose claim the token lacks, or holds as no value
    a tag can carry (a list, an object, null, too long, a character STS does not allow): nothing is granted,
    and STS is not asked."""

    rule: CompiledRule
    tag: str
    claim: str
    """The claim (name or JSON Pointer) as the rule writes it."""
    held: str | None
    """Why its value cannot be a tag value, in words that follow "the claim holds" (``ccweb.tags.TagValueError``);
    None when the token lacks the claim."""
    identity: str

    def sentence(self, whose: str) -> str:
        """``rule 'r' sends the claim "x" as the session tag 'team', and <whose> …``."""
        sends = f'rule {self.rule.name!r} sends the claim "{self.claim}" as the session tag {self.tag!r}'
        if self.held is None:
            return f"{sends}, which {whose} does not carry"
        return f"{sends}, and in {whose} that claim holds {self.held}"


@dataclass(frozen=True, slots=True)
class Distributed:
    """A deny entry, or the rule that could decide, reads a claim the token names as distributed instead of
    carrying it (``ccweb.claimpath.distributed``; Entra ID's groups overage): nothing is granted. A deny entry
    that cannot be told fails closed; a rule that cannot be told is not skipped for a later one (first match
    wins, and it might have matched)."""

    claim: str
    """The top-level claim the token left out (``groups``)."""
    key: str
    """The claim or JSON Pointer as the policy writes it."""
    entry: CompiledDeny | None
    rule: CompiledRule | None
    identity: str

    @property
    def overage(self) -> bool:
        return self.claim == OVERAGE_CLAIM

    def sentence(self, whose: str, holder: str = "its holder is") -> str:
        """What reads the claim and what the token carries instead, with the fix; ``holder``: "you are" for a
        sentence to the person."""
        reader = (f"rule {self.rule.name!r}" if self.rule is not None
                  else "deny list, checked before every rule,")
        reads = f'{reader} reads the claim "{self.key}"'
        if self.overage:
            return (f"{reads}, but {whose} carries Entra ID's groups overage marker instead of the groups claim "
                    f"({holder} in more groups than a token holds); ask your identity provider's administrators to "
                    "emit only the groups assigned to the application (Entra ID: the app registration's Token "
                    "configuration → groups claim → Groups assigned to the application)")
        return (f"{reads}, but {whose} names the claim \"{self.claim}\" as distributed (_claim_names: to be "
                "fetched from elsewhere) instead of carrying it; ask your identity provider's administrators to "
                "put the claim in the token itself")


RuleOutcome = Granted | Unidentified | Untagged | Distributed
"""What a rule that matches decides for the repositories it covers."""


@dataclass(frozen=True, slots=True)
class Entitled:
    """Without a repository: the rules that match the token (and those whose match a distributed claim leaves
    untold), in order (never empty); the name each would give STS as SourceIdentity and RoleSessionName (None
    where the token lacks the rule's ``source_identity`` claim, so a request that rule decides is Unidentified);
    and what each decides for the repositories it covers (``outcomes``: the session tags of a grant, or the
    refusal)."""

    rules: tuple[CompiledRule, ...]
    identity: str
    names: tuple[str | None, ...]
    outcomes: tuple[RuleOutcome, ...] = ()


Decision = Granted | Unidentified | Untagged | Distributed | Suspended | NoRule
