"""Who may have what: the deny list first, then rules in file order, first match wins. Pure functions, no I/O.

A deny entry matches a verified token when the token comes from the entry's issuer (any issuer, if it
names none) and every claim condition holds; a match refuses everything, whatever the rules say. A rule
matches a verified token when the token comes from the rule's issuer and every claim condition holds
(exact value, or a full-match pattern; for a list-valued claim, any element). It grants a repository
when one of its globs matches ``name`` (and the region, for ``region/name`` globs).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ccweb.config import ClaimCondition, Config, DenyEntry, Pattern, Rule

_STS_NAME_CHARS = re.compile(r"[^\w+=,.@-]", re.ASCII)
STS_NAME_MAX = 64
GIT_PULL, GIT_PUSH = "codecommit:GitPull", "codecommit:GitPush"


@dataclass(frozen=True, slots=True)
class Grant:
    rule: Rule
    identity: str
    """The claim value used for SourceIdentity and the session cache key (before sanitising)."""


def _value_matches(condition: object, value: object) -> bool:
    if isinstance(condition, Pattern):
        return isinstance(value, str) and condition.matches(value)
    if isinstance(condition, bool) or isinstance(value, bool):
        return condition is value
    return type(condition) is type(value) and condition == value


def claim_matches(condition: object, value: object) -> bool:
    """One condition against one claim value; a list-valued claim matches when any element does."""
    if isinstance(value, list):
        return any(_value_matches(condition, item) for item in value)
    return _value_matches(condition, value)


def conditions_hold(conditions: Mapping[str, ClaimCondition], claims: Mapping[str, Any]) -> bool:
    """Every condition holds; a missing claim never matches."""
    return all(name in claims and claim_matches(cond, claims[name]) for name, cond in conditions.items())


def rule_matches_claims(rule: Rule, issuer_name: str, claims: Mapping[str, Any]) -> bool:
    return rule.issuer == issuer_name and conditions_hold(rule.claims, claims)


@dataclass(frozen=True, slots=True)
class Suspension:
    entry: DenyEntry
    label: str
    """The entry's ``name``, else ``deny[<index>]``: what the audit line and the log call it."""


def suspended(config: Config, issuer_name: str, claims: Mapping[str, Any]) -> Suspension | None:
    """The first deny entry that matches the verified token, or None."""
    for index, entry in enumerate(config.deny):
        if (entry.issuer is None or entry.issuer == issuer_name) and conditions_hold(entry.claims, claims):
            return Suspension(entry, entry.name or f"deny[{index}]")
    return None


def identity_for(rule: Rule | None, claims: Mapping[str, Any]) -> str:
    """The verified person or job: the rule's ``source_identity`` claim, else email, else sub."""
    for name in ((rule.source_identity,) if rule and rule.source_identity else ()) + ("email", "sub"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return str(claims.get("sub", ""))


def matching_rules(config: Config, issuer_name: str, claims: Mapping[str, Any]) -> list[Rule]:
    return [rule for rule in config.rules if rule_matches_claims(rule, issuer_name, claims)]


def decide(
    config: Config, issuer_name: str, claims: Mapping[str, Any], repository: str, region: str
) -> Grant | None:
    """The first rule that matches the claims and grants ``region/repository``, or None."""
    for rule in config.rules:
        if rule_matches_claims(rule, issuer_name, claims) and rule.repository_matches(repository, region):
            return Grant(rule, identity_for(rule, claims))
    return None


def sts_name(identity: str) -> str:
    """``identity`` in STS's SourceIdentity/RoleSessionName alphabet, 2..64 characters, stable.

    Characters outside ``[A-Za-z0-9_+=,.@-]`` become ``-`` (so STS's reserved ``aws:`` prefix cannot
    occur); a value that had to be shortened keeps a hash
    of the original so two long identities never share a name.
    """
    name = _STS_NAME_CHARS.sub("-", identity)
    if len(name) > STS_NAME_MAX:
        digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
        name = f"{name[: STS_NAME_MAX - 9]}-{digest}"
    if len(name) < 2:
        name = f"id-{name}" if name else "id-unknown"
    return name


def _partition(role_arn: str) -> str:
    return role_arn.split(":", 2)[1]


def repository_arns(rule: Rule) -> list[str]:
    return _repository_arns(rule.role_arn, rule.account, tuple(rule.repositories))


def _repository_arns(role_arn: str, account: str, repositories: tuple[str, ...]) -> list[str]:
    arns = []
    for glob in repositories:
        region, _, name = glob.rpartition("/")
        arns.append(f"arn:{_partition(role_arn)}:codecommit:{region or '*'}:{account}:{name}")
    return sorted(set(arns))


MAX_SESSION_POLICY = 2048


def actions(access: str) -> list[str]:
    return [GIT_PULL, GIT_PUSH] if access == "write" else [GIT_PULL]


def session_policy(rule: Rule) -> str:
    """The inline session policy: the rule's git actions on its repositories, in the role's account only."""
    return _session_policy(rule.access, rule.role_arn, rule.account, tuple(rule.repositories))


@functools.lru_cache(maxsize=1024)
def _session_policy(access: str, role_arn: str, account: str, repositories: tuple[str, ...]) -> str:
    """Cached: a rule's policy is the same string for every request it grants."""
    resources = _repository_arns(role_arn, account, repositories)
    statement = {"Effect": "Allow", "Action": actions(access), "Resource": resources}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, separators=(",", ":"))


def describe(rules: Iterable[Rule]) -> list[dict[str, Any]]:
    return [
        {"rule": r.name, "role_arn": r.role_arn, "repositories": list(r.repositories), "access": r.access}
        for r in rules
    ]
