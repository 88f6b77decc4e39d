"""``GET /static/<name>``: the page's stylesheet, script and icon, shipped in the package (nothing from elsewhere).

Read once per process; ``ETag`` is the SHA-256 of the bytes (the same on every replica), ``Cache-Control: public,
max-age=3600`` lets a browser keep them an hour, and ``If-None-Match`` with the current tag answers 304.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from ccweb.web.render import message_page

STATIC = Path(__file__).with_name("static")
MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
CACHE_CONTROL = "public, max-age=3600"


@dataclass(frozen=True, slots=True)
class StaticFile:
    content: bytes
    media_type: str
    etag: str


@lru_cache(maxsize=1)
def static_files() -> dict[str, StaticFile]:
    """Every file of ``static/`` the page may ask for, by name."""
    files = {}
    for path in sorted(STATIC.iterdir()):
        media_type = MEDIA_TYPES.get(path.suffix)
        if media_type is not None and path.is_file():
            content = path.read_bytes()
            files[path.name] = StaticFile(content, media_type, f'"{hashlib.sha256(content).hexdigest()[:32]}"')
    return files


async def static_file(request: Request) -> Response:
    """The route's endpoint, for ``/static/{name}`` (GET and HEAD)."""
    found = static_files().get(request.path_params.get("name", ""))
    if found is None:
        return message_page(request, status=404, title="Not found", sentence="There is no such file here.")
    headers = {"ETag": found.etag, "Cache-Control": CACHE_CONTROL}
    tags = [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]
    if found.etag in tags:
        return Response(status_code=304, headers=headers)
    return Response(found.content, media_type=found.media_type, headers=headers)
