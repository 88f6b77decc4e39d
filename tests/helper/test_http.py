"""The helper's HTTP/1.1 exchange (``client.http_json``) against a raw loopback peer that answers with exact bytes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence

import pytest

from ccweb_helper import client
from ccweb_helper.client import HelperError, http_json


class Peer:
    """Accepts one connection on 127.0.0.1, records the request, writes ``answer`` piece by piece, closes."""

    def __init__(self, answer: Sequence[bytes]) -> None:
        self.answer = answer
        self.request = b""
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(5)
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
            conn.settimeout(5)
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
            except OSError:
                pass  # the helper stopped reading (a refused answer)

    def close(self) -> None:
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
], indirect=["peer"], ids=["closed", "not-http", "bad-code", "superscript-code", "short-body", "bad-chunk",
                           "short-chunk", "headers", "long-line"])
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
def test_a_target_that_would_break_the_request_line_is_not_sent(peer: Peer) -> None:
    with pytest.raises(HelperError, match=r"\(InvalidURL\)"):
        http_json(peer.url + "/a b", "the peer", timeout=5)
    assert peer.connections == 0


def test_the_host_header_names_an_ipv6_address_in_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[bytes] = []

    class Socket:
        def sendall(self, data: bytes) -> None:
            sent.append(data)

        def makefile(self, mode: str) -> object:
            import io

            return io.BufferedReader(io.BytesIO(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"))

        def close(self) -> None:
            pass

    addresses: list[object] = []

    def connect(address: object, timeout: float) -> Socket:
        addresses.append(address)
        return Socket()

    monkeypatch.setattr(socket, "create_connection", connect)
    assert http_json("http://[::1]:8080/x", "the peer", timeout=5).body == {}
    assert http_json("http://localhost/x", "the peer", timeout=5).body == {}
    assert addresses == [(b"::1", 8080), (b"localhost", 80)]  # resolved as bytes: no idna codec for ASCII names
    assert b"\r\nHost: [::1]:8080\r\n" in sent[0]
    assert b"\r\nHost: localhost\r\n" in sent[1]
