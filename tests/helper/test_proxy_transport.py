"""The helper's requests through a proxy (``ccweb_helper.transport``): a ``CONNECT`` tunnel within the request's
deadline, TLS checked against the origin's name, ``Proxy-Authorization`` from the proxy URL, and one sentence
naming the proxy and its variable when the proxy refuses, cannot be reached, answers garbage or nothing.

The proxy here is a small ``CONNECT`` proxy written for these tests (the real ones run in tests/e2e); the
origin answers https with a certificate for its own name only, ``ccweb.proxied.test``, a name that resolves
nowhere: only the proxy knows it is on 127.0.0.1. Everything stays on loopback.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import io
import re
import select
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccweb_helper import transport
from ccweb_helper.client import HelperError, http_json
from ccweb_helper.doctor_service import ServiceChecks
from ccweb_helper.http11 import Deadline
from support import Asked, home_env, self_signed, serve_json

ORIGIN = "ccweb.proxied.test"
PASSWORD = "PLANTED-proxy/pass"  # in the proxy URL percent-encoded: PLANTED-proxy%2Fpass
CREDENTIAL = {"username": "ASIAEXAMPLE%session", "password": "20261122T101500Z" + "0" * 64,
              "password_expiry_utc": 1795343400}


def certificate(
    directory: Path, *, names: tuple[str, ...] = (), addresses: tuple[str, ...] = (),
) -> tuple[Path, ssl.SSLContext, list[str]]:
    """A self-signed certificate for exactly ``names`` and ``addresses``; a server context presenting it, and
    the list each TLS server name a client asked for (SNI) is added to."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, context = self_signed(directory, *names, addresses=addresses)
    asked: list[str] = []

    def sni(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        asked.append(name or "")

    context.sni_callback = sni
    return cert_path, context, asked


class Origin:
    """What the origin was asked: (method, path, headers)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, dict[str, str]]] = []
        self.port = 0


@contextlib.contextmanager
def origin(tls: ssl.SSLContext | None) -> Iterator[Origin]:
    """A stand-in ccweb service on 127.0.0.1: discovery, credentials, anything else ``{"ok": true}``."""
    record = Origin()

    def answer(asked: Asked) -> tuple[int, dict[str, Any]]:
        record.asked.append((asked.method, asked.path, {k.lower(): v for k, v in asked.headers.items()}))
        if asked.path == "/.well-known/ccweb":
            return 200, {"git_endpoints": [], "version": "test"}
        return 200, CREDENTIAL if asked.path == "/v1/credentials" else {"ok": True}

    with serve_json(answer, tls) as url:
        record.port = int(url.rsplit(":", 1)[1])
        yield record


class TunnelProxy(socketserver.ThreadingTCPServer):
    """A ``CONNECT`` proxy on 127.0.0.1 that knows ``ORIGIN`` (and only it) as 127.0.0.1:``port``.

    ``behaviour``: ``tunnel`` (after checking ``credentials``, when given: 407 otherwise), ``interim N`` (``N``
    interim answers, then ``tunnel``), ``status NNN`` (that answer, with a body, the connection left open),
    ``garbage`` (not HTTP), ``silent`` (never answers), ``flood`` (interim answers with the largest headers, for
    ever), ``established-garbage`` (200, then something that is not TLS)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviour: str, port: int = 0, credentials: str | None = None) -> None:
        self.behaviour = behaviour
        self.port = port
        self.credentials = credentials
        self.asked: list[tuple[str, dict[str, str]]] = []
        self.stop = threading.Event()
        super().__init__(("127.0.0.1", 0), _Tunnel)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()


