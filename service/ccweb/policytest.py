"""``ccweb test-policy``: a table of cases checked against the policy, for CI on policy changes. Pure.

    cases:
      - name: alice writes app
        issuer: corp                 # optional when the policy has one issuer
        claims: {sub: alice, groups: [engineering]}
        repository: app
        region: us-east-1            # optional (default us-east-1)
        expect: developers           # a rule name, `denied`, `suspended` or `unidentified`

Each case is decided by ``Policy.decide``, exactly as the service decides a verified token with those claims. A
refusal for a session tag's claim, or for a claim the token left out (Entra ID's groups overage), is ``denied``,
with the sentence that says why.
A case file that does not validate is refused whole, every problem naming its key (``cases[2].expect: …``). A
claim YAML reads as something no JSON token holds (a date, bytes, a set, NaN) is such a problem: the case would
describe no token the service can be sent.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ccweb.config import DENIED, REGION, SUSPENDED, UNIDENTIFIED, ConfigError, messages, read_yaml
from ccweb.explain import DEFAULT_REGION, REPOSITORY_NAME
from ccweb.policy import Distributed, Granted, Policy, Repository, Suspended, Unidentified, Untagged


def _kind(value: object) -> str:
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, set | frozenset):
        return "a set"
    return f"a {type(value).__name__}"


def not_json(value: object) -> str | None:
    """What in ``value`` (a parsed YAML value) no JSON document can hold, and where; None when it is all JSON.
    Each list or mapping is visited once, so YAML's aliases (a "billion laughs") cost no more than their text."""
    seen: set[int] = set()
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        where, item = stack.pop()
        at = f" (at {where})" if where else ""
        if isinstance(item, dict | list):
            if id(item) in seen:
                continue
            seen.add(id(item))
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, inner in pairs:
                if isinstance(item, dict) and not isinstance(key, str):
                    return f"holds a key that is not a string, {key!r}{at}"
                stack.append((f"{where}[{key!r}]", inner))
        elif isinstance(item, float) and not math.isfinite(item):
            return f"holds {item!r}, not a finite number{at}"
        elif not (item is None or isinstance(item, str | int | float)):  # bool is an int
            return f"holds {_kind(item)}{at}, which no token (JSON) can: quote the value"
    return None


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    issuer: str | None = None
    claims: dict[str, Any]
    repository: Annotated[str, Field(pattern=REPOSITORY_NAME.pattern.join("^$"))]
    region: Annotated[str, Field(pattern=REGION.pattern.join("^$"))] = DEFAULT_REGION
    expect: Annotated[str, Field(min_length=1)]

    @field_validator("repository")
    @classmethod
    def _not_a_dot_name(cls, value: str) -> str:
        if value in (".", ".."):
            raise ValueError(f"{value!r} is not a repository name")
        return value

    @field_validator("claims")
    @classmethod
    def _has_a_subject(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("sub"), str) or not value["sub"]:
            raise ValueError("a token's claims have a sub, a non-empty string (the service refuses a token without)")
        for claim, inner in value.items():
            problem = not_json(inner)
            if problem:
                raise ValueError(f"claim {claim!r} {problem}")
        return value


class Cases(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cases: Annotated[list[Case], Field(min_length=1)]


def parse_cases(data: Any, policy: Policy) -> list[Case]:
    """The cases of a parsed YAML document, checked against ``policy``'s issuers and rules; ConfigError else."""
    if not isinstance(data, dict):
        raise ConfigError(["(top level): the cases file must be a mapping with a 'cases' list"])
    try:
        cases = Cases.model_validate(data).cases
    except ValidationError as exc:
        raise ConfigError(messages(exc)) from None
    issuers = [issuer.name for issuer in policy.config.issuers]
    outcomes = {rule.name for rule in policy.rules} | {DENIED, SUSPENDED, UNIDENTIFIED}
    problems = []
    for index, case in enumerate(cases):
        if case.issuer is None and len(issuers) > 1:
            problems.append(f"cases[{index}].issuer: the policy has several issuers ({', '.join(issuers)}); "
                            "name the token's")
        elif case.issuer is not None and case.issuer not in issuers:
            problems.append(f"cases[{index}].issuer: no issuer is named {case.issuer!r}")
        if case.expect not in outcomes:
            problems.append(f"cases[{index}].expect: {case.expect!r} is no rule of the policy, nor "
                            f"{DENIED!r}, {SUSPENDED!r} or {UNIDENTIFIED!r}")
    if problems:
        raise ConfigError(problems)
    return cases


def load_cases(path: str | Path, policy: Policy) -> list[Case]:
    return parse_cases(read_yaml(path, "cases file"), policy)


def outcome(policy: Policy, case: Case) -> tuple[str, str]:
    """What the service decides for the case: (a rule name, ``denied``, ``suspended`` or ``unidentified``; why, as
    words)."""
    issuer = case.issuer or policy.config.issuers[0].name
    decision = policy.decide(issuer, case.claims, Repository(case.repository, case.region))
    if isinstance(decision, Granted):
        return decision.rule.name, f"rule {decision.rule.name!r} grants {decision.rule.access} access"
    if isinstance(decision, Suspended):
        return SUSPENDED, f"deny entry {decision.entry.label!r} suspends {decision.identity}"
    if isinstance(decision, Unidentified):
        return UNIDENTIFIED, decision.sentence("the token")
    if isinstance(decision, Untagged | Distributed):
        return DENIED, decision.sentence("the token")
    return DENIED, f"no rule grants {case.repository!r} in {case.region}"


def differences(policy: Policy, cases: list[Case]) -> list[str]:
    """One line per case whose outcome is not the one expected."""
    lines = []
    for index, case in enumerate(cases):
        got, why = outcome(policy, case)
        if got != case.expect:
            lines.append(f"cases[{index}] {case.name!r}: expected {case.expect}, got {got} ({why})")
    return lines
