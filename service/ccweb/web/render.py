"""The page's HTML: one Jinja2 environment over the package's own templates, autoescaping always.

    render(request, "page.html", {...})                      → HTMLResponse
    message_page(request, status=400, title=…, sentence=…)   → HTMLResponse: one sentence and a way back

Every value a template shows is escaped (a claim holding ``<script>`` shows as text; a lone surrogate, which UTF-8
cannot carry, as U+FFFD); templates carry no inline script or style (the page's CSP is ``default-src 'self'``),
only ``static/ccweb.css`` and ``static/copy.js``.
Links are written under the page's base path: the path of ``web.public_url`` when it has one (a service
behind a proxy at ``https://host/ccweb``), else the request's ``root_path``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ccweb import __version__

TEMPLATES = Path(__file__).with_name("templates")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def spans(text: str) -> list[tuple[str, bool]]:
    """``text`` cut at its backquotes: (part, whether it is a `code` span), as the docs write code in prose."""
    return [(part, index % 2 == 1) for index, part in enumerate(text.split("`")) if part]


@lru_cache(maxsize=1)
def environment() -> Environment:
    """Templates compiled once per process; ``StrictUndefined``: a missing value is an error, never blank."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["spans"] = spans
    return env


def link_base(request: Request, public_url: str | None) -> str:
    """The path the page's links start with, without a trailing slash (``""`` at the root): ``public_url``'s,
    else the request's ``root_path``."""
    if public_url:
        return urlsplit(public_url).path.rstrip("/")
    root = request.scope.get("root_path", "")
    return root.rstrip("/") if isinstance(root, str) else ""


def base_path(request: Request) -> str:
    """``link_base`` for the running policy's ``web.public_url`` (``app.state.policy``, when the app has one)."""
    running = getattr(request.app.state, "policy", None) if "app" in request.scope else None
    config = getattr(getattr(running, "current", None), "config", None)
    public_url = getattr(getattr(config, "web", None), "public_url", None)
    return link_base(request, public_url if isinstance(public_url, str) else None)


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """``templates/<name>`` with ``context`` (plus ``version``, and ``base`` unless ``context`` has it: see
    ``base_path``) as a page answering ``status``."""
    values = {"version": __version__, **context}
    values.setdefault("base", base_path(request))
    html = environment().get_template(name).render(values)
    return HTMLResponse(encodable(html), status_code=status)


def encodable(text: str) -> str:
    """``text`` as UTF-8 can carry it: each lone surrogate (a claim's JSON may escape one, ``"\\ud800"``, and
    Python reads it as it is) as U+FFFD, the replacement character, rather than an error answering 500."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def message_page(request: Request, *, status: int, title: str, sentence: str) -> Response:
    """A page of one sentence (a failed sign-in, a refused sign-out) with a link back to the main page."""
    return render(request, "message.html", {"title": title, "sentence": sentence}, status)
