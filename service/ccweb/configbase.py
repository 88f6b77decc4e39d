"""What the policy file's modules share (``ccweb.config``, ``ccweb.webconfig``): the error whose lines name their
keys, and the form of an OAuth scope list. A leaf: it imports neither of them, so they need not import each other
both ways."""

from __future__ import annotations

import re

SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")  # RFC 6749 scope-token


class ConfigError(Exception):
    """The configuration is invalid; ``messages`` are ``key: problem`` lines."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


def oauth_scopes(value: list[str], why_openid: str) -> list[str]:
    """``value`` when each is an OAuth scope and ``openid`` is among them (``why_openid`` says why it must be)."""
    for scope in value:
        if not SCOPE.fullmatch(scope):
            raise ValueError(f"{scope!r} is not an OAuth scope")
    if "openid" not in value:
        raise ValueError(f"must include 'openid': {why_openid}")
    return value
