"""The helper's HTTP/1.1 exchange (``client.http_json``) against a raw loopback peer that answers with exact bytes,
in process and through ``ccweb-helper get`` as git runs it: every malformed, hostile or slow answer ends in one
``ccweb:`` sentence naming the server, and ``quit=1``."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from ccweb_helper import client, discovery, get, transport
from ccweb_helper.client import HelperError, http_json, parse_service_url
from ccweb_helper.discovery import LoginIssuer
from ccweb_helper.http11 import Deadline
from ccweb_helper.login_tokens import check_id_token, id_token_claims
from support import home_env


class Peer:
    """Accepts one connection on 127.0.0.1, records the request, writes ``answer`` piece by piece (``interval``
    seconds apart), closes."""

    def __init__(self, answer: Sequence[bytes], interval: float = 0) -> None:
        self.answer = answer
        self.interval = interval
        self.stopped = threading.Event()
        self.request = b""
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(60)  # a bound against a hang: a helper process on a busy machine takes seconds to start
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.connections += 1
        with conn:
            conn.settimeout(60)
            data = b""
            while b"\r\n\r\n" not in data:
                more = conn.recv(65536)
                if not more:
                    break
                data += more
            head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
            length = next((int(h.split(":", 1)[1]) for h in head.split("\r\n") if h.startswith("content-length:")), 0)
            while len(data) - len(head) - 4 < length:
                more = conn.recv(65536)
                if not more:
                    break
                data += more
            self.request = data
            try:
                for piece in self.answer:
                    conn.sendall(piece)
                    if self.interval and self.stopped.wait(self.interval):
                        break
            except OSError:
                pass  # the helper stopped reading (a refused answer)

    def close(self) -> None:
        self.stopped.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes an accept() still waiting for a connection
        self.sock.close()
        self.thread.join(5)

    def headers(self) -> list[str]:
        return self.request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")


@pytest.fixture
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    answer = request.param if isinstance(request.param, (list, tuple)) else [request.param]
    running = Peer(answer)
    yield running
    running.close()


JSON_OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


@pytest.mark.parametrize("peer", [b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"ok":true}'], indirect=True)
def test_a_post_is_one_request_with_its_length_and_the_connection_closed(peer: Peer) -> None:
    answer = http_json(peer.url + "/v1/credentials?x=1", "the peer", method="POST", timeout=5,
                       headers={"Authorization": "Bearer a.b.c"}, body=b'{"a": 1}')
    assert (answer.status, answer.body) == (200, {"ok": True})
    lines = peer.headers()
    assert lines[0] == "POST /v1/credentials?x=1 HTTP/1.1"
    port = peer.url.rsplit(":", 1)[1]
    assert {f"Host: 127.0.0.1:{port}", "Connection: close", "Content-Length: 8", "User-Agent: ccweb-helper",
            "Accept: application/json", "Authorization: Bearer a.b.c"} <= set(lines)
    assert peer.request.endswith(b'\r\n\r\n{"a": 1}')


@pytest.mark.parametrize("peer", [[
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"4;ext=1\r\n{\"ok\r\n", b"7\r\n\": true\r\n", b"1\r\n}\r\n0\r\nX-Trailer: t\r\n\r\n",
]], indirect=True)
def test_a_chunked_answer_is_put_together(peer: Peer) -> None:
    assert http_json(peer.url, "the peer", timeout=5).body == {"ok": True}


@pytest.mark.parametrize("peer", [b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"ok": true}'],
                         indirect=True)
def test_an_answer_without_a_length_ends_when_the_peer_closes(peer: Peer) -> None:
    assert http_json(peer.url, "the peer", timeout=5).body == {"ok": True}


@pytest.mark.parametrize("peer", [[
    b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nRETRY-AFTER: 30\r\nX-Folded: a\r\n b\r\n"
    b"Content-Length: 25\r\n\r\n{\"detail\": \"Slow down.\"}\n",
]], indirect=True)
def test_interim_answers_are_skipped_and_header_names_are_lower_case(peer: Peer) -> None:
    answer = http_json(peer.url, "the peer", timeout=5)
    assert answer.status == 429
    assert answer.headers["retry-after"] == "30"  # a repeated header: the last one counts
    assert answer.headers["x-folded"] == "a b"
    assert client.error_sentence(answer) == "Slow down (retry after 30 s)."


@pytest.mark.parametrize("peer", [b"HTTP/1.1 204 No Content\r\n\r\n"], indirect=True)
def test_an_empty_answer_has_no_body(peer: Peer) -> None:
    answer = http_json(peer.url, "the peer", timeout=5)
    assert (answer.status, answer.body) == (204, None)


@pytest.mark.parametrize("peer", [b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n{\"ok\": true}"], indirect=True)
def test_a_length_that_is_not_ascii_digits_is_not_trusted(peer: Peer) -> None:
    answer = http_json(peer.url, "the peer", timeout=5)  # read to the close, not a ValueError
    assert (answer.status, answer.body) == (200, {"ok": True})


@pytest.mark.parametrize(("peer", "kind"), [
    (b"", "RemoteDisconnected"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", "BadStatusLine"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "BadStatusLine"),
    (b"HTTP/1.1 2\xb20 OK\r\n\r\n", "BadStatusLine"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"ok\": ", "IncompleteRead"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "IncompleteRead"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort", "IncompleteRead"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n", "TooManyHeaders"),
    (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n", "LineTooLong"),
    (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", "IncompleteRead"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 12\r\n\r\n{}", "ConflictingLengths"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 12\r\n\r\n{}", "ConflictingLengths"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n{}", "IncompleteRead"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\n{}", "IncompleteRead"),
    ([b"HTTP/1.1 100 Continue\r\n\r\n"] * 50, "TooManyInterimAnswers"),
], indirect=["peer"], ids=["closed", "not-http", "bad-code", "superscript-code", "short-body", "bad-chunk",
                           "short-chunk", "headers", "long-line", "cut-in-headers", "conflicting-lengths",
                           "length-list", "huge-length", "huge-chunk", "endless-interim"])
def test_an_answer_that_is_not_http_is_one_sentence(peer: Peer, kind: str) -> None:
    with pytest.raises(HelperError) as caught:
        http_json(peer.url, "the peer", timeout=5, headers={"Authorization": "Bearer SECRET.TOKEN.VALUE"},
                  hint="CCWEB_URL")
    assert caught.value.message == (
        f"cannot reach the peer at {peer.url} ({kind}); check CCWEB_URL, and that it is running."
    )
    assert "SECRET" not in caught.value.message


@pytest.mark.parametrize("peer", [[
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    *[b"10000\r\n" + b"a" * 0x10000 + b"\r\n"] * 17, b"0\r\n\r\n",
]], indirect=True)
def test_an_answer_over_the_size_cap_is_refused(peer: Peer) -> None:
    with pytest.raises(HelperError, match="too large"):
        http_json(peer.url, "the peer", timeout=5)


@pytest.mark.parametrize("peer", [JSON_OK], indirect=True)
@pytest.mark.parametrize("tail", ["/a b", "/a\tb", "/a\r\nX-Injected: 1", "/\x1b[2J"],
                         ids=["space", "tab", "line-break", "escape"])
def test_a_target_that_would_break_the_request_line_is_not_sent(peer: Peer, tail: str) -> None:
    with pytest.raises(HelperError, match=r"^the address of the peer holds a space or control character\.$"):
        http_json(peer.url + tail, "the peer", timeout=5)
    assert peer.connections == 0


@pytest.mark.parametrize("peer", [JSON_OK], indirect=True)
@pytest.mark.parametrize("userinfo", ["u:PLANTED@", ":PLANTED@", "@"], ids=["user", "password-only", "empty"])
def test_an_address_with_a_user_name_or_password_is_not_sent_to(peer: Peer, userinfo: str) -> None:
    with pytest.raises(HelperError) as caught:
        http_json(peer.url.replace("://", "://" + userinfo), "the peer", timeout=5)
    assert caught.value.message == "the address of the peer holds a user name or password (not shown here)."
    assert peer.connections == 0


def test_the_host_header_names_an_ipv6_address_in_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[bytes] = []

    class Socket:
        def __init__(self) -> None:
            self.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"

        def settimeout(self, seconds: float) -> None:
            pass

        def sendall(self, data: bytes) -> None:
            sent.append(data)

        def recv_into(self, buffer: memoryview) -> int:
            size = min(len(buffer), len(self.answer))
            buffer[:size], self.answer = self.answer[:size], self.answer[size:]
            return size

        def close(self) -> None:
            pass

    addresses: list[object] = []

    def connect(address: bytes, port: int, deadline: object) -> Socket:
        addresses.append((address, port))
        return Socket()

    monkeypatch.setattr(transport, "connect", connect)
    assert http_json("http://[::1]:8080/x", "the peer", timeout=5).body == {}
    assert http_json("http://localhost/x", "the peer", timeout=5).body == {}
    assert addresses == [(b"::1", 8080), (b"localhost", 80)]  # resolved as bytes: no idna codec for ASCII names
    assert b"\r\nHost: [::1]:8080\r\n" in sent[0]
    assert b"\r\nHost: localhost\r\n" in sent[1]


# --- the deadline: one per exchange ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_deadline_gives_what_is_left_and_nothing_once_it_has_passed() -> None:
    clock = Clock()
    deadline = Deadline(5, clock)
    clock.now += 1.5
    assert deadline.left() == 3.5
    clock.now += 3.5
    with pytest.raises(TimeoutError):
        deadline.left()


def test_every_step_of_an_exchange_waits_only_for_what_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connecting takes 2 s, sending 1 s, and the peer sends a byte a second: with 6 s, each step is given the
    time left (4, 3, 2, 1 s), and the exchange ends when none is, not 6 s after the last byte."""
    clock = Clock()
    timeouts: list[float] = []

    class Dripping:
        answer = b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}'

        def settimeout(self, seconds: float) -> None:
            timeouts.append(seconds)

        def sendall(self, data: bytes) -> None:
            clock.now += 1

        def recv_into(self, buffer: memoryview) -> int:
            clock.now += 1
            buffer[:1], self.answer = self.answer[:1], self.answer[1:]
            return 1

        def close(self) -> None:
            pass

    def connect(address: bytes, port: int, deadline: Deadline) -> Dripping:
        clock.now += 2
        return Dripping()

    monkeypatch.setattr(transport, "connect", connect)
    with pytest.raises(TimeoutError):
        transport.exchange("http", "127.0.0.1", 8080, method="GET", target="/", headers={}, body=None,
                           deadline=Deadline(6, clock))
    assert timeouts == [4, 3, 2, 1]


