"""Why a token gets, or does not get, a repository: the deny list, then each rule in order, with reasons. Pure.

``explain`` takes its decision from the service's own decision core (``Policy.decide``), so it can never
disagree with the service, and says for every deny entry and rule it looked at why it did
or did not apply: the wrong issuer, a claim missing, a value not equal, a pattern not matching, the
repository outside the rule's globs, the region not matched. Claims are taken as given: the signature and
the expiry are the service's to check; an ``aud`` that is present is compared with the issuer's audiences.

    ExplainError   bad input (claims that are not a JSON object or a JWT, an unknown issuer name, a bad
                   repository or region): ``ccweb explain`` exits 2 with its message
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal
from urllib.parse import urlsplit

from ccweb.claimpath import distributed
from ccweb.claims import Pattern
from ccweb.config import REGION, Config, Issuer
from ccweb.errors import InvalidRequest
from ccweb.identity import MISSING, default_identity
from ccweb.policy import (
    CompiledDeny,
    CompiledRule,
    Condition,
    Decision,
    Distributed,
    Granted,
    Policy,
    Repository,
    Suspended,
    Unidentified,
    Untagged,
)
from ccweb.targets import resolve
from ccweb_helper.hosts import REPOSITORY_NAME_PATTERN, parse_repository_path

REPOSITORY_NAME = re.compile(REPOSITORY_NAME_PATTERN)
DEFAULT_REGION = "us-east-1"
MAX_SHOWN = 120
MAX_CLAIMS_DEPTH = 64
"""The deepest nesting of lists and objects ``parse_claims`` takes: far beyond any token's, and far within what
showing a claim (``json.dumps``, which recurses) can take."""

Outcome = Literal["applies", "does not apply", "cannot be told", "not reached"]


class ExplainError(Exception):
    """The input cannot be explained against: a sentence naming what is wrong."""


@dataclass(frozen=True, slots=True)
class Step:
    """One deny entry or rule, as the decision met it."""

    label: str
    """``deny[0] 'offboarded-eve'``, ``rules[2] 'developers'``."""
    outcome: Outcome
    reasons: tuple[str, ...] = ()
    """Why it does not apply, or cannot be told (empty when it applies or was not reached); when it applies, what
    each JSON Pointer of its conditions found."""


@dataclass(frozen=True, slots=True)
class Explanation:
    repository: str
    region: str
    issuer: Issuer | None
    """The token's issuer entry; None when the service would refuse the token before any rule."""
    refused: str | None
    """Why the service would refuse the token itself (401), when it would."""
    deny: tuple[Step, ...]
    rules: tuple[Step, ...]
    decision: Decision | None
    """What ``Policy.decide`` said; None when the service would refuse the token before deciding."""
    identity: str

    @property
    def granted(self) -> bool:
        return isinstance(self.decision, Granted)

    def lines(self) -> list[str]:
        """The explanation for a person, one line each."""
        where = f"repository {self.repository!r} in {self.region}"
        if self.issuer is None:
            return [where, f"denied: the service refuses this token (401 invalid_token): {self.refused}"]
        lines = [f"{where}; token of issuer {self.issuer.name!r} ({self.issuer.issuer}); identity {self.identity}"]
        if self.refused is not None:
            return [*lines, f"denied: the service refuses this token (401 invalid_token): {self.refused}"]
        lines.append("deny list, checked first:" if self.deny else "deny list: empty")
        lines += _steps(self.deny)
        lines.append("rules, first match wins:" if self.rules else "rules: none")
        lines += _steps(self.rules)
        if isinstance(self.decision, Suspended):
            entry = self.decision.entry
            lines.append(
                f"denied: deny entry {entry.label!r} suspends this identity"
                + (f" ({entry.reason})" if entry.reason else "") + "; the service answers 403 access_denied"
            )
        elif isinstance(self.decision, Granted):
            rule = self.decision.rule
            tags = ", ".join(f"{key}={_shown(value)}" for key, value in self.decision.request.tags)
            lines.append(f"granted: rule {rule.name!r} gives {rule.access} access as {rule.role_arn}, "
                         f"SourceIdentity {self.decision.source_identity}"
                         + (f", session tags {tags}" if tags else ""))
        elif isinstance(self.decision, Unidentified | Untagged | Distributed):
            lines.append(f"denied: {self.decision.sentence('the token')}; the service answers 403 access_denied")
        else:
            lines.append(
                f"denied: no rule grants {self.repository!r} in {self.region}; the service answers 403 access_denied"
            )
        return lines


def _steps(steps: tuple[Step, ...]) -> list[str]:
    lines = []
    for step in steps:
        lines.append(f"  {step.label}: {step.outcome}")
        lines += [f"      - {reason}" for reason in step.reasons]
    return lines


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"


