"""Who a verified token names: the person or job behind it, as the policy's rules read it. Pure, no I/O.

    default_identity(claims)   a verified ``email`` that looks like an address, else ``sub``: where a rule names
                               no ``source_identity``
    claim_identity(value)      a rule's ``source_identity`` claim as an identity, or None when it names no one
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MISSING = object()
"""What ``claims.get(name, MISSING)`` gives for a claim the token does not carry (null is a value)."""


def email_verified(claims: Mapping[str, Any]) -> bool:
    """Whether the token's ``email`` may name its holder: ``email_verified`` is true (``true``, or the string
    ``"true"`` in any letter case: ``"True"``, ``"TRUE"``), or absent (many IdPs leave it out). Any other value
    (``false``, ``"false"``, ``1``, null, …) says it is not verified."""
    value = claims.get("email_verified", MISSING)
    return value is MISSING or value is True or (isinstance(value, str) and value.lower() == "true")


def looks_like_an_address(email: str) -> bool:
    """Whether ``email`` looks like an e-mail address: printable, no whitespace (of any script), and one ``@``
    with something before and after it. Not a validation of the address (the IdP vouches for it); enough that a
    blank or invisible value (``" "``, a tab, U+3000, U+200B) never names anyone."""
    local, _, domain = email.partition("@")
    # isprintable() refuses every separator and control character but U+0020: no whitespace is then a space.
    return bool(local) and bool(domain) and "@" not in domain and email.isprintable() and " " not in email


def default_identity(claims: Mapping[str, Any]) -> str:
    """The verified person or job where no rule names a claim for it: ``email`` when it is a string that looks
    like an address (``looks_like_an_address``) and that ``email_verified`` does not deny, else ``sub``. Two
    people whose tokens carry the same blank ``email`` so stay two identities."""
    email = claims.get("email")
    if isinstance(email, str) and looks_like_an_address(email) and email_verified(claims):
        return email
    return str(claims.get("sub", ""))


def claim_identity(value: object) -> str | None:
    """A claim's value as the identity of a person or job: a string with a visible character, as it is; an
    integer (not a boolean), in decimal. None for anything else (missing, blank or invisible — spaces, U+200B —,
    a list, an object, a boolean, a float, null), which names no one."""
    if isinstance(value, str):
        return value if any(c.isprintable() and not c.isspace() for c in value) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def held_as(value: object) -> str:
    """What a claim holds that ``claim_identity`` refuses, as words."""
    if isinstance(value, str):
        return "an empty string" if not value else "a string with no visible character"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__