CREDENTIAL = json.dumps({"username": "ASIAEXAMPLE%session", "password": "20261122T101500Z" + "0" * 64,
                         "password_expiry_utc": 1795343400}).encode()
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(CREDENTIAL), CREDENTIAL)


def test_a_peer_that_drips_its_answer_is_cut_by_the_timeout() -> None:
    peer = Peer([bytes([b]) for b in ANSWER], interval=0.05)  # all of it would take over 10 s
    try:
        with pytest.raises(HelperError) as caught:
            http_json(peer.url, "the peer", timeout=0.3)
    finally:
        peer.close()
    assert caught.value.message == f"the peer at {peer.url} did not answer within 0.3 seconds; try again, or raise " \
                                   "CCWEB_TIMEOUT."


# --- through `ccweb-helper get` ------------------------------------------------------------------------------

CODECOMMIT = "protocol=https\nhost=git-codecommit.us-east-2.amazonaws.com\npath=v1/repos/demo\n\n"
OWN_HOST = "protocol=https\nhost=git.example.com\npath=demo\n\n"  # the service's own git host: discovery decides


def git_get(home: Path, url: str, attrs: str = CODECOMMIT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ccweb_helper", "get"], input=attrs,
                          env=home_env(home, CCWEB_URL=url, CCWEB_TOKEN="PLANTED.TOKEN.VALUE", **env),
                          capture_output=True, text=True, timeout=60, check=False)


