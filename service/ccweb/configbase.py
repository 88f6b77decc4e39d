"""What the policy file's modules share (``ccweb.config``, ``ccweb.webconfig``): the error whose lines name their
keys (``messages`` makes them of pydantic's errors), and the form of an OAuth scope list. A leaf: it imports
neither of them, so they need not import each other both ways."""

from __future__ import annotations

import re

from pydantic import ValidationError

SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")  # RFC 6749 scope-token
CLAIM_KEY_ERROR = "claim_key"
"""The error type of a malformed JSON Pointer among a mapping's keys (``ccweb.claims``): ``messages`` locates it at
the key (``rules[0].claims./a~2: …``), which its context names."""


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


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.startswith("<"):  # "<string>" etc. are union tags, not keys
            text += f".{part}" if text else part
    return text


def messages(error: ValidationError) -> list[str]:
    lines: list[str] = []
    for item in error.errors(include_url=False):
        key = _location(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == CLAIM_KEY_ERROR:  # a malformed pointer among a mapping's keys: located at the key
            key = f"{key}.{item.get('ctx', {}).get('key', '')}"
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        for line in message.splitlines():
            # Checks across fields name their keys: whole-file ones fully, per-rule ones by field.
            if not key:
                text = line
            elif re.match(r"[a-z_][a-z_.]*: ", line):
                text = f"{key}.{line}"
            else:
                text = f"{key}: {line}"
            if text not in lines:
                lines.append(text)
    return lines
