"""An HTTP/1.1 answer read from a stream: the status line, the headers and a size-capped body, or ``BadAnswer``.

``read_answer`` is pure: it reads from anything with ``readline(limit)`` and ``read(n)`` (a socket through
``Deadline.reader``, or bytes in a test) and raises nothing but ``BadAnswer`` about what it reads. What it
accepts is what a client that closes the connection after one answer can use safely: the final answer after
at most ``MAX_INTERIM`` interim (1xx) ones, at most ``MAX_HEADERS`` headers of at most ``MAX_LINE_BYTES``,
a body framed by ``Transfer-Encoding: chunked`` (which wins over any length), by one ``Content-Length``
(repeated values must agree), or by the end of the connection, and never more than ``MAX_RESPONSE_BYTES + 1``
bytes of it.

``Deadline`` bounds a whole exchange: each socket operation gets what is left of the time, not the time
again, so a peer that sends a byte now and then cannot hold the caller for longer than it was given.
"""

from __future__ import annotations

import io
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from typing import Protocol

    from _typeshed import WriteableBuffer

    class Stream(Protocol):
        def readline(self, size: int | None = -1, /) -> bytes: ...
        def read(self, size: int | None = -1, /) -> bytes: ...

MAX_RESPONSE_BYTES = 1 << 20
MAX_LINE_BYTES = 65536  # a status or header line, or a chunk size, as http.client allows
MAX_HEADERS = 100
MAX_INTERIM = 10  # 100 Continue, 103 Early Hints …: a peer that sends only these is not answering
MAX_LENGTH_DIGITS = 15  # a Content-Length longer than this is over the size cap anyway (and int() has a limit)


class BadAnswer(Exception):
    """The peer did not speak HTTP/1.1; ``kind`` names what was wrong (never any of the data)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Deadline:
    """The moment an exchange must be over, computed once from ``seconds`` and ``clock`` (monotonic)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seconds = seconds
        self.end = clock() + seconds

    def left(self) -> float:
        """The seconds that remain, for the next socket operation; TimeoutError when none do."""
        remaining = self.end - self.clock()
        if remaining <= 0:
            raise TimeoutError("the exchange took longer than it was given")
        return remaining

    def reader(self, sock: socket.socket) -> io.BufferedReader:
        """``sock`` as a buffered stream whose every read waits at most for what is left of the deadline."""
        return io.BufferedReader(_SocketReader(sock, self))


class _SocketReader(io.RawIOBase):
    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        super().__init__()
        self.sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        self.sock.settimeout(self.deadline.left())
        return self.sock.recv_into(buffer)


def read_answer(reader: Stream, method: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, at most ``MAX_RESPONSE_BYTES + 1`` bytes of the body)."""
    for _ in range(MAX_INTERIM + 1):
        status, headers = _head(reader)
        if not 100 <= status < 200:  # an interim answer: the real one follows
            return status, headers, _body(reader, method, status, headers)
    raise BadAnswer("TooManyInterimAnswers")


def digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes superscripts such as '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def _line(reader: Stream) -> bytes:
    line = reader.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES:
        raise BadAnswer("LineTooLong")
    return line


def _head(reader: Stream) -> tuple[int, dict[str, str]]:
    line = _line(reader)
    if not line:
        raise BadAnswer("RemoteDisconnected")
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code = rest.strip().partition(" ")[0]
    if not version.startswith("HTTP/") or len(code) != 3 or not digits(code) or code[0] == "0":
        raise BadAnswer("BadStatusLine")
    headers: dict[str, str] = {}
    name = ""
    for _ in range(MAX_HEADERS + 1):
        raw = _line(reader)
        if not raw.endswith(b"\n"):
            raise BadAnswer("IncompleteRead")  # the connection ended within the headers
        text = raw.decode("latin-1").rstrip("\r\n")
        if not text:
            return int(code), headers
        if text[0] in " \t":  # an obsolete folded line continues the previous header
            if name:
                headers[name] = (headers[name] + " " + text.strip()).strip()
            continue
        field, sep, value = text.partition(":")
        if sep:
            name = field.strip().lower()
            if name == "content-length" and name in headers:  # every value counts: they must agree
                value = headers[name] + "," + value
            headers[name] = value.strip()  # any other repeated header: the last one counts
    raise BadAnswer("TooManyHeaders")


def _body(reader: Stream, method: str, status: int, headers: dict[str, str]) -> bytes:
    limit = MAX_RESPONSE_BYTES + 1
    if method == "HEAD" or status in (204, 304):
        return b""
    if method == "CONNECT":  # a tunnel follows a 2xx; any other answer's body is not needed, the socket is closed
        return b""
    coding = headers.get("transfer-encoding")
    if coding is not None:  # it wins over any length (RFC 9112, 6.3)
        if coding.replace(" ", "").lower().rsplit(",", 1)[-1] == "chunked":
            return _chunks(reader, limit)
        return reader.read(limit)  # not chunked last: the answer ends when the server closes the connection
    lengths = {value.strip() for value in headers.get("content-length", "").split(",")}
    if len(lengths) > 1:
        raise BadAnswer("ConflictingLengths")
    length = lengths.pop()
    if digits(length):
        length = length.lstrip("0") or "0"
        expected = limit if len(length) > MAX_LENGTH_DIGITS else min(int(length), limit)
        data = reader.read(expected)
        if len(data) < expected:
            raise BadAnswer("IncompleteRead")
        return data
    return reader.read(limit)  # no length: the answer ends when the server closes the connection


def _chunks(reader: Stream, limit: int) -> bytes:
    data = bytearray()
    while True:
        line = _line(reader)
        size_text = line.split(b";", 1)[0].strip()
        if not line.endswith(b"\n") or not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            raise BadAnswer("IncompleteRead")
        size = int(size_text, 16)
        if size == 0:
            return bytes(data)  # trailers, if any, are not read: the connection is closed next
        wanted = min(size, limit - len(data))
        chunk = reader.read(wanted)
        if len(chunk) < wanted:
            raise BadAnswer("IncompleteRead")
        data += chunk
        if len(data) >= limit:
            return bytes(data)
        if _line(reader).strip():
            raise BadAnswer("IncompleteRead")
