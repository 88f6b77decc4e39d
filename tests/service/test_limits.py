"""Size and media-type limits over raw HTTP to a real uvicorn on loopback, with ``ccweb serve``'s options.

Each refusal: its status, the contract's JSON error body, and never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.limits import (
    H11_MAX_INCOMPLETE_EVENT_SIZE,
    MAX_AUTHORIZATION_BYTES,
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    SERVER_OPTIONS,
    is_json,
)
from support import RecordingSTS

HOST = "git-codecommit.us-east-2.amazonaws.com"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """The app under uvicorn on an ephemeral loopback port, with the options ``ccweb serve`` passes."""
    config = parse_config({
        "issuers": [{"name": "corp", "issuer": "http://127.0.0.1:9", "audiences": ["ccweb"]}],
        "rules": [{"name": "all", "issuer": "corp", "role_arn": "arn:aws:iam::111122223333:role/all",
                   "repositories": ["*"]}],
    })
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sts = RecordingSTS(fail=AssertionError("no request in these tests gets this far"))
    server = _Server(uvicorn.Config(create_app(config, sts=sts), log_level="critical", access_log=False,
                                    lifespan="on", http="h11", **SERVER_OPTIONS))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(sockets=[sock]),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a bound against a hang, not a measurement
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        loop.close()
        sock.close()


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self.raw = response.read()
        assert b"Traceback" not in self.raw and b'File "' not in self.raw

    def json(self) -> dict[str, Any]:
        assert self.headers["content-type"] == "application/json"
        body = json.loads(self.raw)
        assert set(body) == {"error", "detail"} and body["detail"].endswith(".")
        return dict(body)


def exchange(port: int, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"", *,
             chunks: list[bytes] | None = None) -> Answer:
    """Send one request byte for byte (``chunks``: chunked transfer encoding) and read the answer."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    data = head.encode("latin-1") + body
    if chunks is not None:
        data += b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the server may answer and close early
            sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Answer(response)


def credential_body(size: int) -> bytes:
    """A valid request body padded with spaces to exactly ``size`` bytes."""
    body = json.dumps({"protocol": "https", "host": HOST, "path": "v1/repos/demo"}).encode()
    return body + b" " * (size - len(body))


JSON = ("Content-Type", "application/json")
BEARER = ("Authorization", "Bearer not.a.token")  # a body without one is not read on the credential routes


@pytest.mark.parametrize(
    ("headers", "body", "status", "error"),
    [
        pytest.param([JSON], credential_body(MAX_BODY_BYTES), 401, "invalid_token", id="body-at-the-cap"),
        pytest.param([JSON], credential_body(MAX_BODY_BYTES + 1), 413, "request_too_large", id="body-over-the-cap"),
        pytest.param([("Content-Type", "text/plain")], credential_body(100), 415, "unsupported_media_type",
                     id="text-plain"),
        pytest.param([("Content-Type", "application/x-www-form-urlencoded")], b"protocol=https", 415,
                     "unsupported_media_type", id="form"),
        pytest.param([], credential_body(100), 415, "unsupported_media_type", id="no-content-type"),
        pytest.param([("Content-Type", "application/json; charset=utf-8")], credential_body(100), 401,
                     "invalid_token", id="json-with-charset"),
        pytest.param([], b"", 401, "invalid_token", id="empty-body-no-content-type"),
    ],
)
def test_body_limits(port: int, headers: list[tuple[str, str]], body: bytes, status: int, error: str) -> None:
    answer = exchange(port, "POST", "/v1/credentials", [*headers, ("Content-Length", str(len(body)))], body)
    assert answer.status == status
    assert answer.json()["error"] == error


def test_a_declared_oversized_body_is_refused_before_it_is_sent(port: int) -> None:
    answer = exchange(port, "POST", "/v1/credentials", [JSON, ("Content-Length", str(10 * 1024 * 1024))])
    assert answer.status == 413
    assert answer.headers["connection"] == "close"
    assert answer.json() == {"error": "request_too_large", "detail": (
        f"The request body is larger than {MAX_BODY_BYTES} bytes; send only protocol, host and path.")}


