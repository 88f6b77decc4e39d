"""The files the service hands out (the helper as a zipapp, ``ccweb.helper_dist``; the helper in ``sh``,
``ccweb.shell_dist``) and, beside each, its SHA-256 in ``sha256sum``'s format (``GET <path>.sha256``).

A ``Download`` is made once per process from the bytes it serves: its ``sha256`` is computed there, from
``content``, and the ETag and the checksum file are both read off that one value, so the checksum can never
describe other bytes than the route sends. Every replica builds the same bytes, so all of them answer with the
same ETags. ``If-None-Match`` naming the current ETag is a 304, for the file and for its checksum.
"""

from __future__ import annotations

import hashlib
from typing import Final, NamedTuple

from starlette.responses import Response

CHECKSUM_SUFFIX: Final = ".sha256"
"""A download's checksum is served at its path with this suffix: ``/helper/ccweb-helper.sha256``."""
CACHE_CONTROL: Final = "public, max-age=300"
TEXT: Final = "text/plain; charset=utf-8"


class Download(NamedTuple):
    name: str
    """The file's name: in ``Content-Disposition`` and in the checksum line (``sha256sum -c`` opens this file)."""
    content: bytes
    media_type: str
    disposition: str
    """``attachment`` (save it) or ``inline`` (a browser shows a script, to read before running it)."""
    sha256: str
    """The SHA-256 of ``content`` in lower-case hex, computed once, by ``make_download``."""

    @property
    def etag(self) -> str:
        """Strong: the SHA-256 of ``content``, quoted."""
        return f'"{self.sha256}"'

    @property
    def checksum(self) -> bytes:
        """``<sha256>  <name>`` and a newline: one line ``sha256sum -c`` reads (text mode, two spaces)."""
        return f"{self.sha256}  {self.name}\n".encode("ascii")


def make_download(name: str, content: bytes, media_type: str, disposition: str) -> Download:
    """The download of ``content``, its SHA-256 computed here: the one place it is."""
    if not name or any(c in name for c in "/\\\n\r\"") or not name.isascii() or not name.isprintable():
        raise ValueError(f"not a file name a checksum line or Content-Disposition can carry: {name!r}")
    return Download(name, content, media_type, disposition, hashlib.sha256(content).hexdigest())


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (a list, weak or strong, or ``*``), as RFC 9110 reads it."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _answer(body: bytes, media_type: str, headers: dict[str, str], if_none_match: str | None) -> Response:
    headers = {**headers, "Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}
    if etag_matches(if_none_match, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def file_response(download: Download, if_none_match: str | None) -> Response:
    """The answer to ``GET <path>``: the file, or 304 when ``If-None-Match`` names it."""
    return _answer(download.content, download.media_type, {
        "ETag": download.etag, "Content-Disposition": f'{download.disposition}; filename="{download.name}"',
    }, if_none_match)


def checksum_response(download: Download, if_none_match: str | None) -> Response:
    """The answer to ``GET <path>.sha256``: the file's checksum line as ``text/plain`` (ETag: the SHA-256 of that
    line), or 304 when ``If-None-Match`` names it."""
    line = download.checksum
    return _answer(line, TEXT, {
        "ETag": f'"{hashlib.sha256(line).hexdigest()}"',
        "Content-Disposition": f'inline; filename="{download.name}{CHECKSUM_SUFFIX}"',
    }, if_none_match)