class _Tunnel(socketserver.BaseRequestHandler):
    server: TunnelProxy

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30)
        data = b""
        while b"\r\n\r\n" not in data:
            more = sock.recv(4096)
            if not more:
                return
            data += more
        lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        fields = (line.partition(":") for line in lines[1:])
        headers = {name.strip().lower(): value.strip() for name, _, value in fields}
        self.server.asked.append((lines[0], headers))
        behaviour = self.server.behaviour
        if behaviour == "silent":
            self.server.stop.wait(30)
            return
        if behaviour == "garbage":
            sock.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
            return
        if behaviour == "flood":  # until the client hangs up
            hints = b"HTTP/1.1 103 Early Hints\r\n" + (b"Link: <" + b"a" * 8180 + b">\r\n") * 99 + b"\r\n"
            with contextlib.suppress(OSError):
                while not self.server.stop.is_set():
                    sock.sendall(hints)
            return
        if behaviour == "established-garbage":
            sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            sock.recv(4096)  # the client's TLS hello
            sock.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n" * 4)
            return
        if behaviour.startswith("interim "):
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * int(behaviour[8:]))
            behaviour = "tunnel"
        expected = self.server.credentials
        if behaviour == "tunnel" and expected is not None and \
                headers.get("proxy-authorization") != "Basic " + base64.b64encode(expected.encode()).decode():
            behaviour = "status 407"
        if behaviour.startswith("status "):
            page = b"<html>no</html>\n"
            sock.sendall(b"HTTP/1.1 %s Whatever\r\nProxy-Authenticate: Basic realm=\"test\"\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (behaviour[7:].encode(), len(page), page))
            with contextlib.suppress(OSError):  # the connection stays open until the client closes it
                sock.recv(1)
            return
        host, _, _ = lines[0].split(" ")[1].rpartition(":")
        if host != ORIGIN:
            sock.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=30) as upstream:
            sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            _relay(sock, upstream)


def _relay(one: socket.socket, other: socket.socket) -> None:
    peers = {one: other, other: one}
    while True:
        ready, _, _ = select.select(list(peers), [], [], 30)
        if not ready:
            return
        for sock in ready:
            try:
                data = sock.recv(65536)
                if data:
                    peers[sock].sendall(data)
            except OSError:  # reset: the client is gone
                data = b""
            if not data:
                return


@pytest.fixture
def trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ssl.SSLContext, list[str]]:
    """A certificate for ``ORIGIN`` only, trusted by the helper (SSL_CERT_FILE); the server context and the SNI
    names it was asked for."""
    cert, context, sni = certificate(tmp_path / "origin", names=(ORIGIN,))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return context, sni


@contextlib.contextmanager
def proxy(behaviour: str, port: int = 0, credentials: str | None = None) -> Iterator[TunnelProxy]:
    server = TunnelProxy(behaviour, port, credentials)
    try:
        yield server
    finally:
        server.close()


def test_https_goes_through_a_connect_tunnel_with_tls_checked_against_the_origin(
    trusted: tuple[ssl.SSLContext, list[str]],
) -> None:
    context, sni = trusted
    with origin(context) as service, proxy("tunnel", service.port, f"alice:{PASSWORD}") as tunnel:
        answer = http_json(f"https://{ORIGIN}:{service.port}/x", "the ccweb service", timeout=10,
                           headers={"Authorization": "Bearer PLANTED.TOKEN"},
                           env={"HTTPS_PROXY": tunnel.url("alice:PLANTED-proxy%2Fpass@")})
    assert answer.status == 200 and answer.body == {"ok": True}
    [(line, headers)] = tunnel.asked
    assert line == f"CONNECT {ORIGIN}:{service.port} HTTP/1.1"
    assert headers["host"] == f"{ORIGIN}:{service.port}"
    assert base64.b64decode(headers["proxy-authorization"].removeprefix("Basic ")) == f"alice:{PASSWORD}".encode()
    assert "authorization" not in headers  # the token goes to the origin only, inside the tunnel
    assert sni == [ORIGIN]  # the handshake named the origin, not the proxy (127.0.0.1)
    [(method, path, sent)] = service.asked
    assert (method, path, sent["host"], sent["authorization"]) == ("GET", "/x", f"{ORIGIN}:{service.port}",
                                                                  "Bearer PLANTED.TOKEN")
    assert "proxy-authorization" not in sent  # the proxy's password goes to the proxy only


def test_a_certificate_for_the_proxys_address_is_not_the_origins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, context, _ = certificate(tmp_path / "origin", addresses=("127.0.0.1",))  # the proxy's address, not ORIGIN
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with origin(context) as service, proxy("tunnel", service.port) as tunnel, pytest.raises(HelperError) as caught:
        http_json(f"https://{ORIGIN}:{service.port}/x", "the ccweb service", timeout=10,
                  env={"HTTPS_PROXY": tunnel.url()})
    assert caught.value.message.startswith(
        f"the TLS certificate of the ccweb service at https://{ORIGIN}:{service.port} could not be verified through "
        f"the proxy {tunnel.url()} (HTTPS_PROXY) (")
    assert service.asked == []


