"""The browser sign-in's local half: the loopback redirect target and the browser launch.

Imported only when a sign-in in the browser starts, so that a ``get`` answered from the login cache never
loads an HTTP server. The server answers each connection in a daemon thread with a socket timeout, so an
idle or slow connection to the loopback port (a port scanner, a browser's speculative preconnect) can
neither block the sign-in's answer nor hold the process past its deadline.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

CONNECTION_SECONDS = 5.0  # how long one connection may take to send its request
POLL_SECONDS = 0.25  # how often the waiting loop looks at the deadline and the browser's fate
BROWSER_JOIN_SECONDS = 2.0  # how long to let the browser launch finish before git's stdout is given back

PAGE = (
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>ccweb</title></head>"
    "<body style=\"font-family:sans-serif;margin:3em\"><h1>{title}</h1><p>{text}</p></body></html>"
)


class CallbackServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Listens on ``127.0.0.1:<port>`` (0: a free one) and keeps the first answer that carries this sign-in's
    state."""

    allow_reuse_address = False
    daemon_threads = True
    block_on_close = False
    timeout = POLL_SECONDS

    def __init__(self, state: str, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _CallbackHandler)
        self.state = state
        self.result: dict[str, str] | None = None
        self.done = threading.Event()
        self._claim = threading.Lock()
        self._claimed = False

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def claim(self, state: str) -> bool:
        """Whether this is the first request with the right state (only one answer is ever taken)."""
        with self._claim:
            if self._claimed or not hmac.compare_digest(state.encode(), self.state.encode()):
                return False
            self._claimed = True
            return True

    def deliver(self, query: dict[str, str]) -> None:
        self.result = query
        self.done.set()

    def wait(self, deadline: float, give_up: Callable[[], bool] = lambda: False) -> dict[str, str] | None:
        """The redirect's query, or None when the monotonic ``deadline`` passed or ``give_up()`` said so."""
        while not self.done.is_set():
            if time.monotonic() >= deadline or give_up():
                break
            self.handle_request()  # returns within POLL_SECONDS; each connection gets its own thread
        return self.result if self.done.is_set() else None


class _CallbackHandler(BaseHTTPRequestHandler):
    server: CallbackServer
    timeout = CONNECTION_SECONDS

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/callback":
            self._page(404, "Not found", "This is ccweb-helper's sign-in address.")
            return
        query = {k: v[0] for k, v in parse_qs(parts.query).items() if v}
        if not self.server.claim(query.get("state", "")):
            self._page(400, "Unexpected sign-in", "This is not the sign-in ccweb-helper is waiting for.")
            return
        try:
            if "code" in query:
                self._page(200, "Signed in", "ccweb-helper has your sign-in. You can close this window.")
            else:
                self._page(400, "Sign-in failed", "The identity provider did not sign you in; see your terminal.")
        finally:  # the page first, so the browser shows it before the helper moves on (and may exit)
            self.server.deliver(query)

    def _page(self, status: int, title: str, text: str) -> None:
        content = PAGE.format(title=title, text=text).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        """Never log: the request line carries the authorization code."""


@contextlib.contextmanager
def stdout_is_stderr() -> Iterator[None]:
    """A browser started now inherits stderr as its stdout: git reads the helper's stdout until it closes."""
    if os.name != "posix":
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _open_browser(url: str, outcome: list[bool]) -> None:
    import webbrowser  # noqa: PLC0415 (only when a browser is to be started)

    try:
        outcome.append(webbrowser.open(url))
    except Exception:  # noqa: BLE001 (any failure to start a browser means: use the printed address)
        outcome.append(False)


@contextlib.contextmanager
def browser_started(url: str) -> Iterator[list[bool]]:
    """Start a browser at ``url`` in the background, its stdout on stderr; yields ``outcome``, which gets
    True or False once ``webbrowser.open`` has answered.

    On leaving, the launch gets a moment to finish before fd 1 is git's again: a browser forked after that
    would write its chatter into git's credential answer.
    """
    outcome: list[bool] = []
    with stdout_is_stderr():
        launcher = threading.Thread(target=_open_browser, args=(url, outcome), daemon=True)
        launcher.start()
        try:
            yield outcome
        finally:
            launcher.join(BROWSER_JOIN_SECONDS)