def assert_one_sentence(run: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """What git sees: ``quit=1``, so it neither prompts nor tries a stored password, and one line saying why."""
    assert (run.returncode, run.stdout) == (1, "quit=1\n"), (run.stdout, run.stderr)
    assert run.stderr.startswith("ccweb: ") and run.stderr.count("\n") == 1, run.stderr
    assert "Traceback" not in run.stderr and "PLANTED" not in run.stderr, run.stderr
    for fragment in fragments:
        assert fragment in run.stderr, run.stderr


def ok_json(body: bytes, status: str = "200 OK", content_type: str = "application/json") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        status.encode(), content_type.encode(), len(body), body)


def credential_with(extra: bytes) -> bytes:
    return CREDENTIAL[:-1] + b', "extra": ' + extra + b"}"


NOT_JSON = "answered HTTP 200 with something that is not ccweb's JSON"
MALFORMED = [
    pytest.param(b"", "(RemoteDisconnected)", id="closed"),
    pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", "(BadStatusLine)", id="not-http"),
    pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", "(BadStatusLine)", id="bad-code"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"ok\": ", "(IncompleteRead)", id="short-body"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", "(IncompleteRead)", id="cut-in-headers"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "(IncompleteRead)", id="bad-chunk"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\n{}", "(IncompleteRead)",
                 id="huge-chunk"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 12\r\n\r\n{}", "(ConflictingLengths)",
                 id="conflicting-lengths"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n{}", "(IncompleteRead)",
                 id="huge-length"),
    pytest.param(b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n", "(TooManyHeaders)", id="header-flood"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n", "(LineTooLong)", id="long-line"),
    pytest.param([b"HTTP/1.1 100 Continue\r\n\r\n"] * 1000, "(TooManyInterimAnswers)", id="endless-interim"),
    pytest.param(ok_json(b"<html><body>Internal Server Error</body></html>", "500 Internal Server Error",
                         "text/html"), "answered HTTP 500 with something that is not ccweb's JSON", id="html-500"),
    pytest.param(ok_json(b"[" * 100_000), NOT_JSON, id="nested-arrays"),
    pytest.param(ok_json(b'{"a":' * 50_000 + b"1" + b"}" * 50_000), NOT_JSON, id="nested-objects"),
    pytest.param(ok_json(credential_with(b"[" * 5000 + b"]" * 5000)), NOT_JSON, id="nested-in-a-credential"),
    pytest.param(ok_json(credential_with(b"[" * 40 + b"]" * 40)), NOT_JSON, id="nested-past-the-limit"),
    pytest.param(ok_json(b'{"detail": ' + b"[" * 5000 + b"]" * 5000 + b"}", "403 Forbidden"),
                 "answered HTTP 403 with something that is not ccweb's JSON", id="nested-in-a-refusal"),
]


