"""Proxies for the tests, on loopback: a real one (proxy.py, from PyPI) and the ones that go wrong.

``real_proxy()`` runs proxy.py in a process of its own, with a plugin that resolves the test-only names of
``PROXIED_NAMES`` (``ccweb.proxied.test``, …: the ``.test`` top-level domain resolves nowhere, RFC 2606) to
127.0.0.1, keeping the port: a server on a loopback port is reached as ``https://ccweb.proxied.test:<port>``
through the proxy, and by that name through nothing else. It refuses (403) any other name, so a test's
request never leaves the machine; with ``user`` and ``password`` it wants basic proxy authentication (407
without). It writes each request it lets through (``CONNECT host:port``, or the method and host:port of a
plain-http one) to a file that ``RunningProxy.seen()`` reads. It stops when the context exits, or by itself
when the test process goes (its stdin closes).

``refusing_proxy(status)`` answers every request with that status (407 with ``Proxy-Authenticate``, 403, …);
``garbage_proxy()`` answers with bytes that are not HTTP; ``interim_flood_proxy()`` with interim (1xx) answers
without end, ``dripping_proxy()`` one byte at a time without end; ``closed_port()`` is a port where nothing
listens.
``tls_front(port, context)`` puts TLS (``support.self_signed(directory, *PROXIED_NAMES)``) in front of a
plain-http server on a loopback port, so that the server is an https origin of one of those names.

Run as a script, this file is the proxy process itself (``real_proxy`` starts it so).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

PROXIED_NAMES = ("ccweb.proxied.test", "idp.proxied.test", "sts.proxied.test")
"""Names the real proxy resolves to 127.0.0.1, and nothing else does."""
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
START_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class RunningProxy:
    """A running ``real_proxy``: ``url`` without credentials (as the helper names it), ``auth_url`` with the
    user and password (percent-encoded) when it wants them."""

    port: int
    log: Path
    user: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        """This proxy's URL with a user and password in it, percent-encoded as a proxy URL carries them."""
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        if self.user is None or self.password is None:
            return self.url
        return self.url_with(self.user, self.password)

    def seen(self) -> list[str]:
        """Each request let through so far, in order: ``CONNECT ccweb.proxied.test:4430``, ``GET 127.0.0.1:80``."""
        return self.log.read_text().splitlines() if self.log.exists() else []

    def tunnels(self) -> set[str]:
        """The ``host:port`` of every CONNECT let through so far."""
        return {line.split(" ", 1)[1] for line in self.seen() if line.startswith("CONNECT ")}

    def forget(self) -> None:
        """Start ``seen()`` afresh."""
        self.log.write_text("")


@contextlib.contextmanager
def real_proxy(user: str | None = None, password: str | None = None,
               names: tuple[str, ...] = PROXIED_NAMES) -> Iterator[RunningProxy]:
    """proxy.py on an ephemeral loopback port (basic authentication with ``user`` and ``password``)."""
    with tempfile.TemporaryDirectory(prefix="ccweb-proxy-") as directory:
        work = Path(directory)
        port_file, log = work / "port", work / "seen"
        log.write_text("")
        args = ["--hostname", "127.0.0.1", "--port", "0", "--port-file", str(port_file), "--num-acceptors", "1",
                "--log-file", str(work / "proxy.log"), "--log-level", "WARNING"]
        if user is not None:
            args += ["--basic-auth", f"{user}:{password or ''}"]
        env = {**os.environ, "CCWEB_TEST_PROXY_NAMES": json.dumps(list(names)), "CCWEB_TEST_PROXY_SEEN": str(log)}
        with open(work / "stderr", "wb") as stderr:
            process = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE, env=env,
                                       stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        try:
            port = _wait_for_port(process, port_file, work / "stderr")
            yield RunningProxy(port, log, user, password)
        finally:
            assert process.stdin is not None
            process.stdin.close()  # the proxy process ends when its stdin closes
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # its own process group: the proxy, its acceptors
                process.wait()


def _wait_for_port(process: subprocess.Popen[bytes], port_file: Path, stderr: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"proxy.py stopped at start: {stderr.read_text(errors='replace')}")
        text = port_file.read_text() if port_file.exists() else ""
        if text.endswith("\n"):
            port = int(text.split()[0])
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return port
        time.sleep(0.05)
    raise RuntimeError("proxy.py did not start listening")


