"""Text from outside shown on an operator's terminal: every character that could drive the terminal made visible.

Claims come from tokens, names and patterns from policy and case files, values from requests. Shown raw, such
a value can drive the terminal it is shown on: an escape sequence clears the screen, moves the cursor over
earlier lines, sets the window title or plants a hyperlink (OSC 8); a carriage return or a backspace writes
over what came before; a bidi override, a zero-width character or a line separator makes one value read as
another. ``printable`` writes every character that ``str.isprintable`` refuses as a visible escape, the way
``repr`` writes it (``\\x1b``, ``\\r``, ``\\u202e``, ``\\U000e0041``): controls (C0, DEL, C1), format characters
(bidi overrides and isolates, zero-width characters, the byte order mark, the soft hyphen), line and paragraph
separators, spaces other than U+0020, surrogates, private-use and unassigned code points. Letters of every
script stay as they are (``jörg@example.com``), and so does a backslash: ``printable`` may be applied to text
that holds values already quoted with ``repr`` or JSON (it changes nothing printable), and a literal ``\\x1b``
written in a value reads as the escape does. Where the exact value matters, the JSON log has it.

``printable_json`` does the same for a line of JSON, with JSON's own escapes (``\\u001b``), so that the line
is still JSON and decodes to the very same value.
"""

from __future__ import annotations

import json


def _escape(character: str) -> str:
    return repr(character)[1:-1]


def printable(value: object) -> str:
    """``value`` as text in which every character ``str.isprintable`` refuses is written as its escape."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def printable_json(line: str) -> str:
    """A line of JSON with the characters ``printable`` escapes written as JSON escapes: the same JSON value.

    (Outside its strings a JSON line has only printable ASCII, so every such character is inside a string.)
    """
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in line)
