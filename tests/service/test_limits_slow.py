"""Bodies that would hold a connection: a credential route answers a request without a bearer token before
reading its body, and no body may take longer than ``RequestLimits(body_seconds)`` to arrive (408, closed).

Over raw sockets to a real uvicorn on loopback, as an attacker would send them: a head that announces a large
body, then a byte now and then. (uvicorn's own ``timeout_keep_alive`` runs only between requests.)
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.types import Receive, Scope, Send

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.limits import BODY_SECONDS, RequestLimits
from ccweb.textapi import MAX_TEXT_BODY_BYTES
from support import RecordingSTS, serve

CREDENTIAL_ROUTES = [("/v1/git-credential", MAX_TEXT_BODY_BYTES, "text/plain"),
                     ("/v1/credentials", 8 * 1024, "application/json")]


def port_of(url: str) -> int:
    return urlsplit(url).port or 0


@pytest.fixture(scope="module")
def api() -> Iterator[int]:
    """The app as ``ccweb serve`` builds it, on loopback; no request here gets as far as the issuer or STS."""
    config = parse_config({
        "issuers": [{"name": "corp", "issuer": "http://127.0.0.1:9", "audiences": ["ccweb"]}],
        "rules": [{"name": "all", "issuer": "corp", "role_arn": "arn:aws:iam::111122223333:role/all",
                   "repositories": ["*"]}],
    })
    app = create_app(config, sts=RecordingSTS(fail=AssertionError("no request here gets this far")))
    with serve(app) as url:
        yield port_of(url)


class Raw:
    """One connection, written to byte by byte; ``answer()`` reads what the server sends until it closes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def send(self, data: bytes) -> bool:
        """False once the server has closed its side (it answered early)."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def answered(self, wait: float) -> bool:
        """Whether the server has sent something (or closed) within ``wait`` seconds."""
        self.sock.settimeout(wait)
        try:
            self.sock.recv(1, socket.MSG_PEEK)  # a byte, or b"" when closed
        except TimeoutError:
            return False
        except OSError:
            return True  # reset
        finally:
            self.sock.settimeout(10)
        return True

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body, read to the end of the connection (the server closes it)."""
        data = b""
        while chunk := self.sock.recv(65536):
            data += chunk
        self.sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        return int(lines[0].split()[1]), headers, body


def head(path: str, length: int, content_type: str, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}",
             f"Content-Length: {length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(("path", "limit", "content_type"), CREDENTIAL_ROUTES, ids=["text", "json"])
@pytest.mark.parametrize("authorization", [None, "Basic dXNlcjpwYXNz", "Bearer ", "bearer"],
                         ids=["none", "basic", "empty-bearer", "no-token"])
def test_a_body_without_a_bearer_token_is_answered_before_it_is_read(
        api: int, path: str, limit: int, content_type: str, authorization: str | None) -> None:
    """The reviewer's case: a head announcing the largest body allowed, then one byte; the answer comes at once."""
    extra = [f"Authorization: {authorization}"] if authorization is not None else []
    slow = Raw(api)
    assert slow.send(head(path, limit, content_type, *extra) + b"p")
    assert slow.answered(BODY_SECONDS / 2), "answered without waiting for the body"
    status, headers, body = slow.answer()  # and the connection closed: its body is never read
    # What the same route answers when there is no body to read: the flow's own 401, to the byte.
    whole = Raw(api)
    assert whole.send(head(path, 0, content_type, *extra, "Connection: close"))
    expected_status, expected_headers, expected_body = whole.answer()
    assert status == expected_status == 401
    assert body == expected_body
    assert headers["www-authenticate"] == expected_headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert headers["content-type"] == expected_headers["content-type"]
    assert headers["connection"] == "close"
    if content_type == "text/plain":
        assert body == b"error=invalid_token\ndetail=No bearer token: send 'Authorization: Bearer <OIDC token>'.\n"
    else:
        assert json.loads(body)["error"] == "invalid_token"


# --- the deadline, on a small app behind RequestLimits ---------------------------------------------------------

DEADLINE = 0.5


@pytest.fixture(scope="module")
def limited() -> Iterator[tuple[int, list[bytes]]]:
    """``RequestLimits`` with a short deadline in front of an app that records the bodies it is given."""
    bodies: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        message: dict[str, Any] = dict(await receive())
        bodies.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    limits = RequestLimits(app, text_bodies={"/text": 1024}, bearer_routes=(), body_seconds=DEADLINE)
    with serve(limits) as url:
        yield port_of(url), bodies


@pytest.mark.parametrize(("path", "content_type", "expected"), [
    ("/json", "application/json", b'{"error": "request_timeout", "detail": "The request body did not arrive within '
                                  b'0.5 seconds; send it whole, at once, and try again."}'),
    ("/text", "text/plain", b"error=request_timeout\ndetail=The request body did not arrive within 0.5 seconds; "
                            b"send it whole, at once, and try again.\n"),
], ids=["json", "text"])
def test_a_body_that_trickles_in_is_cut_off_at_the_deadline(limited: tuple[int, list[bytes]], path: str,
                                                             content_type: str, expected: bytes) -> None:
    """A byte every tenth of the deadline, for ten times the deadline: the total counts, not the pauses."""
    port, bodies = limited
    slow = Raw(port)
    assert slow.send(head(path, 1000, content_type))
    sent = 0
    while sent < 100 and not slow.answered(DEADLINE / 10):
        assert slow.send(b"{") or slow.answered(1)
        sent += 1
    assert sent < 100, "answered while the body was still arriving"
    status, headers, body = slow.answer()
    assert (status, headers["connection"], body) == (408, "close", expected)
    assert bodies == []


def test_a_body_sent_at_once_reaches_the_app(limited: tuple[int, list[bytes]]) -> None:
    port, bodies = limited
    whole = Raw(port)
    assert whole.send(head("/json", 2, "application/json", "Connection: close") + b"{}")
    assert whole.answer()[0] == 200
    assert bodies[-1] == b"{}"


def test_the_credential_routes_need_a_bearer_token_before_their_bodies_by_default() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("not called")

    assert RequestLimits(app).bearer_routes == {"/v1/credentials"}
    assert RequestLimits(app, text_bodies={"/v1/git-credential": 1}).bearer_routes == {
        "/v1/credentials", "/v1/git-credential"}
