"""Log set-up: JSON lines (default) or text. Audit records pass their fields through ``extra``.

Every record logged while a request is served carries that request's id (``request_id``, from
``ccweb.requestid``): ``RequestIdFilter`` on the handler sets it, the formatters write it.

Log lines carry values from outside (a token's claims), and operators read them on terminals: neither format
writes a character that could drive one (``ccweb.display``). A JSON line escapes them as JSON does, so it
decodes to the exact value; a text line writes them as ``\\x1b``, ``\\u202e``, and puts a field's value in
double quotes, with ``\\"`` and ``\\\\`` inside, when it holds one of them, a space, ``"``, ``=`` or ``\\``, any
character outside ASCII, or is empty (``subject="a b"``, as logfmt does): a claim cannot pass for more fields,
nor look as if it did (a Hangul filler or a Braille blank reads as a space, U+A78A as ``=``: everything between
the quotes is one value).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

from ccweb import requestid
from ccweb.display import printable, printable_json


class RequestIdFilter(logging.Filter):
    """Set ``record.request_id``: the id of the request being served, or None."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = requestid.current()
        return True


class JsonFormatter(logging.Formatter):
    _encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)
    _second: tuple[int, str] = (-1, "")

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{self._second[1]}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return printable_json(self._encoder.encode(entry))


def _text_value(value: object) -> str:
    """A field's value in a text line: bare when that is unambiguous (printable ASCII without a space, ``"``,
    ``=`` or ``\\``), else quoted (logfmt's way)."""
    text = value if isinstance(value, str) else str(value)
    if text and text.isascii() and text.isprintable() and not any(c in text for c in ' "=\\'):
        return text
    return '"' + printable(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = printable(record.getMessage())
        line = f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {message}"
        fields = getattr(record, "fields", None)
        pairs = dict(fields) if isinstance(fields, dict) else {}
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            pairs = {"request_id": request_id, **pairs}
        if pairs:
            line += " " + " ".join(f"{key}={_text_value(value)}" for key, value in pairs.items())
        return line


def handler(stream: IO[str], fmt: str = "json") -> logging.Handler:
    """A handler writing ``fmt`` (json or text) lines to ``stream``, with the request id."""
    made = logging.StreamHandler(stream)
    made.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    made.addFilter(RequestIdFilter())
    return made


def setup(level: str = "info", fmt: str = "json") -> None:
    root = logging.getLogger()
    root.handlers[:] = [handler(sys.stderr, fmt)]
    root.setLevel(level.upper())
    for name in ("botocore", "boto3", "urllib3", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
