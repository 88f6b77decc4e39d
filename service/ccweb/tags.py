"""STS session tags, as STS takes them (AssumeRole's ``Tags`` and ``TransitiveTagKeys``). Pure, no I/O.

    tag_key_problem(key)     why STS would refuse ``key`` as a tag key, or None
    outside_alphabet(text)   the first character of ``text`` STS allows in no tag key or value, or None
    tag_value(value)         a claim's value as a tag value, or TagValueError saying why it cannot be one

STS's limits: at most 50 session tags; a key of 1-128 characters, a value of 0-256, both of Unicode letters,
separators (spaces), numbers and ``_ . : / = + - @``; keys are compared without regard to case, and ``aws:``
starts none.
"""

from __future__ import annotations

import json
import math
import unicodedata

MAX_SESSION_TAGS = 50
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 256
PUNCTUATION = frozenset("_.:/=+-@")
ALPHABET = "Unicode letters, numbers and spaces, and _ . : / = + - @"


def outside_alphabet(text: str) -> str | None:
    """The first character of ``text`` outside STS's tag alphabet, or None."""
    for char in text:
        if char not in PUNCTUATION and unicodedata.category(char)[0] not in "LZN":
            return char
    return None


def tag_key_problem(key: str) -> str | None:
    """Why STS would refuse ``key`` as a session tag key, or None."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        return f"a tag key has 1 to {MAX_KEY_LENGTH} characters, not {len(key)}"
    char = outside_alphabet(key)
    if char is not None:
        return f"{char!r} is not allowed in a tag key ({ALPHABET})"
    if key.lower().startswith("aws:"):
        return "tag keys starting with 'aws:' are reserved by AWS"
    return None


class TagValueError(ValueError):
    """A claim's value cannot be a tag value; the message says why, in words that follow "the claim X holds"."""


def tag_value(value: object) -> str:
    """A claim's value as STS takes a tag value: a string as it is, an integer or a decimal number in JSON's
    spelling, a boolean as ``true`` or ``false``. TagValueError for a list, an object or null, for a number JSON
    cannot write (NaN, Infinity), and for a value longer than STS allows or with a character outside its alphabet."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int | float):
        text = json.dumps(value)
        # NaN and Infinity (1e309 reads as Infinity): Python's JSON reads them, JSON has neither.
        if isinstance(value, float) and not math.isfinite(value):
            raise TagValueError(f"{text}, which is not a JSON number")
    elif isinstance(value, list):
        raise TagValueError("a list, and a session tag holds one value")
    elif isinstance(value, dict):
        raise TagValueError("an object, and a session tag holds one value")
    else:
        raise TagValueError("null" if value is None else type(value).__name__)
    if len(text) > MAX_VALUE_LENGTH:
        raise TagValueError(f"{len(text)} characters, over STS's limit of {MAX_VALUE_LENGTH} for a tag value")
    char = outside_alphabet(text)
    if char is not None:
        raise TagValueError(f"the character {char!r}, which STS does not allow in a tag value ({ALPHABET})")
    return text
