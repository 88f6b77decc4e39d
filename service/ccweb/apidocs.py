"""``GET /docs``: the OpenAPI document as one plain HTML page, made here, with nothing from anywhere else.

FastAPI's own ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a CDN: whoever serves those scripts runs
code in this service's origin (where people paste tokens, and where the sign-in page lives). This page has no
script at all, one inline style allowed by its hash, and a Content-Security-Policy that forbids everything
else; its only link leaves for ``openapi.json`` beside it, for tools that want the document itself. Every
text in it is escaped.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

DOCS_PATH = "/docs"
REF_PREFIX = "#/components/schemas/"
STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}"
    "code{font:13px ui-monospace,monospace;background:#f3f3f3;padding:0 .2em}"
    "table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #ccc;padding:.2rem .5rem;"
    "text-align:left;vertical-align:top}section{border-top:1px solid #ddd;margin-top:1.5rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _anchor(*parts: str) -> str:
    return "-".join("".join(c if c.isalnum() else "-" for c in part) for part in parts).strip("-")


def type_of(schema: dict[str, Any]) -> str:
    """A schema's type as a short HTML phrase: ``string``, ``list of <a>RuleSummary</a>``, ``string or null``."""
    if "$ref" in schema:
        name = str(schema["$ref"]).removeprefix(REF_PREFIX)
        return f'<a href="#{_e(_anchor("schema", name))}">{_e(name)}</a>'
    if "anyOf" in schema:
        return " or ".join(type_of(option) for option in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(f"<code>{_e(value)}</code>" for value in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return "list of " + type_of(schema.get("items", {}))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "map of string to " + type_of(schema["additionalProperties"])
    return _e(kind if schema.get("format") is None else f"{kind} ({schema['format']})")


def _properties(schema: dict[str, Any]) -> Iterator[str]:
    required = set(schema.get("required", []))
    yield "<table><tr><th>field</th><th>type</th><th>required</th><th>what</th></tr>"
    for name, field in schema.get("properties", {}).items():
        yield (f"<tr><td><code>{_e(name)}</code></td><td>{type_of(field)}</td>"
               f"<td>{'yes' if name in required else 'no'}</td><td>{_e(field.get('description', ''))}</td></tr>")
    yield "</table>"


def _body(content: dict[str, Any]) -> str:
    parts = []
    for media, spec in content.items():
        schema = spec.get("schema", {})
        parts.append(f"<code>{_e(media)}</code>" + (f": {type_of(schema)}" if schema else ""))
    return "; ".join(parts)


def _operation(path: str, method: str, operation: dict[str, Any]) -> Iterator[str]:
    yield f'<section id="{_e(_anchor("op", method, path))}">'
    yield f"<h3><code>{_e(method.upper())} {_e(path)}</code></h3><p>{_e(operation.get('summary', ''))}</p>"
    if operation.get("security"):
        yield "<p>Authentication: <code>Authorization: Bearer &lt;OIDC ID token&gt;</code>.</p>"
    body = operation.get("requestBody", {}).get("content", {})
    for media, spec in body.items():
        schema = spec.get("schema", {})
        yield f"<p>Request body (<code>{_e(media)}</code>):</p>"
        yield from _properties(schema) if "properties" in schema else [f"<p>{type_of(schema)}</p>"]
    yield "<table><tr><th>status</th><th>when</th><th>body</th></tr>"
    for status, response in operation.get("responses", {}).items():
        yield (f"<tr><td>{_e(status)}</td><td>{_e(response.get('description', ''))}</td>"
               f"<td>{_body(response.get('content', {}))}</td></tr>")
    yield "</table></section>"


def render(document: dict[str, Any]) -> str:
    """The page for the OpenAPI ``document``: every operation with its answers, then every schema."""
    info = document.get("info", {})
    title = f"{info.get('title', 'API')} {info.get('version', '')}".strip()
    operations = [(path, method, op) for path, item in document.get("paths", {}).items() for method, op in item.items()]
    schemas = document.get("components", {}).get("schemas", {})
    out = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)} API</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1><p>{_e(info.get('description', ''))}</p>",
        '<p>The OpenAPI document itself, for your tools: <a href="openapi.json">openapi.json</a>.</p><ul>',
        *(f'<li><a href="#{_e(_anchor("op", method, path))}"><code>{_e(method.upper())} {_e(path)}</code></a> '
          f"{_e(op.get('summary', ''))}</li>" for path, method, op in operations),
        "</ul><h2>Routes</h2>",
    ]
    for path, method, operation in operations:
        out.extend(_operation(path, method, operation))
    out.append("<h2>Schemas</h2>")
    for name, schema in schemas.items():
        out.append(f'<section id="{_e(_anchor("schema", name))}"><h3>{_e(name)}</h3>')
        out.extend(_properties(schema) if "properties" in schema else [f"<p>{type_of(schema)}</p>"])
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def install_docs(app: FastAPI) -> None:
    """``GET /docs`` on ``app`` (made with ``docs_url=None, redoc_url=None``), rendered once from ``app.openapi()``."""
    page: list[str] = []

    async def docs(request: Request) -> HTMLResponse:
        if not page:
            page.append(render(request.app.openapi()))
        return HTMLResponse(page[0], headers=HEADERS)

    app.add_api_route(DOCS_PATH, docs, methods=["GET"], include_in_schema=False)
