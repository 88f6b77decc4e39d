"""git's credential protocol: what git sends is parsed tolerantly; what the helper prints is LF-only."""

from __future__ import annotations

import io

import pytest

from ccweb_helper.protocol import format_answer, parse

PARSE_CASES = [
    pytest.param("protocol=https\nhost=h\npath=v1/repos/r\n\n",
                 {"protocol": "https", "host": "h", "path": "v1/repos/r"}, {}, id="plain"),
    pytest.param("protocol=https\r\nhost=h\r\n\r\n", {"protocol": "https", "host": "h"}, {}, id="crlf"),
    pytest.param("host=h\nnonsense line\n=novalue\nhost2=x\n", {"host": "h", "host2": "x"}, {},
                 id="lines-without-key-or-equals-ignored"),
    pytest.param("capability[]=authtype\ncapability[]=state\nhost=h\n", {"host": "h"},
                 {"capability": ["authtype", "state"]}, id="repeated-capabilities"),
    pytest.param('wwwauth[]=Basic realm="x"\nwwwauth[]=Bearer\n', {}, {"wwwauth": ['Basic realm="x"', "Bearer"]},
                 id="repeated-wwwauth"),
    pytest.param("wwwauth[]=a\nwwwauth[]=\nwwwauth[]=b\n", {}, {"wwwauth": ["b"]}, id="empty-value-resets-list"),
    pytest.param("host=h\n\nhost=after-blank\n", {"host": "h"}, {}, id="stops-at-blank-line"),
    pytest.param("password=a=b=c\n", {"password": "a=b=c"}, {}, id="value-keeps-equals"),
    pytest.param("host=first\nhost=second\n", {"host": "second"}, {}, id="last-value-wins"),
    pytest.param("", {}, {}, id="empty-input"),
    pytest.param("url=https://h/p\nusername=u\nfuture-key=1\n", {"url": "https://h/p", "username": "u",
                                                                 "future-key": "1"}, {}, id="unknown-keys-kept"),
]


@pytest.mark.parametrize(("text", "fields", "lists"), PARSE_CASES)
def test_parse(text: str, fields: dict[str, str], lists: dict[str, list[str]]) -> None:
    request = parse(io.StringIO(text))
    assert request.fields == fields
    assert request.lists == lists


def test_format_is_lf_only() -> None:
    text = format_answer([("username", "A%B"), ("password", "20261122T101500Zabc"), ("password_expiry_utc", "1")])
    assert text == "username=A%B\npassword=20261122T101500Zabc\npassword_expiry_utc=1\n"
    assert "\r" not in text


@pytest.mark.parametrize("value", ["a\nquit=1", "a\rb", "a\0b"], ids=["newline", "carriage-return", "nul"])
def test_format_refuses_values_that_would_inject_lines(value: str) -> None:
    with pytest.raises(ValueError, match="line break or NUL"):
        format_answer([("password", value)])
