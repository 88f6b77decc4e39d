"""The helper in POSIX ``sh``, served at ``GET /helper/ccweb-helper.sh`` for images with git, ``sh`` and ``curl``
but no Python.

Its source is package data, ``ccweb/shell/ccweb-helper.sh``, holding one marker, ``@CODECOMMIT_HOSTS@`` (in the
line ``CODECOMMIT_HOSTS='@CODECOMMIT_HOSTS@'``). ``helper_script`` replaces it by ``codecommit_hosts_ere()``: an
anchored POSIX extended regular expression (``grep -E``) of every CodeCommit host form, made from the git URL
column of ``ccweb_helper.hosts.HOST_FORMS`` — the table the Python helper and the service recognise hosts by —
so the script answers for the same hosts. Built once per process from files of the release: every replica
serves the same bytes under the same strong ``ETag`` (their SHA-256).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache
from importlib.resources import files
from typing import Final, NamedTuple

from starlette.responses import Response

from ccweb_helper.hosts import HOST_FORMS, HostForm

SHELL_HELPER_PATH: Final = "/helper/ccweb-helper.sh"
TEMPLATE: Final = ("shell", "ccweb-helper.sh")
"""The script's source in the ``ccweb`` package."""
MARKER: Final = "@CODECOMMIT_HOSTS@"
CONTENT_TYPE: Final = "text/plain; charset=utf-8"
"""Plain text, so that a browser shows the script to whoever wants to read it before running it."""
LABEL_ERE: Final = "[a-z0-9-]+"
"""What git's ``*`` in a credential URL stands for in a CodeCommit host: one label (a region, an endpoint id)."""
_ERE_SPECIAL = frozenset(".[]()*+?{}|^$\\")


def _ere_literal(text: str) -> str:
    return "".join("\\" + c if c in _ERE_SPECIAL else c for c in text)


def codecommit_hosts_ere(forms: Iterable[HostForm] = HOST_FORMS) -> str:
    """``^(<form>|<form>…)(:443)?$`` over lower-case ``host[:port]``: each form's git URL host with every ``*``
    one label of ``LABEL_ERE`` and every other character literal (dots escaped). It matches every host
    ``parse_codecommit_host`` accepts (lower-cased) and no host outside the forms' shapes (another suffix or
    prefix, a trailing dot, a user name, another port)."""
    alternatives = [LABEL_ERE.join(_ere_literal(part) for part in form.git_url.partition("://")[2].split("*"))
                    for form in forms]
    return "^(" + "|".join(alternatives) + ")(:443)?$"


class Script(NamedTuple):
    content: bytes
    etag: str
    """Strong: the SHA-256 of ``content`` in hex, quoted."""


def build_script(template: str) -> Script:
    """The script made from ``template`` (the source, with ``MARKER`` once); ValueError for another template."""
    if template.count(MARKER) != 1:
        raise ValueError(f"the template of ccweb-helper.sh must hold {MARKER} exactly once, not "
                         f"{template.count(MARKER)} times")
    content = template.replace(MARKER, codecommit_hosts_ere()).encode("utf-8")
    return Script(content, f'"{hashlib.sha256(content).hexdigest()}"')


@lru_cache(maxsize=1)
def _script() -> Script:
    return build_script((files("ccweb") / TEMPLATE[0] / TEMPLATE[1]).read_bytes().decode("utf-8"))


def helper_script() -> bytes:
    """The script as served: its source with the CodeCommit hosts filled in (made once, then kept)."""
    return _script().content


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (a list, weak or strong, or ``*``), as RFC 9110 reads it."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def script_response(if_none_match: str | None) -> Response:
    """The answer to ``GET /helper/ccweb-helper.sh``: the script, or 304 when ``If-None-Match`` names it."""
    script = _script()
    headers = {"ETag": script.etag, "Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff",
               "Content-Disposition": 'inline; filename="ccweb-helper.sh"'}
    if etag_matches(if_none_match, script.etag):
        return Response(status_code=304, headers=headers)
    return Response(script.content, media_type=CONTENT_TYPE, headers=headers)