@pytest.mark.parametrize(("answer", "sentence"), MALFORMED)
def test_a_malformed_answer_is_one_sentence_and_git_is_told_to_stop(home: Path, answer: bytes | list[bytes],
                                                                     sentence: str) -> None:
    peer = Peer(answer if isinstance(answer, list) else [answer])
    try:
        run = git_get(home, peer.url)
    finally:
        peer.close()
    assert_one_sentence(run, peer.url, sentence)


@pytest.mark.parametrize("document", [b"[" * 100_000, b'{"git_endpoints": ' + b"[" * 5000 + b"]" * 5000 + b"}"],
                         ids=["nested", "nested-endpoints"])
def test_a_nested_discovery_document_is_one_sentence(home: Path, document: bytes) -> None:
    peer = Peer([ok_json(document)])
    try:
        run = git_get(home, peer.url, OWN_HOST)
    finally:
        peer.close()
    assert_one_sentence(run, peer.url, NOT_JSON)


@pytest.mark.parametrize("dripped", ["everything", "the body"])
def test_a_service_that_drips_its_answer_is_cut_by_the_timeout(home: Path, dripped: str) -> None:
    """A byte every 50 ms: the whole answer would take seconds, each byte comes well within the timeout."""
    head, body = ANSWER.split(b"\r\n\r\n", 1)
    pieces = [bytes([b]) for b in ANSWER] if dripped == "everything" else [
        head + b"\r\n\r\n", *(bytes([b]) for b in body)]
    peer = Peer(pieces, interval=0.05)
    try:
        run = git_get(home, peer.url, CCWEB_TIMEOUT="0.5")
    finally:
        peer.close()
    assert_one_sentence(run, f"the ccweb service at {peer.url} did not answer within 0.5 seconds")