REFUSALS: dict[str, tuple[str, str | None, str]] = {
    # name: (what the proxy answers, the user and password sent, the end of the sentence)
    "407-without-credentials": ("tunnel", None, "(HTTP 407, proxy authentication required); put your proxy user "
                                "name and password in HTTPS_PROXY (http://user:password@host:port, percent-encoded)."),
    "407-wrong-credentials": ("tunnel", "alice:PLANTED-wrong%2Fpass@", "(HTTP 407, proxy authentication required); "
                              "check the user name and password in HTTPS_PROXY."),
    "403": ("status 403", "alice:PLANTED-proxy%2Fpass@", "(HTTP 403, forbidden); ask the proxy's administrators to "
            "allow it, or check HTTPS_PROXY."),
    "502": ("status 502", None, f"(HTTP 502, bad gateway: it could not connect); check that {ORIGIN} is reachable "
            "from the proxy, or try again later."),
    "418": ("status 418", None, "(HTTP 418); ask the proxy's administrators to allow it, or check HTTPS_PROXY."),
}


@pytest.mark.parametrize(("behaviour", "userinfo", "end"), REFUSALS.values(), ids=REFUSALS.keys())
def test_a_proxy_that_refuses_is_named_with_its_variable(behaviour: str, userinfo: str | None, end: str) -> None:
    with proxy(behaviour, credentials=f"alice:{PASSWORD}") as refusing, pytest.raises(HelperError) as caught:
        http_json(f"https://{ORIGIN}:8443/x", "the ccweb service", timeout=10,
                  env={"HTTPS_PROXY": refusing.url(userinfo or "")})
    assert caught.value.message == (f"the proxy {refusing.url()} (HTTPS_PROXY) refused to connect to {ORIGIN}:8443 "
                                    f"{end}")
    assert "PLANTED" not in caught.value.message


def test_an_unreachable_proxy_is_named_with_its_variable() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = closed.getsockname()[1]
        with pytest.raises(HelperError) as caught:
            http_json(f"https://{ORIGIN}/x", "the ccweb service", timeout=10,
                      env={"https_proxy": f"http://alice:PLANTED@127.0.0.1:{port}"})
    assert caught.value.message == (
        f"cannot reach the proxy http://127.0.0.1:{port} set by https_proxy (Connection refused); check https_proxy, "
        f"or add {ORIGIN} to NO_PROXY if it is reachable directly.")


def test_a_proxy_that_does_not_speak_http_is_named() -> None:
    with proxy("garbage") as talking, pytest.raises(HelperError) as caught:
        http_json(f"https://{ORIGIN}/x", "the ccweb service", timeout=10, env={"ALL_PROXY": talking.url()})
    assert caught.value.message == (f"the proxy {talking.url()} (ALL_PROXY) did not answer like an HTTP proxy "
                                    "(BadStatusLine); check ALL_PROXY.")


def test_a_silent_proxy_is_cut_by_the_requests_deadline() -> None:
    with proxy("silent") as silent, pytest.raises(HelperError) as caught:
        http_json(f"https://{ORIGIN}/x", "the ccweb service", timeout=0.5, env={"HTTPS_PROXY": silent.url()})
    assert caught.value.message == (f"the proxy {silent.url()} (HTTPS_PROXY) did not answer within 0.5 seconds; try "
                                    "again, check HTTPS_PROXY, or raise CCWEB_TIMEOUT.")