@contextlib.contextmanager
def _serve_raw(answer: bytes | Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback listener that reads a request's head, sends ``answer`` (or calls it with the connection) and
    closes; yield its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def reply(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                if isinstance(answer, bytes):
                    conn.sendall(answer)
                else:
                    answer(conn)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=reply, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


REASONS = {403: "Forbidden", 407: "Proxy Authentication Required", 502: "Bad Gateway"}


@contextlib.contextmanager
def refusing_proxy(status: int = 407) -> Iterator[str]:
    """A proxy that answers every request (CONNECT included) with ``status``; yield its URL."""
    extra = b'Proxy-Authenticate: Basic realm="proxy"\r\n' if status == 407 else b""
    body = b"refused by the test proxy\n"
    answer = (f"HTTP/1.1 {status} {REASONS.get(status, 'Refused')}\r\n".encode() + extra
              + f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
              + body)
    with _serve_raw(answer) as url:
        yield url


@contextlib.contextmanager
def garbage_proxy() -> Iterator[str]:
    """A "proxy" that answers every request with bytes that are not HTTP; yield its URL."""
    with _serve_raw(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff garbage\r\n\r\n") as url:
        yield url


@contextlib.contextmanager
def interim_flood_proxy() -> Iterator[str]:
    """A proxy that answers ``CONNECT`` with ``100 Continue`` after ``100 Continue``, without end (until the client
    hangs up or 30 s pass); yield its URL."""

    def flood(conn: socket.socket) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * 100)

    with _serve_raw(flood) as url:
        yield url


@contextlib.contextmanager
def dripping_proxy(interval: float = 0.1) -> Iterator[str]:
    """A proxy that answers ``CONNECT`` one byte every ``interval`` seconds (a status line, then one header line
    without end, for at most 30 s): never a pause long enough for a read timeout; yield its URL."""

    def drip(conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 Connection established\r\nX-Slow: " + b"y" * int(30 / interval):
            conn.sendall(bytes([byte]))
            time.sleep(interval)

    with _serve_raw(drip) as url:
        yield url


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port where nothing listens (held bound, not listening, until the context exits: nothing else
    takes it meanwhile)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


@contextlib.contextmanager
def tls_front(port: int, context: ssl.SSLContext) -> Iterator[int]:
    """TLS with ``context`` on an ephemeral loopback port, each connection relayed as plain bytes to the server
    on loopback ``port``; yield the TLS port."""
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, _context: None)  # a client that gives up mid-handshake: not news
    stopping = asyncio.Event()
    listening: list[int] = []
    ready = threading.Event()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
        except OSError:
            pass
        finally:
            client_writer.close()

    async def main() -> None:
        server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=context)
        listening.append(server.sockets[0].getsockname()[1])
        ready.set()
        async with server:
            await stopping.wait()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_SECONDS):
        raise RuntimeError("the TLS front did not start")
    try:
        yield listening[0]
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        loop.close()


# --- the proxy process ------------------------------------------------------------------------------------------


def _proxy_main(args: list[str]) -> None:  # pragma: no cover (runs in the proxy's own process)
    """proxy.py with the test names plugin, until stdin closes."""
    import proxy
    from proxy.http.exception import HttpRequestRejected
    from proxy.http.parser import HttpParser
    from proxy.http.proxy import HttpProxyBasePlugin

    names = set(json.loads(os.environ["CCWEB_TEST_PROXY_NAMES"]))
    seen = os.environ["CCWEB_TEST_PROXY_SEEN"]

    class TestNames(HttpProxyBasePlugin):
        """Resolves the test names to 127.0.0.1, lets loopback through, refuses everything else; records what
        it lets through."""

        def resolve_dns(self, host: str, port: int) -> tuple[str | None, Any]:
            return ("127.0.0.1" if host.lower().rstrip(".") in names else None), None

        def before_upstream_connection(self, request: HttpParser) -> HttpParser | None:
            host = (request.host or b"").decode("ascii", "replace").lower().rstrip(".")
            if host not in names and host not in LOOPBACK_NAMES:
                raise HttpRequestRejected(status_code=403, reason=b"Forbidden", body=b"not a test name\n")
            method = "CONNECT" if request.is_https_tunnel else (request.method or b"?").decode("ascii", "replace")
            with open(seen, "a", encoding="utf-8") as record:
                record.write(f"{method} {host}:{request.port}\n")
            return request

    with proxy.Proxy(args, plugins=[TestNames]):
        while True:  # until the test process closes our stdin (or goes)
            readable, _, _ = select.select([sys.stdin], [], [], 1.0)
            if readable and not os.read(sys.stdin.fileno(), 4096):
                break


if __name__ == "__main__":  # pragma: no cover
    _proxy_main(sys.argv[1:])