def condition_failure(condition: Condition, claims: Mapping[str, Any]) -> str | None:
    """Why one claim condition does not hold for ``claims``, or None when it holds."""
    name, source = condition.claim, condition.source
    value = condition.found(claims)
    if value is MISSING:
        if distributed(claims, condition.path.top):
            return f"claim {name} {_untold(condition.path.top)}"
        return f"claim {name} is missing"
    if condition.holds(claims):
        return None
    if condition.pattern is not None and isinstance(source, Pattern):
        wanted = f"the pattern '{source.pattern}'"
        if isinstance(value, list):
            return f"claim {name} = {_shown(value)}: no element matches {wanted}"
        if not isinstance(value, str):
            return f"claim {name} = {_shown(value)} is {_kind(value)}; {wanted} matches strings only"
        return f"claim {name} = {_shown(value)} does not match {wanted} (the whole value must match)"
    if isinstance(value, list):
        return f"claim {name} = {_shown(value)}: no element equals {_shown(source)}"
    kinds = f" ({_kind(value)}, not {_kind(source)})" if _kind(value) != _kind(source) else ""
    return f"claim {name} = {_shown(value)}, not equal to {_shown(source)}{kinds}"


def _claims_failures(conditions: tuple[Condition, ...], claims: Mapping[str, Any]) -> list[str]:
    return [r for condition in conditions if (r := condition_failure(condition, claims)) is not None]


def repository_failure(rule: CompiledRule, where: Repository) -> str | None:
    """Why the rule's globs do not cover ``where``, or None when they do."""
    if rule.covers(where):
        return None
    by_name = [glob.text for glob in rule.globs if glob.covers_name(where.repository)]
    if by_name:
        globs = ", ".join(repr(g) for g in by_name)
        return f"region {where.region} is not matched: {where.repository!r} matches {globs} only in another region"
    globs = ", ".join(repr(g.text) for g in rule.globs)
    return f"repository {where.repository!r} is not in its repositories ({globs})"


def rule_failures(rule: CompiledRule, issuer_name: str, claims: Mapping[str, Any], where: Repository) -> list[str]:
    """Why ``rule`` does not grant ``where`` to the token; empty when it does."""
    if rule.issuer != issuer_name:
        return [f"wrong issuer: the rule is for {rule.issuer!r}, the token is from {issuer_name!r}"]
    reasons = _claims_failures(rule.conditions, claims)
    missed = repository_failure(rule, where)
    return reasons if missed is None else [*reasons, missed]


def deny_failures(entry: CompiledDeny, issuer_name: str, claims: Mapping[str, Any]) -> list[str]:
    """Why the deny entry does not suspend the token; empty when it does."""
    if entry.issuer is not None and entry.issuer != issuer_name:
        return [f"wrong issuer: the entry is for {entry.issuer!r}, the token is from {issuer_name!r}"]
    return _claims_failures(entry.conditions, claims)


def token_issuer(config: Config, claims: Mapping[str, Any], name: str | None) -> tuple[Issuer | None, str | None]:
    """The issuer entry the token belongs to: the one named, else the one whose URL is the token's ``iss``.

    Returns (issuer, why the service would refuse the token); ExplainError for an unknown name or no way to tell.
    """
    names = ", ".join(repr(i.name) for i in config.issuers)
    if name is not None:
        issuer = next((i for i in config.issuers if i.name == name), None)
        if issuer is None:
            raise ExplainError(f"--issuer: no issuer is named {name!r} (the configuration has {names})")
        iss = claims.get("iss")
        if iss is not None and iss != issuer.issuer:
            raise ExplainError(f"--issuer {name}: the claims' iss {_shown(iss)} is not that issuer's "
                               f"({issuer.issuer}); leave --issuer out to use the iss")
    else:
        iss = claims.get("iss")
        if not isinstance(iss, str):
            raise ExplainError(f"the claims have no 'iss'; name the issuer with --issuer (one of {names})")
        issuer = next((i for i in config.issuers if i.issuer == iss), None)
        if issuer is None:
            urls = ", ".join(i.issuer for i in config.issuers)
            return None, f"its iss {_shown(iss)} is not a configured issuer ({urls})"
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        return issuer, "it has no sub, or one that is not a non-empty string"
    aud = claims.get("aud")
    if aud is not None:
        values = aud if isinstance(aud, list) else [aud]
        if not any(isinstance(v, str) and v in issuer.audiences for v in values):
            return issuer, f"its aud {_shown(aud)} has none of the audiences of {issuer.name!r}: " + ", ".join(
                issuer.audiences
            )
    return issuer, None