def test_the_tunnel_shares_the_requests_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connecting to the proxy takes 2 s of 6, and the proxy drips its answer a byte a second: the exchange ends
    when the 6 s are over, in the proxy's answer, named as the proxy's fault."""
    now = [1000.0]
    timeouts: list[float] = []

    class Dripping:
        answer = b"HTTP/1.1 200 Connection established\r\n\r\n"

        def settimeout(self, seconds: float) -> None:
            timeouts.append(seconds)

        def sendall(self, data: bytes) -> None:
            pass

        def recv(self, size: int, flags: int = 0) -> bytes:
            if flags == socket.MSG_PEEK:  # a look at what has come: one more byte each second
                now[0] += 1
                return self.answer[:1]
            taken, self.answer = self.answer[:size], self.answer[size:]
            return taken

        def close(self) -> None:
            pass

    def connect(address: bytes, port: int, deadline: Deadline) -> Dripping:
        now[0] += 2
        return Dripping()

    monkeypatch.setattr(transport, "connect", connect)
    chosen = transport.proxy_for("https", ORIGIN, None, {"HTTPS_PROXY": "http://proxy.example.com:3128"})
    assert chosen is not None
    with pytest.raises(transport.ProxyFailure) as caught:
        transport.exchange("https", ORIGIN, None, method="GET", target="/", headers={}, body=None,
                           deadline=Deadline(6, lambda: now[0]), proxy=chosen)
    assert caught.value.message == ("the proxy http://proxy.example.com:3128 (HTTPS_PROXY) did not answer within 6 "
                                    "seconds; try again, check HTTPS_PROXY, or raise CCWEB_TIMEOUT.")
    assert timeouts[:4] == [4, 4, 3, 2]  # the request, then each byte of the answer: what is left, not more


# -- what a hostile proxy can and cannot do ------------------------------------------------------------------


def test_a_proxy_that_floods_its_answer_is_cut_at_16_kib_without_burning_the_cpu() -> None:
    """A proxy that sends interim answers with the largest headers, for ever: read a byte at a time, up to ~9 MB,
    it held the helper at 100 % CPU until the deadline; now the answer is read in blocks and cut at 16 KiB."""
    with proxy("flood") as flooding:
        started, cpu = time.monotonic(), time.thread_time()
        with pytest.raises(HelperError) as caught:
            http_json(f"https://{ORIGIN}/x", "the ccweb service", timeout=30, env={"HTTPS_PROXY": flooding.url()})
        elapsed, used = time.monotonic() - started, time.thread_time() - cpu
    assert caught.value.message == (f"the proxy {flooding.url()} (HTTPS_PROXY) did not answer like an HTTP proxy "
                                    "(AnswerTooLarge); check HTTPS_PROXY.")
    assert elapsed < 5 and used < 1, (elapsed, used)


@pytest.mark.parametrize(("interim", "kind"), [(2, None), (3, "TooManyInterimAnswers")])
def test_at_most_two_interim_answers_come_before_the_proxys_answer(
    trusted: tuple[ssl.SSLContext, list[str]], interim: int, kind: str | None,
) -> None:
    with origin(trusted[0]) as service, proxy(f"interim {interim}", service.port) as tunnel:
        call = functools.partial(http_json, f"https://{ORIGIN}:{service.port}/x", "the ccweb service", timeout=10,
                                 env={"HTTPS_PROXY": tunnel.url()})
        if kind is None:
            assert call().body == {"ok": True}
            return
        with pytest.raises(HelperError) as caught:
            call()
    assert caught.value.message == (f"the proxy {tunnel.url()} (HTTPS_PROXY) did not answer like an HTTP proxy "
                                    f"({kind}); check HTTPS_PROXY.")
    assert service.asked == []


def test_the_proxys_answer_is_read_up_to_its_end_and_not_past_it() -> None:
    """Whatever comes after the empty line is the tunnel's (the origin's TLS): it stays in the socket, however
    the answer is cut into packets ("\r" and "\n" of its end apart, an interim answer before it)."""
    one, other = socket.socketpair()
    pieces = [b"HTTP/1.1 100 Continue\r", b"\n\r\n", b"HTTP/1.1 200 Connection established\r\nVia: 1.1 p\r\n\r",
              b"\nTUNNEL"]

    def send() -> None:
        for piece in pieces:
            other.sendall(piece)
            time.sleep(0.05)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert transport.connect_answer(one, Deadline(10)) == 200
        sender.join()
        one.settimeout(5)
        assert one.recv(100) == b"TUNNEL"
    finally:
        one.close()
        other.close()


@pytest.mark.parametrize("host", [
    "evil.example:443 HTTP/1.1\r\nX-Injected: yes\r\nX-Rest: x", "evil.example\r\nX-Injected: 1", "evil.example\n",
    "a b", "evil.example%0d%0ax", "[::1]", "b\u00fccher.example", "", "evil.example/x", "user@evil.example",
    "fe80::1%eth0",
])
def test_exchange_and_tunnel_refuse_a_host_that_is_not_one_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch, host: str,
) -> None:
    """http_json checks its URL's host, but ``exchange`` and ``tunnel`` do not rely on it: a host with CR/LF would
    otherwise write headers of its choosing into the CONNECT request."""
    opened: list[bytes] = []
    monkeypatch.setattr(transport, "connect", lambda address, *_: opened.append(address))
    chosen = transport.proxy_for("https", ORIGIN, None, {"HTTPS_PROXY": "http://proxy.example.com:3128"})
    for through in (None, chosen):
        with pytest.raises(ValueError):  # noqa: PT011 (a caller's mistake: nothing to show a person)
            transport.exchange("https", host, None, method="GET", target="/", headers={}, body=None,
                               deadline=Deadline(5), proxy=through)
    assert chosen is not None
    for authority in {f"{host}:443", f"[{host}]:443"}:  # as exchange would write it, and without brackets
        if authority == "[::1]:443":
            continue  # the one that is an authority
        with pytest.raises(ValueError):  # noqa: PT011
            transport.tunnel(chosen, authority, host, Deadline(5))
    assert opened == []


def test_a_host_that_is_not_one_is_refused_by_http_json_in_a_sentence() -> None:
    with proxy("tunnel") as tunnel, pytest.raises(HelperError) as caught:
        http_json("https://evil.example%0d%0aX-Injected:1/", "the ccweb service", timeout=5,
                  env={"HTTPS_PROXY": tunnel.url()})
    assert caught.value.message == ("the host 'evil.example%0d%0aX-Injected' in the address of the ccweb service "
                                    "holds characters a host name cannot hold.")
    assert tunnel.asked == []


def test_a_proxy_that_passes_on_something_else_than_tls_is_named(trusted: tuple[ssl.SSLContext, list[str]]) -> None:
    with proxy("established-garbage") as talking, pytest.raises(HelperError) as caught:
        http_json(f"https://{ORIGIN}/x", "the ccweb service", timeout=10, env={"HTTPS_PROXY": talking.url()})
    message = caught.value.message
    assert message.startswith(f"cannot reach the ccweb service at https://{ORIGIN} through the proxy {talking.url()} "
                              "(HTTPS_PROXY): the TLS handshake through it failed (")
    assert message.endswith("); check that the proxy passes https through unchanged (HTTPS_PROXY).")


def test_get_refuses_a_proxy_password_with_an_unencoded_hash_without_showing_any_of_it(tmp_path: Path) -> None:
    """Read up to the "#", http://PLANTEDUSER:2024#… named the proxy "http://PLANTEDUSER:2024" in git's output."""
    done = get(tmp_path, CCWEB_URL=f"https://{ORIGIN}",
               HTTPS_PROXY="http://PLANTEDUSER:2024#PLANTEDPASS@proxy.corp.example:3128")
    assert (done.returncode, done.stdout) == (1, "quit=1\n")
    assert done.stderr == ("ccweb: HTTPS_PROXY holds a user name or password with an unencoded /, ? or # (the value "
                           "is not shown: it may hold a password); percent-encode @ / ? # in the proxy's user name and "
                           "password (%40 %2F %3F %23), e.g. http://user:p%23ss@proxy.example.com:3128.\n")
    assert "PLANTED" not in done.stderr and "2024" not in done.stderr


