"""Conditions on a token's claims, as the policy file writes them: a claim name or a JSON Pointer
(``ccweb.claimpath``) → a string, boolean or integer to equal, or ``{pattern: <regular expression>}`` to match in
full; and a rule's session tags (tag key → claim name or pointer). Validated here; compiled by ``ccweb.policy``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    field_validator,
)
from pydantic_core import PydanticCustomError

from ccweb.claimpath import claim_path
from ccweb.configbase import CLAIM_KEY_ERROR
from ccweb.tags import MAX_SESSION_TAGS, tag_key_problem

CLAIM_NAME = re.compile(r"[A-Za-z0-9_:.\-/]{1,128}")


class Pattern(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


def value_pattern(pattern: str) -> str:
    """``pattern`` as one group, so that a full match covers all its alternatives (``a|b`` is not ``^a|b$``)."""
    return f"(?:{pattern})"


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, dict | Pattern):
        return "<pattern>"
    if isinstance(value, bool):
        return "<boolean>"
    if isinstance(value, int):
        return "<integer>"
    if isinstance(value, str):
        return "<string>"
    return None


ClaimCondition = Annotated[
    Annotated[StrictStr, Tag("<string>")]
    | Annotated[StrictBool, Tag("<boolean>")]
    | Annotated[StrictInt, Tag("<integer>")]
    | Annotated[Pattern, Tag("<pattern>")],
    Discriminator(
        _condition_kind,
        custom_error_type="claim_condition",
        custom_error_message="must be a string, a boolean, an integer or {pattern: <regular expression>}",
    ),
]


def claim_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a claim in the policy (a top-level claim name, or a JSON Pointer when it starts
    with ``/``: ``ccweb.claimpath``), or None."""
    if name.startswith("/"):
        try:
            claim_path(name)
        except ValueError as exc:
            return str(exc)
        return None
    if not CLAIM_NAME.fullmatch(name):
        return f"{name!r} is not a claim name"
    return None


def _claim_names(value: dict[str, Any]) -> dict[str, Any]:
    for name in value:
        problem = claim_name_problem(name)
        if problem and name.startswith("/"):
            raise PydanticCustomError(CLAIM_KEY_ERROR, "{problem}", {"key": name, "problem": problem})
        if problem:
            raise ValueError(problem)
    return value


ClaimConditions = Annotated[dict[str, ClaimCondition], AfterValidator(_claim_names)]
"""Claim name or JSON Pointer → condition; every one must hold."""


def _session_tags(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_SESSION_TAGS:
        raise ValueError(f"{len(value)} session tags, over STS's limit of {MAX_SESSION_TAGS}")
    seen: dict[str, str] = {}
    for key, claim in value.items():
        problem = tag_key_problem(key)
        if problem:
            raise ValueError(f"{key[:130]!r}: {problem}")
        if key.lower() in seen:
            raise ValueError(f"{key!r} and {seen[key.lower()]!r} differ only in case, and STS compares tag keys "
                             "without regard to case")
        seen[key.lower()] = key
        problem = claim_name_problem(claim)
        if problem:
            raise PydanticCustomError(CLAIM_KEY_ERROR, "{problem}", {"key": key, "problem": problem})
    return value


SessionTags = Annotated[dict[str, StrictStr], AfterValidator(_session_tags)]
"""STS session tag key → the claim (name or JSON Pointer) whose value the tag carries."""
