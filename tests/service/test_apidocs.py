"""/docs serves nothing from third parties: every URL the page references is of its own origin and answers 200,
it runs no script, its Content-Security-Policy allows nothing else, and it documents every operation."""

from __future__ import annotations

import html.parser
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from ccweb.apidocs import render
from ccweb.app import create_app
from ccweb.config import parse_config
from support import RecordingSTS, serve

POLICY = {"issuers": [{"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]}]}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "srcset", "data", "poster", "background", "cite",
                  "manifest", "xlink:href", "ping"}


class Page(html.parser.HTMLParser):
    """Every URL an HTML page makes a browser load or offer (attributes, and url()/@import in styles), and its tags."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.ids: set[str] = set()
        self._style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._style = tag == "style"
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            elif value and name == "srcset":
                self.urls.extend(part.split()[0] for part in value.split(","))
            elif value and (name in URL_ATTRIBUTES or (name == "content" and "url=" in value.lower())):
                self.urls.append(value)
            elif name == "style" and value:
                self.urls.extend(_style_urls(value))

    def handle_endtag(self, tag: str) -> None:
        self._style = False

    def handle_data(self, data: str) -> None:
        if self._style:
            self.urls.extend(_style_urls(data))


def _style_urls(css: str) -> Iterator[str]:
    for match in re.finditer(r"""url\(\s*['"]?([^'")]+)|@import\s+['"]([^'"]+)""", css):
        yield match.group(1) or match.group(2)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(create_app(parse_config(POLICY), sts=RecordingSTS())) as base:
        yield base


def test_docs_loads_nothing_from_another_origin_and_every_url_answers(url: str) -> None:
    docs = httpx.get(f"{url}/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    page = Page()
    page.feed(docs.text)
    assert page.urls, "the page links at least to the OpenAPI document"
    origin = urlsplit(url)[:2]
    for reference in page.urls:
        target = urljoin(f"{url}/docs", reference)
        assert urlsplit(target)[:2] == origin, f"{reference} is not of the page's origin"
        if not reference.startswith("#"):
            assert httpx.get(target).status_code == 200, reference
        else:
            assert reference[1:] in page.ids, f"{reference} leads nowhere on the page"
    assert {"script", "iframe", "object", "embed", "link", "img", "form"}.isdisjoint(page.tags)
    assert "cdn." not in docs.text and "//" not in "".join(page.urls)


def test_docs_forbids_everything_but_its_own_style(url: str) -> None:
    headers = httpx.get(f"{url}/docs").headers
    policy = {name: sources for name, _, sources in
              (directive.partition(" ") for directive in headers["content-security-policy"].split("; "))}
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'" and policy["form-action"] == "'none'"
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/]+=*'", policy["style-src"])
    assert "script-src" not in policy  # default-src 'none' covers it
    assert headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/redoc", "/docs/oauth2-redirect"])
def test_fastapis_pages_that_load_from_a_cdn_are_gone(url: str, path: str) -> None:
    assert httpx.get(f"{url}{path}").status_code == 404


def test_docs_documents_every_operation_and_schema(url: str) -> None:
    document: dict[str, Any] = httpx.get(f"{url}/openapi.json").json()
    text = httpx.get(f"{url}/docs").text
    for path, item in document["paths"].items():
        for method in item:
            assert f"<code>{method.upper()} {path}</code>" in text
    for name in document["components"]["schemas"]:
        assert f"<h3>{name}</h3>" in text
    assert "/docs" not in document["paths"]


def test_everything_the_page_shows_is_escaped() -> None:
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'
    document = {
        "info": {"title": hostile, "version": hostile, "description": hostile},
        "paths": {f"/x{hostile}": {"get": {"summary": hostile, "responses": {"200": {"description": hostile}}}}},
        "components": {"schemas": {hostile: {"properties": {hostile: {"type": hostile, "description": hostile}},
                                             "required": [hostile]}}},
    }
    page = Page()
    page.feed(render(document))
    assert page.tags.count("script") == 0 and "img" not in page.tags