# -- one form of the host for the decision, the connection, CONNECT and TLS ----------------------------------

LOOPBACK_SPELLINGS = {
    "two-parts": "127.1", "hexadecimal": "0x7f.1", "one-number": "2130706433", "octal": "0177.0.0.1",
    "trailing-dot": "127.0.0.1.", "full-width-dots": "127\uff0e0\uff0e0\uff0e1",
    "full-width-digits": "\uff11\uff12\uff17.0.0.1",
}


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS.values(), ids=LOOPBACK_SPELLINGS.keys())
def test_every_spelling_of_loopback_goes_directly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  host: str) -> None:
    """Decided on the URL's text, these went to the proxy as "CONNECT 127.0.0.1:…" (or "CONNECT 127.1:…"), and a
    token for a service on this machine reached whatever listens on the proxy's own loopback."""
    cert, context, _ = certificate(tmp_path / "origin", addresses=("127.0.0.1",))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with origin(context) as service, proxy("tunnel", service.port) as tunnel:
        answer = http_json(f"https://{host}:{service.port}/x", "the ccweb service", timeout=10,
                           env={"HTTPS_PROXY": tunnel.url()})
    assert answer.body == {"ok": True}
    assert tunnel.asked == []
    [(_, _, sent)] = service.asked
    assert sent["host"] == f"127.0.0.1:{service.port}"  # the same one form in the Host header


