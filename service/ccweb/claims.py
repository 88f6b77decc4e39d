"""Conditions on a token's claims, as the policy file writes them: a claim name → a string, boolean or integer
to equal, or ``{pattern: <regular expression>}`` to match in full. Validated here; compiled by ``ccweb.policy``."""

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
    """Why ``name`` cannot name a claim in the policy, or None."""
    if name.startswith("/"):
        # Read as a literal top-level name, a pointer would never match: a deny entry written with one would
        # quietly suspend no one.
        return f"{name!r} is a JSON Pointer (a path into nested claims), which this version does not support yet"
    if not CLAIM_NAME.fullmatch(name):
        return f"{name!r} is not a claim name"
    return None


def _claim_names(value: dict[str, Any]) -> dict[str, Any]:
    for name in value:
        problem = claim_name_problem(name)
        if problem:
            raise ValueError(problem)
    return value


ClaimConditions = Annotated[dict[str, ClaimCondition], AfterValidator(_claim_names)]
"""Claim name → condition; every one must hold."""
