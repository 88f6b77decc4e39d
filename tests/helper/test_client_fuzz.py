"""Properties of the helper's HTTP client over generated answers: the HTTP/1.1 parser (``http11``), the
deadline of an exchange, the JSON it accepts and the text it shows.

The only outcomes the parser may have are an answer, or ``BadAnswer`` (which ``http_json`` turns into one
sentence): never another exception. Answers framed correctly come back exactly as they were sent, however
they are framed; a body cut short is never taken for a whole one. Derandomized, as test_properties.py is.
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import NamedTuple

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ccweb_helper.client import MAX_JSON_DEPTH, one_line, parse_json
from ccweb_helper.http11 import MAX_HEADERS, MAX_INTERIM, MAX_RESPONSE_BYTES, BadAnswer, read_answer

pytestmark = pytest.mark.filterwarnings("error")
PROPERTY = settings(max_examples=300, derandomize=True, database=None, deadline=None)

# --- the parser ------------------------------------------------------------------------------------------

TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~", min_size=1,
                max_size=20).filter(lambda name: name.lower() not in ("content-length", "transfer-encoding"))
VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
                max_size=40).map(str.strip)
FRAMING_VALUES = st.sampled_from([
    "0", "5", "007", " 12 ", "5, 5", "5, 6", "5,,5", "-1", "+5", "0x10", "\xb2", "", "1" * 40, "9" * 5000,
    "chunked", "CHUNKED", "gzip, chunked", "chunked, gzip", "gzip", "identity", " chunked ",
])
LINES = st.one_of(
    st.tuples(TOKEN, VALUE).map(lambda nv: f"{nv[0]}: {nv[1]}"),
    st.tuples(st.sampled_from(["Content-Length", "Transfer-Encoding", "content-length"]), FRAMING_VALUES)
    .map(lambda nv: f"{nv[0]}:{nv[1]}"),
    VALUE.map(lambda v: " " + v),  # an obsolete folded continuation line
    VALUE,  # no colon: ignored
    st.sampled_from(["HTTP/1.1 200 OK", "\r", ":", "a" * 70000]),
)
STATUS_LINES = st.one_of(
    st.tuples(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "http/1.1", "ICY", ""]),
              st.one_of(st.integers(-5, 1200).map(str), st.text(max_size=4)), VALUE)
    .map(" ".join),
    st.text(max_size=30),
)
ENDINGS = st.sampled_from([b"\r\n", b"\n", b"\r", b""])


@st.composite
def raw_answers(draw: st.DrawFn) -> bytes:
    """Bytes shaped like an HTTP answer, and often not quite one."""
    heads = []
    for _ in range(draw(st.integers(1, MAX_INTERIM + 3))):
        lines = [draw(STATUS_LINES), *draw(st.lists(LINES, max_size=8))]
        ending = draw(ENDINGS)
        heads.append(b"".join(line.encode("latin-1", "replace") + ending for line in lines) + ending)
    body = draw(st.one_of(st.binary(max_size=200), chunked(st.binary(max_size=200), corrupt=True)))
    return b"".join(heads) + body


@st.composite
def chunked(draw: st.DrawFn, bodies: st.SearchStrategy[bytes], corrupt: bool = False) -> bytes:
    """``body`` in chunks of random sizes, hex in either case, with extensions and trailers now and then; with
    ``corrupt``, sometimes a size or separator that is wrong."""
    body = draw(bodies)
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) if b > a]
    out = b""
    for piece in pieces:
        size = f"{len(piece):x}"
        size = size.upper() if draw(st.booleans()) else size
        extension = draw(st.sampled_from([b"", b";ext=1", b" ; a=b"]))
        separator = draw(st.sampled_from([b"\r\n", b"\r\nX", b"", b"zz"])) if corrupt else b"\r\n"
        out += size.encode() + extension + b"\r\n" + piece + separator
    out += b"0\r\n" + draw(st.sampled_from([b"", b"X-Trailer: t\r\n"])) + b"\r\n"
    if corrupt and draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]
    return out


@PROPERTY
@given(data=raw_answers(), method=st.sampled_from(["GET", "POST", "HEAD"]))
@example(data=b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n{}", method="GET")
@example(data=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 60000 + b"\r\n", method="GET")
@example(data=b"HTTP/1.1 100 Continue\r\n\r\n" * (MAX_INTERIM + 1) + b"HTTP/1.1 200 OK\r\n\r\n", method="GET")
def test_the_parser_answers_or_says_what_was_wrong_and_nothing_else(data: bytes, method: str) -> None:
    try:
        status, headers, body = read_answer(io.BytesIO(data), method)
    except BadAnswer as exc:
        kind = exc.kind
    else:
        kind = ""
    if kind:
        assert kind.isidentifier()  # a name of what was wrong, never a piece of the answer
        return
    assert 200 <= status <= 999, status  # interim answers are skipped, and no more than MAX_INTERIM
    assert all(name == name.lower().strip() for name in headers)
    assert len(body) <= MAX_RESPONSE_BYTES + 1
    if method == "HEAD" or status in (204, 304):
        assert body == b""


HEADERS = st.lists(st.tuples(TOKEN, VALUE), max_size=MAX_HEADERS - 2)


class Answer(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes  # the bytes on the wire
    whole_from: int  # how many of them the parser must have read before it may take the answer as whole


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    """An answer and its bytes, after interim answers, framed by a length, in chunks, or by the end."""
    status = draw(st.integers(200, 599).filter(lambda code: code not in (204, 304)))
    headers = draw(HEADERS)
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    interim = [b"HTTP/1.1 1%02d Early\r\nLink: </a>\r\n\r\n" % draw(st.integers(0, 99))
               for _ in range(draw(st.integers(0, MAX_INTERIM)))]
    head = [f"HTTP/1.1 {status} {draw(VALUE)}", *(f"{name}:{draw(st.sampled_from(['', ' ']))}{value}"
                                                  for name, value in headers)]
    encoded = body
    if framing == "length":
        head.append(f"Content-Length: {len(body)}")
    elif framing == "chunked":
        head.append("Transfer-Encoding: chunked")
        encoded = draw(chunked(st.just(body)))
    start = b"".join(interim) + "".join(line + "\r\n" for line in head).encode("latin-1") + b"\r\n"
    # Whole only once read: with a length, all of it; in chunks, up to the last one's size line; else, the head.
    whole_from = len(start) + (
        len(body) if framing == "length" else encoded.rindex(b"0\r\n") + 3 if framing == "chunked" else 0
    )
    return Answer(status, headers, body, start + encoded, whole_from)


@PROPERTY
@given(answer=answers())
def test_an_answer_framed_any_way_comes_back_as_it_was_sent(answer: Answer) -> None:
    status, headers, body = read_answer(io.BytesIO(answer.raw), "GET")
    assert (status, body) == (answer.status, answer.body)
    for name, value in {n.lower(): v for n, v in answer.headers}.items():  # a repeated header: the last counts
        assert headers[name] == value


@PROPERTY
@given(answer=answers(), cut=st.integers(min_value=0))
def test_an_answer_cut_short_is_never_taken_for_a_whole_one(answer: Answer, cut: int) -> None:
    with pytest.raises(BadAnswer):
        read_answer(io.BytesIO(answer.raw[: cut % answer.whole_from]), "GET")


# --- the JSON it accepts ---------------------------------------------------------------------------------

def nested(depth: int, leaf: str, kinds: list[bool]) -> str:
    """``leaf`` inside ``depth`` arrays and objects (``kinds[i]``: an object at level i)."""
    opened = "".join('{"a":' if kinds[i % len(kinds)] else "[" for i in range(depth))
    closed = "".join("}" if kinds[i % len(kinds)] else "]" for i in reversed(range(depth)))
    return opened + leaf + closed


@PROPERTY
@given(depth=st.integers(0, 3 * MAX_JSON_DEPTH), leaf=st.sampled_from(["1", '"[[[{{{"', "[]", "{}", "null"]),
       kinds=st.lists(st.booleans(), min_size=1, max_size=5), as_bytes=st.booleans())
@example(depth=100_000, leaf="1", kinds=[False], as_bytes=True)
@example(depth=50_000, leaf="1", kinds=[True], as_bytes=True)
def test_json_nested_deeper_than_the_limit_is_refused_and_the_rest_read(
    depth: int, leaf: str, kinds: list[bool], as_bytes: bool,
) -> None:
    text = nested(depth, leaf, kinds)
    levels = depth + (leaf in ("[]", "{}"))
    if levels > MAX_JSON_DEPTH:
        with pytest.raises(ValueError, match="nested too deeply"):
            parse_json(text.encode() if as_bytes else text)
    else:
        assert parse_json(text.encode() if as_bytes else text) == json.loads(text)


@PROPERTY
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                      st.lists(st.sampled_from(list(b'[]{}:,"\\ 01-e.tnul')), max_size=300).map(bytes)))
@example(data=b"\xef\xbb\xbf{}")
@example(data=b'"\\ud800"')
@example(data=b"1" * 5000)
def test_any_bytes_are_json_or_a_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):  # anything else fails the test
        parse_json(data)


# --- the text it shows -----------------------------------------------------------------------------------

@PROPERTY
@given(text=st.text(), limit=st.integers(1, 700))
@example(text="\x1b]0;owned\x07\x1b[2J\u202etxt.exe\u2028\x9b31m\udc80\U000e0001", limit=600)
def test_shown_text_is_one_line_of_printable_characters(text: str, limit: int) -> None:
    shown = one_line(text, limit)
    assert shown.isprintable(), repr(shown)  # no control character, escape, bidirectional override or line break
    assert len(shown) <= limit
    assert one_line(shown, limit) == shown
    if text.isprintable() and text == text.strip() and len(text) <= limit:
        assert shown == text  # what was safe already is shown as it is