def explain(policy: Policy, claims: Mapping[str, Any], repository: str, region: str,
            issuer_name: str | None = None) -> Explanation:
    """The service's decision for a token with ``claims`` asking for ``region/repository``, with reasons."""
    issuer, refused = token_issuer(policy.config, claims, issuer_name)
    where = Repository(repository, region)
    if issuer is None or refused is not None:
        return Explanation(repository, region, issuer, refused, (), (), None, default_identity(claims))
    decision = policy.decide(issuer.name, claims, where)
    decided_by: CompiledDeny | CompiledRule | None = None
    if isinstance(decision, Suspended):
        decided_by = decision.entry
    elif isinstance(decision, Distributed):
        decided_by = decision.entry or decision.rule
    elif isinstance(decision, Granted | Unidentified | Untagged):
        decided_by = decision.rule
    deny: list[Step] = []
    rules: list[Step] = []
    reached = True
    untold = decision if isinstance(decision, Distributed) else None
    for entry in policy.deny:
        label = f"deny[{entry.index}]" + (f" {entry.source.name!r}" if entry.source.name else "")
        checked_on = untold is not None and entry is untold.entry  # the entries after it are checked: one may suspend
        reached = _step(deny, label, reached, entry is decided_by, partial(deny_failures, entry, issuer.name, claims),
                        found=_found(entry.conditions, claims), untold=untold) or checked_on
    if untold is not None and untold.entry is not None:
        reached = False
    for rule in policy.rules:
        label = f"rules[{rule.index}] {rule.name!r}"
        reached = _step(rules, label, reached, rule is decided_by,
                        partial(rule_failures, rule, issuer.name, claims, where), found=_found(rule.conditions, claims),
                        untold=untold)
    return Explanation(repository, region, issuer, None, tuple(deny), tuple(rules), decision, decision.identity)


def _found(conditions: tuple[Condition, ...], claims: Mapping[str, Any]) -> tuple[str, ...]:
    """What each JSON Pointer of ``conditions`` found (a top-level claim's value is the token's to read)."""
    return tuple(f"claim {c.claim} = {_shown(value)}" for c in conditions
                 if c.path.pointer and (value := c.found(claims)) is not MISSING)


def _step(steps: list[Step], label: str, reached: bool, decides: bool, failures: Callable[[], list[str]], *,
          found: tuple[str, ...], untold: Distributed | None) -> bool:
    """Add one deny entry's or rule's step; whether the next one is still reached."""
    if not reached:
        steps.append(Step(label, "not reached"))
    elif decides and untold is not None:
        reasons = failures() or [f"claim {untold.key} {_untold(untold.claim)}"]
        steps.append(Step(label, "cannot be told", tuple(reasons)))
    elif decides:
        steps.append(Step(label, "applies", found))
    else:
        steps.append(Step(label, "does not apply", tuple(failures())))
    return reached and not decides


def _untold(top: str) -> str:
    return f"cannot be told: the token names {top} as distributed (_claim_names) instead of carrying it"


def parse_claims(text: str) -> dict[str, Any]:
    """A JSON object of claims, or a JWT whose payload is one (decoded, not verified). ``ExplainError`` for
    anything else, JSON nested too deeply included."""
    text = text.strip()
    if re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*", text):
        payload = text.split(".")[1]
        try:
            text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ExplainError("the claims look like a JWT whose payload is not base64url JSON") from None
    too_deep = ExplainError(f"the claims nest arrays or objects more than {MAX_CLAIMS_DEPTH} deep; no token does")
    try:
        claims = json.loads(text)
    except ValueError as exc:
        raise ExplainError(f"the claims are not JSON (or a JWT): {exc}") from None
    except RecursionError:
        raise too_deep from None
    if _depth(claims) > MAX_CLAIMS_DEPTH:
        raise too_deep
    if not isinstance(claims, dict):
        raise ExplainError("the claims must be a JSON object, as a token's payload is")
    return claims


def _depth(value: object) -> int:
    """How deep ``value`` nests lists and objects (a scalar: 0), counted without recursion."""
    deepest, level = 0, [(value, 0)]
    while level:
        item, depth = level.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth + 1)
            level.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def repository_target(config: Config, repo: str, region: str | None) -> tuple[str, str, bool]:
    """(repository, region, whether the region is the default) for ``--repo NAME`` or a clone URL."""
    if "://" in repo:
        try:
            parts = urlsplit(repo)
        except ValueError as exc:  # an unclosed '[', a host that NFKC turns into '/', '#', …
            raise ExplainError(f"--repo: {repo[:100]!r} is not a clone URL: its host cannot be read ({exc})") from None
        try:
            target = resolve(config, parts.scheme, parts.netloc, parts.path)
        except InvalidRequest as exc:
            raise ExplainError(f"--repo: {exc.detail}") from None
        if region is not None and region != target.region:
            raise ExplainError(f"--region {region} contradicts the URL, whose host is in {target.region}")
        return target.repository, target.region, False
    if parse_repository_path(f"/v1/repos/{repo}") != repo:  # the API's own reading of a repository's path
        raise ExplainError(
            f"--repo: {repo[:100]!r} is not a repository name (1-100 letters, digits, '.', '_' or '-'; "
            "not '.' or '..') nor a clone URL"
        )
    if region is None:
        return repo, DEFAULT_REGION, True
    if not REGION.fullmatch(region):
        raise ExplainError(f"--region: {region[:40]!r} is not an AWS region (e.g. us-east-1)")
    return repo, region, False