def test_names_under_localhost_go_directly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, context, sni = certificate(tmp_path / "origin", names=("ccweb.localhost",))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    connected: list[bytes] = []
    real = transport.connect

    def connect(address: bytes, port: int, deadline: Deadline) -> socket.socket:
        connected.append(address)
        return real(b"127.0.0.1" if address == b"ccweb.localhost" else address, port, deadline)

    monkeypatch.setattr(transport, "connect", connect)
    with origin(context) as service, proxy("tunnel", service.port) as tunnel:
        answer = http_json(f"https://CCWEB.localhost:{service.port}/x", "the ccweb service", timeout=10,
                           env={"HTTPS_PROXY": tunnel.url()})
    assert answer.body == {"ok": True}
    assert tunnel.asked == [] and connected == [b"ccweb.localhost"] and sni == ["ccweb.localhost"]


def test_an_international_spelling_is_decided_connected_and_checked_in_its_ascii_form(
    trusted: tuple[ssl.SSLContext, list[str]],
) -> None:
    context, sni = trusted
    spelled = ORIGIN.replace(".", "\uff0e").upper()  # full-width dots: IDNA makes them "."
    with origin(context) as service, proxy("tunnel", service.port) as tunnel:
        answer = http_json(f"https://{spelled}:{service.port}/x", "the ccweb service", timeout=10,
                           env={"HTTPS_PROXY": tunnel.url()})
    assert answer.body == {"ok": True}
    assert [line for line, _ in tunnel.asked] == [f"CONNECT {ORIGIN}:{service.port} HTTP/1.1"]
    assert sni == [ORIGIN]
    [(_, _, sent)] = service.asked
    assert sent["host"] == f"{ORIGIN}:{service.port}"