def test_a_chunked_body_is_cut_off_at_the_cap(port: int) -> None:
    answer = exchange(port, "POST", "/v1/credentials", [BEARER, JSON, ("Transfer-Encoding", "chunked")],
                      chunks=[b"{" + b" " * 1023] * 9)
    assert answer.status == 413
    assert answer.json()["error"] == "request_too_large"


def test_a_small_chunked_body_is_replayed_to_the_app(port: int) -> None:
    body = credential_body(300)
    answer = exchange(port, "POST", "/v1/credentials", [BEARER, JSON, ("Transfer-Encoding", "chunked")],
                      chunks=[body[:100], body[100:]])
    assert answer.status == 401  # reached the token check: the body was accepted


def test_a_get_with_a_non_json_body_is_refused(port: int) -> None:
    answer = exchange(port, "GET", "/healthz", [("Content-Type", "text/plain"), ("Content-Length", "5")], b"hello")
    assert answer.status == 415


@pytest.mark.parametrize(
    ("name", "size", "status"),
    [("at-the-cap", MAX_AUTHORIZATION_BYTES, 200), ("over-the-cap", MAX_AUTHORIZATION_BYTES + 1, 401)],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_an_oversized_authorization_header_is_an_invalid_token(port: int, name: str, size: int,
                                                                status: int) -> None:
    value = "Bearer " + "a" * (size - len("Bearer "))
    answer = exchange(port, "GET", "/healthz", [("Authorization", value)])
    assert answer.status == status
    if status == 401:
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert answer.json()["error"] == "invalid_token"
        assert "a" * 64 not in answer.raw.decode()


def test_an_oversized_token_on_the_credential_endpoint(port: int) -> None:
    token = "Bearer " + "a" * (MAX_AUTHORIZATION_BYTES)
    body = credential_body(100)
    answer = exchange(port, "POST", "/v1/credentials",
                      [("Authorization", token), JSON, ("Content-Length", str(len(body)))], body)
    assert answer.status == 401
    assert answer.json()["error"] == "invalid_token"


def test_headers_over_the_cap_are_431(port: int) -> None:
    pads = [(f"X-Pad-{i}", "p" * 1000) for i in range(MAX_HEAD_BYTES // 1000 + 1)]
    answer = exchange(port, "GET", "/healthz", pads)
    assert answer.status == 431
    assert answer.json()["error"] == "request_header_too_large"


def test_heads_larger_than_uvicorns_default_reach_the_app(port: int) -> None:
    pads = [(f"X-Pad-{i}", "p" * 1000) for i in range(24)]  # 24 KiB: over h11's default 16 KiB, under the cap
    assert exchange(port, "GET", "/healthz", pads).status == 200


def test_a_head_over_the_server_limit_gets_uvicorns_plain_400(port: int) -> None:
    # h11 buffers at most H11_MAX_INCOMPLETE_EVENT_SIZE bytes of a head that has not ended yet; past that,
    # uvicorn answers a plain 400 and closes. (Sent whole in one read, a larger head is parsed, then refused
    # here with 431.) The head below never ends, so all of it is read and the answer is not lost to a reset.
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"p" * H11_MAX_INCOMPLETE_EVENT_SIZE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = Answer(response)
    assert answer.status == 400
    assert answer.raw == b"Invalid HTTP request received."


def test_keep_alive_survives_a_replayed_body(port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(3):
            connection.request("POST", "/v1/credentials", body=credential_body(200),
                               headers={"Content-Type": "application/json", BEARER[0]: BEARER[1]})
            answer = Answer(connection.getresponse())
            assert answer.status == 401
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True), ("Application/JSON; charset=utf-8", True), ("application/merge-patch+json", True),
        ("application/+json", False), ("text/json", False), ("application/jsonp", False), ("text/plain", False),
        ("", False), ("application/json-seq", False), ("multipart/form-data; boundary=x", False),
    ],
)
def test_is_json(content_type: str, expected: bool) -> None:
    assert is_json(content_type) is expected


def test_the_openapi_document_lists_the_refusals(port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/openapi.json")
    paths = json.loads(connection.getresponse().read())["paths"]
    connection.close()
    assert {"401", "408", "413", "415", "431"} <= set(paths["/v1/credentials"]["post"]["responses"])
    for item in paths.values():
        for operation in item.values():
            assert {"401", "431"} <= set(operation["responses"])
