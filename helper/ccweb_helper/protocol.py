"""git's credential protocol: ``key=value`` lines in, ``key=value`` lines out. Pure, no I/O.

Tolerant of what git (any version) sends: unknown keys are kept, ``key[]`` keys (``capability[]``,
``wwwauth[]``) collect every value, lines without ``=`` are ignored, and reading stops at a blank line.
Output is LF-only, and a value that would break the protocol (a newline or NUL) is refused.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


class Request:
    """The attributes git sent: single values in ``fields``, ``key[]`` values in ``lists``."""

    def __init__(self, fields: dict[str, str], lists: dict[str, list[str]]) -> None:
        self.fields = fields
        self.lists = lists

    def get(self, key: str) -> str:
        return self.fields.get(key, "")


def parse(lines: Iterable[str]) -> Request:
    fields: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            break
        key, sep, value = line.partition("=")
        if not sep or not key:
            continue
        if key.endswith("[]"):
            name = key[:-2]
            if value:
                lists.setdefault(name, []).append(value)
            else:
                lists[name] = []  # an empty value resets the list, as in git
        else:
            fields[key] = value
    return Request(fields, lists)


def format_answer(pairs: Iterable[tuple[str, str]]) -> str:
    out = []
    for key, value in pairs:
        if any(c in key + value for c in "\n\r\0") or "=" in key:
            raise ValueError(f"{key} cannot be passed to git: it contains a line break or NUL")
        out.append(f"{key}={value}\n")
    return "".join(out)