def test_no_proxy_is_matched_against_the_ascii_form(trusted: tuple[ssl.SSLContext, list[str]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    connected = resolved_here(monkeypatch)
    spelled = ORIGIN.replace(".", "\u3002")  # ideographic full stops
    with origin(trusted[0]) as service, proxy("tunnel") as tunnel:
        answer = http_json(f"https://{spelled}:{service.port}/x", "the ccweb service", timeout=10,
                           env={"HTTPS_PROXY": tunnel.url(), "NO_PROXY": "proxied.test"})
    assert answer.body == {"ok": True}
    assert tunnel.asked == [] and connected == [ORIGIN.encode()]


def test_an_unusable_proxy_setting_is_named_without_its_value() -> None:
    with pytest.raises(HelperError) as caught:
        http_json(f"https://{ORIGIN}/x", "the ccweb service", timeout=10,
                  env={"HTTPS_PROXY": "socks5h://alice:PLANTED@proxy.example.com:1080"})
    assert caught.value.message.startswith("HTTPS_PROXY names a SOCKS proxy (socks5h://), which ccweb does not "
                                           "support")
    assert "PLANTED" not in caught.value.message and "alice" not in caught.value.message


def test_loopback_is_never_proxied() -> None:
    with origin(None) as service, proxy("tunnel") as tunnel:
        answer = http_json(f"http://127.0.0.1:{service.port}/x", "the ccweb service", timeout=10,
                           env={"HTTPS_PROXY": tunnel.url(), "ALL_PROXY": tunnel.url(), "http_proxy": tunnel.url()})
    assert answer.body == {"ok": True}
    assert tunnel.asked == [] and len(service.asked) == 1


def resolved_here(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """``ORIGIN`` resolved to 127.0.0.1 for direct connections (as curl's --resolve), so a test never asks DNS;
    the names connected to."""
    connected: list[bytes] = []
    real = transport.connect

    def connect(address: bytes, port: int, deadline: Deadline) -> socket.socket:
        connected.append(address)
        return real(b"127.0.0.1" if address == ORIGIN.encode() else address, port, deadline)

    monkeypatch.setattr(transport, "connect", connect)
    return connected


def test_no_proxy_sends_a_host_directly(trusted: tuple[ssl.SSLContext, list[str]],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    connected = resolved_here(monkeypatch)
    with origin(trusted[0]) as service, proxy("tunnel") as tunnel:
        answer = http_json(f"https://{ORIGIN}:{service.port}/x", "the ccweb service", timeout=10,
                           env={"HTTPS_PROXY": tunnel.url(), "NO_PROXY": "example.com, .proxied.test"})
    assert answer.body == {"ok": True}
    assert tunnel.asked == [] and connected == [ORIGIN.encode()]


# -- as git runs it: ccweb-helper get -----------------------------------------------------------------------

ATTRIBUTES = "protocol=https\nhost=git-codecommit.us-east-1.amazonaws.com\npath=v1/repos/demo\n\n"


def get(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "home").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "ccweb_helper", "get"], input=ATTRIBUTES, capture_output=True,
                          text=True, timeout=60, check=False, env=home_env(tmp_path / "home", CCWEB_TOKEN="a.b.c",
                                                                           **env))


def test_get_asks_the_service_through_the_proxy(tmp_path: Path, trusted: tuple[ssl.SSLContext, list[str]]) -> None:
    cert = tmp_path / "origin" / "cert.pem"
    with origin(trusted[0]) as service, proxy("tunnel", service.port, f"alice:{PASSWORD}") as tunnel:
        done = get(tmp_path, CCWEB_URL=f"https://{ORIGIN}:{service.port}", SSL_CERT_FILE=str(cert),
                   https_proxy=tunnel.url("alice:PLANTED-proxy%2Fpass@"))
    assert done.returncode == 0, done.stderr
    assert f"password_expiry_utc={CREDENTIAL['password_expiry_utc']}" in done.stdout.splitlines()
    assert [line for line, _ in tunnel.asked] == [f"CONNECT {ORIGIN}:{service.port} HTTP/1.1"]
    assert [path for _, path, _ in service.asked] == ["/v1/credentials"]


def test_get_names_a_refusing_proxy_and_never_its_password(tmp_path: Path,
                                                            trusted: tuple[ssl.SSLContext, list[str]]) -> None:
    cert = tmp_path / "origin" / "cert.pem"
    with proxy("tunnel", credentials="alice:another") as refusing:
        done = get(tmp_path, CCWEB_URL=f"https://{ORIGIN}", SSL_CERT_FILE=str(cert),
                   HTTPS_PROXY=refusing.url("alice:PLANTED-proxy%2Fpass@"))
    assert (done.returncode, done.stdout) == (1, "quit=1\n")
    assert done.stderr == (f"ccweb: the proxy {refusing.url()} (HTTPS_PROXY) refused to connect to {ORIGIN}:443 "
                           "(HTTP 407, proxy authentication required); check the user name and password in "
                           "HTTPS_PROXY.\n")
    assert "PLANTED" not in done.stdout + done.stderr


def imported(stderr: str) -> set[str]:
    """The modules ``python -X importtime`` reported."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")
            and "|" in line} - {"imported package"}


def test_get_imports_nothing_for_proxies_when_none_is_set(tmp_path: Path) -> None:
    with origin(None) as service:
        # -S: without site, whose hooks (an editable install's) import modules of their own
        command = [sys.executable, "-S", "-X", "importtime", "-m", "ccweb_helper", "get"]
        env = home_env(tmp_path, CCWEB_TOKEN="a.b.c", CCWEB_URL=f"http://127.0.0.1:{service.port}")
        direct = subprocess.run(command, input=ATTRIBUTES, capture_output=True, text=True, timeout=60, env=env,
                                check=False)
        with proxy("tunnel", service.port) as tunnel:
            proxied = subprocess.run(command, input=ATTRIBUTES, capture_output=True, text=True, timeout=60,
                                     env={**env, "HTTPS_PROXY": tunnel.url(), "CCWEB_URL": f"https://{ORIGIN}"},
                                     check=False)
    assert direct.stdout.startswith("username=") and len(service.asked) == 1
    assert "ccweb_helper.transport" in imported(direct.stderr)
    proxy_only = {"ccweb_helper.proxy", "base64", "typing"}  # (ipaddress: urllib.parse imports it already)
    assert imported(direct.stderr) & proxy_only == set()
    assert "ccweb_helper.proxy" in imported(proxied.stderr)  # the same run with a proxy set does read it


# -- doctor says how it reached the service ------------------------------------------------------------------


def service_line(env: dict[str, str]) -> tuple[float | None, list[str]]:
    out = io.StringIO()
    checks = ServiceChecks(env, out, lambda: dt.datetime.now(dt.UTC).timestamp())
    seconds = checks.check_service()
    return seconds, [f"{line.status} {line.text}" for line in checks.lines]


def test_doctor_names_the_proxy_it_used(trusted: tuple[ssl.SSLContext, list[str]]) -> None:
    with origin(trusted[0]) as service, proxy("tunnel", service.port, f"alice:{PASSWORD}") as tunnel:
        url = f"https://{ORIGIN}:{service.port}"
        seconds, lines = service_line({"CCWEB_URL": url, "HTTPS_PROXY": tunnel.url("alice:PLANTED-proxy%2Fpass@")})
    assert seconds is not None
    assert lines[0] == (f"ok service {url} (CCWEB_URL) answers (ccweb test), TLS certificate verified, via proxy "
                        f"{tunnel.url()} (HTTPS_PROXY).")
    assert "PLANTED" not in "\n".join(lines)


def test_doctor_says_no_proxy_bypassed_it(trusted: tuple[ssl.SSLContext, list[str]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    resolved_here(monkeypatch)
    with origin(trusted[0]) as service, proxy("tunnel") as tunnel:
        url = f"https://{ORIGIN}:{service.port}"
        _, lines = service_line({"CCWEB_URL": url, "HTTPS_PROXY": tunnel.url(), "no_proxy": "proxied.test"})
    assert lines[0] == (f"ok service {url} (CCWEB_URL) answers (ccweb test), TLS certificate verified, directly "
                        f"(no_proxy bypasses the proxy for {ORIGIN}).")
    assert tunnel.asked == []


def test_doctor_says_no_proxy_sent_a_failed_request_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    resolved_here(monkeypatch)
    with socket.socket() as closed, proxy("tunnel") as tunnel:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"https://{ORIGIN}:{closed.getsockname()[1]}"
        seconds, lines = service_line({"CCWEB_URL": url, "HTTPS_PROXY": tunnel.url(), "no_proxy": "proxied.test"})
    assert seconds is None
    assert lines == [f"FAIL cannot reach the ccweb service at {url} (Connection refused); check CCWEB_URL or git "
                     "config ccweb.url, and that it is running. It was asked directly: no_proxy bypasses the proxy "
                     f"for {ORIGIN}."]
    assert tunnel.asked == []


def test_doctor_says_loopback_is_never_proxied() -> None:
    with origin(None) as service:
        url = f"http://127.0.0.1:{service.port}"
        _, lines = service_line({"CCWEB_URL": url, "HTTPS_PROXY": "http://proxy.example.com:3128"})
    assert lines[0] == (f"ok service {url} (CCWEB_URL) answers (ccweb test), plain http on loopback, directly "
                        "(loopback is never proxied).")


def test_doctor_fails_a_proxy_setting_it_cannot_use() -> None:
    seconds, lines = service_line({"CCWEB_URL": f"https://{ORIGIN}",
                                   "ALL_PROXY": "https://alice:PLANTED@proxy.example.com"})
    assert seconds is None
    assert lines == [
        "FAIL ALL_PROXY names an https:// proxy (TLS to the proxy itself), which ccweb does not support; use the "
        "proxy's http:// address (https sites are still reached through an encrypted tunnel), e.g. "
        "http://proxy.example.com:3128."]


def test_doctor_fails_an_unusable_proxy_even_for_a_service_it_does_not_need() -> None:
    with origin(None) as service:
        seconds, lines = service_line({"CCWEB_URL": f"http://127.0.0.1:{service.port}",
                                       "HTTPS_PROXY": "socks5://alice:PLANTED@proxy.example.com"})
    assert seconds is not None  # the service was checked
    assert lines[0].startswith("FAIL HTTPS_PROXY names a SOCKS proxy (socks5://)")
    assert lines[0].endswith("The service is reached without it, but requests to other hosts (your identity "
                             "provider, a CI token service) would fail.")
    assert lines[1].startswith("ok service") and "PLANTED" not in "\n".join(lines)


def test_every_request_of_the_helper_goes_through_the_transport() -> None:
    """Only ``transport`` opens connections (so every request honours the proxy variables): no other module of
    the helper connects a socket or uses another HTTP client. ``callback`` listens on loopback for a sign-in's
    redirect; it sends nothing."""
    package = Path(transport.__file__).parent
    opening = re.compile(r"(import|from) (urllib\.request|http\.client|requests|httpx)\b|\.connect\(|getaddrinfo|"
                         r"create_connection|urlopen")
    found = {path.name: opening.findall(path.read_text()) for path in sorted(package.glob("*.py"))
             if path.name != "transport.py"}
    assert {name: used for name, used in found.items() if used} == {}
    assert opening.search((package / "transport.py").read_text())  # the pattern finds what it looks for
