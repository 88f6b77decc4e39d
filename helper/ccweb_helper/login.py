"""Interactive login: authorization code + PKCE or the device flow, with a cache shared by parallel gits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO

from ccweb_helper.client import ServiceURL


def can_prompt(env: Mapping[str, str]) -> bool:
    return False


def token(service: ServiceURL, env: Mapping[str, str], seconds: float, *, stderr: IO[str],
          interactive: bool) -> str | None:
    return None