def test_a_redirect_is_not_followed(home: Path) -> None:
    elsewhere = Peer([ANSWER])
    peer = Peer([b"HTTP/1.1 302 Found\r\nLocation: %s/v1/credentials\r\nContent-Length: 0\r\n\r\n"
                 % elsewhere.url.encode()])
    try:
        run = git_get(home, peer.url)
    finally:
        peer.close()
        elsewhere.close()
    assert_one_sentence(run, peer.url, "answered HTTP 302 with something that is not ccweb's JSON")
    assert elsewhere.connections == 0


def test_escape_sequences_from_the_service_are_shown_escaped(home: Path) -> None:
    detail = "\x1b]0;owned\x07\x1b[2J\x1b[31mAccess denied\u202eexe.txt\x9b0m\rquit=0"
    peer = Peer([ok_json(json.dumps({"error": "forbidden", "detail": detail}).encode(), "403 Forbidden")])
    try:
        run = git_get(home, peer.url)
    finally:
        peer.close()
    assert_one_sentence(run, r"\x1b]0;owned\x07\x1b[2J\x1b[31mAccess denied\u202eexe.txt\x9b0m quit=0")
    assert run.stderr.isprintable() is False and run.stderr[:-1].isprintable()  # only the final line break


def test_an_issuer_name_from_discovery_is_shown_escaped() -> None:
    document = {"git_endpoints": [], "login": [{"name": "\x1b[2JCorp\nSSO", "issuer": "https://idp.example.com",
                                               "client_id": "ccweb"}]}
    peer = Peer([ok_json(json.dumps(document).encode())])
    try:
        found = discovery.fetch(parse_service_url(peer.url, "CCWEB_URL"), 5, memory={})
    finally:
        peer.close()
    assert [login.name for login in found.login] == [r"\x1b[2JCorp SSO"]


def test_whatever_goes_wrong_get_ends_with_quit_and_a_sentence_without_the_values() -> None:
    """The last resort: an error nobody foresaw still stops git, and shows no value that was involved."""

    class Broken(dict[str, str]):
        def get(self, key: str, default: object = None) -> str:
            raise RecursionError("PLANTED.TOKEN.VALUE")

        def __getitem__(self, key: str) -> str:
            raise RecursionError("PLANTED.TOKEN.VALUE")

    out, err = io.StringIO(), io.StringIO()
    environment: Mapping[str, str] = Broken()
    assert get.run(io.StringIO(CODECOMMIT), out, err, environment) == 1
    assert out.getvalue() == "quit=1\n"
    assert err.getvalue() == (
        "ccweb: ccweb-helper failed unexpectedly (RecursionError); run `ccweb-helper doctor` to check the setup, "
        "and report it if it persists.\n"
    )


# --- JSON from identity providers: the ID token's claims ---------------------------------------------------

def test_an_id_token_with_nested_claims_is_not_a_jwt() -> None:
    payload = base64.urlsafe_b64encode(b"[" * 10_000 + b"]" * 10_000).rstrip(b"=").decode()
    id_token = f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"
    with pytest.raises(ValueError, match="nested too deeply"):
        id_token_claims(id_token)
    login = LoginIssuer("Corp", "https://idp.example.com", "ccweb", ("openid",))
    with pytest.raises(HelperError, match="the identity provider 'Corp' sent an ID token that is not a JWT"):
        check_id_token(id_token, login, now=0)
