"""Request ids: kept when safe, replaced when hostile, returned in X-Request-ID and on every log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

import httpx
import pytest

from ccweb import logs, requestid
from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.requestid import RequestId
from ccweb.sandbox.issuer import DevIssuer
from support import RecordingSTS, serve, serve_issuer

GENERATED = re.compile(r"[0-9a-f]{32}")
US_EAST_2 = "git-codecommit.us-east-2.amazonaws.com"


def policy(issuer_url: str) -> dict[str, Any]:
    return {
        "issuers": [{"name": "corp", "issuer": issuer_url, "audiences": ["ccweb"]}],
        "rules": [{"name": "everyone", "issuer": "corp", "role_arn": "arn:aws:iam::111122223333:role/ccweb",
                   "repositories": ["*"]}],
    }


def _call(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, dict[bytes, bytes]]:
    """Run one request through RequestId alone: (the id the app saw, the response headers)."""
    seen: list[str | None] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(requestid.current())
        await send({"type": "http.response.start", "status": 204,
                    "headers": [(b"x-request-id", b"from-the-app")]})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    asyncio.run(RequestId(app)({"type": "http", "method": "GET", "path": "/", "headers": headers}, receive, send))
    assert requestid.current() is None  # nothing leaks past the request
    start = sent[0]
    assert [name for name, _ in start["headers"]].count(b"x-request-id") == 1
    return seen[0], dict(start["headers"])


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        pytest.param(b"3f2c9a1e-6b7d-4c1a-9e2f-0a1b2c3d4e5f", True, id="uuid"),
        pytest.param(b"Root=1-67891233-abcdef012345678912345678", True, id="aws-trace-id"),
        pytest.param(b"a" * requestid.MAX_LENGTH, True, id="longest"),
        pytest.param(b"a" * (requestid.MAX_LENGTH + 1), False, id="too-long"),
        pytest.param(b"abc\ndef", False, id="newline"),
        pytest.param(b"abc\r\nSet-Cookie: x=1", False, id="header-injection"),
        pytest.param("caf\u00e9".encode(), False, id="non-ascii-utf8"),
        pytest.param(b"caf\xe9", False, id="non-ascii-latin1"),
        pytest.param(b"", False, id="empty"),
        pytest.param(b"two words", False, id="space"),
        pytest.param(b'"quoted"', False, id="quotes"),
        pytest.param(b"-leading-dash", False, id="leading-dash"),
        pytest.param(b"abc\x00", False, id="nul"),
    ],
)
def test_an_incoming_id_is_kept_only_when_safe(given: bytes, kept: bool) -> None:
    seen, headers = _call([(b"x-request-id", given)])
    assert headers[b"x-request-id"].decode() == seen
    if kept:
        assert seen == given.decode()
    else:
        assert seen is not None and GENERATED.fullmatch(seen)


def test_two_incoming_ids_are_both_replaced() -> None:
    seen, _ = _call([(b"x-request-id", b"one"), (b"x-request-id", b"two")])
    assert seen is not None and GENERATED.fullmatch(seen)


def test_without_an_incoming_id_each_request_gets_a_new_one() -> None:
    first, _ = _call([])
    second, _ = _call([])
    assert first != second
    assert first is not None and GENERATED.fullmatch(first)


def test_text_lines_carry_the_request_id_too() -> None:
    record = logging.LogRecord("ccweb.audit", logging.INFO, __file__, 1, "credential %s", ("issued",), None)
    record.request_id = "abc-123"
    record.fields = {"outcome": "issued"}
    line = logs.TextFormatter().format(record)
    assert line.endswith("ccweb.audit: credential issued request_id=abc-123 outcome=issued")


class Served:
    def __init__(self, url: str, issuer: DevIssuer, sts: RecordingSTS, stream: io.StringIO) -> None:
        self.url, self.issuer, self.sts, self.stream = url, issuer, sts, stream

    def lines(self) -> list[str]:
        """The lines the server logged since the last call."""
        text = self.stream.getvalue()
        self.stream.seek(0)
        self.stream.truncate(0)
        return [line for line in text.splitlines() if line]

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]


@pytest.fixture
def served() -> Iterator[Served]:
    """A fresh app on loopback, with the service's own JSON log handler capturing what its thread logs."""
    stream = io.StringIO()
    handler = logs.handler(stream, "json")
    test_thread = threading.get_ident()
    handler.addFilter(lambda record: record.thread != test_thread)  # not this test's own HTTP client
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with serve_issuer() as issuer:
            sts = RecordingSTS()
            with serve(create_app(parse_config(policy(issuer.issuer_url)), sts=sts)) as url:
                served = Served(url, issuer, sts, stream)
                served.lines()  # start-up
                yield served
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _issue(served: Served, headers: dict[str, str] | None = None) -> httpx.Response:
    token = served.issuer.mint({"sub": "u-1", "email": "dana@example.com"})
    return httpx.post(
        f"{served.url}/v1/credentials",
        json={"protocol": "https", "host": US_EAST_2, "path": "v1/repos/app-web"},
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
    )


