"""CI platforms' own OIDC tokens, detected with no configuration."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple


class PlatformToken(NamedTuple):
    token: str
    platform: str


def platform_token(env: Mapping[str, str], audience: Callable[[], str], seconds: float) -> PlatformToken | None:
    return None


def missing_hint(env: Mapping[str, str]) -> str | None:
    return None