def test_every_line_logged_during_a_request_carries_its_id(served: Served) -> None:
    response = _issue(served, {"X-Request-ID": "lb-7f3a9c"})
    assert response.status_code == 200, response.text
    assert response.headers["X-Request-ID"] == "lb-7f3a9c"
    records = served.records()
    # The first request fetches the issuer's keys, assumes the role and writes the audit line.
    assert {"ccweb.tokens", "ccweb.sessions", "ccweb.audit"} <= {r["logger"] for r in records}, records
    assert all(r.get("request_id") == "lb-7f3a9c" for r in records), records
    audit = next(r for r in records if r["logger"] == "ccweb.audit")
    assert audit["outcome"] == "issued" and audit["request_id"] == "lb-7f3a9c"


def test_a_generated_id_is_the_one_in_the_header_and_the_audit_line(served: Served) -> None:
    response = _issue(served, {"X-Request-ID": "x" * 500})
    assert response.status_code == 200
    generated = response.headers["X-Request-ID"]
    assert GENERATED.fullmatch(generated)
    lines = served.lines()
    assert "x" * 129 not in "\n".join(lines)
    audit = [json.loads(line) for line in lines if '"ccweb.audit"' in line]
    assert [r["request_id"] for r in audit] == [generated]


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param(b"\xc3\xa9t\xc3\xa9", id="non-ascii"),
        pytest.param(b"a" * 129, id="too-long"),
        pytest.param(b"id;drop", id="semicolon"),
    ],
)
def test_a_hostile_id_is_never_echoed_nor_logged(served: Served, hostile: bytes) -> None:
    token = served.issuer.mint({"sub": "u-1", "email": "dana@example.com"})
    response = httpx.get(f"{served.url}/v1/whoami",
                         headers=[(b"authorization", f"Bearer {token}".encode()), (b"x-request-id", hostile)])
    assert response.status_code == 200
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])
    text = "\n".join(served.lines())
    assert hostile.decode("latin-1") not in text and hostile.decode("utf-8", "replace") not in text


REFUSALS = {
    "refused-before-routing": ("POST", "/v1/credentials", b"protocol=https", "text/plain", 415),
    "not-found": ("GET", "/no/such/endpoint", None, "text/plain", 404),
    "no-token": ("POST", "/v1/credentials", b"{}", "application/json", 401),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refusals_carry_the_id_too(served: Served, case: str) -> None:
    method, path, body, media, status = REFUSALS[case]
    response = httpx.request(method, f"{served.url}{path}", content=body,
                             headers={"X-Request-ID": "refused-1", "Content-Type": media})
    assert response.status_code == status
    assert response.headers["X-Request-ID"] == "refused-1"


def test_an_unexpected_error_answers_and_logs_with_the_id(served: Served) -> None:
    served.sts.fail = RuntimeError("a bug")
    response = _issue(served, {"X-Request-ID": "bug-report-42"})
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert response.headers["X-Request-ID"] == "bug-report-42"
    failure = [r for r in served.records() if r["logger"] == "ccweb.app"]
    assert failure and all(r["request_id"] == "bug-report-42" for r in failure), failure
