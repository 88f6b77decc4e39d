"""The POSIX sh helper's JSON reader (its JSON_AWK program: the strings of one top-level key of a JSON object, or
of a JWT's payload), under every awk an image may have: what it finds, and that its time grows with the input's
size, not its square (BusyBox awk took 85 s for a 256 KiB answer)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time

import pytest

from ccweb.shell_dist import helper_script

AWKS = {"mawk": ("mawk",), "gawk": ("gawk",), "busybox": ("busybox", "awk")}


def program() -> str:
    found = re.search(r"^JSON_AWK='(.*?\n})'$", helper_script().decode(), re.MULTILINE | re.DOTALL)
    assert found is not None
    return found[1]


@pytest.fixture(params=sorted(AWKS))
def awk(request: pytest.FixtureRequest) -> list[str]:
    command = AWKS[str(request.param)]
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed")
    return list(command)


def strings(awk: list[str], text: str | bytes, key: str, jwt: bool = False) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    found = subprocess.run([*awk, "-v", f"key={key}", "-v", f"jwt={int(jwt)}", program()], input=data,
                           capture_output=True, timeout=60, check=False, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
    assert found.stderr == b""
    return found.stdout.decode("latin-1").splitlines()


@pytest.mark.parametrize(("text", "expected"), [
    ('{"value":"a.b.c"}', ["a.b.c"]),
    ('{\n  "count": 1,\r\n\t"value" : "t"\n}\n', ["t"]),
    ('{"a":{"value":"inner"},"value":"outer","b":[{"value":"x"}]}', ["outer"]),
    ('{"value":["p","q",{"value":"r"},["s"],"t"],"b":1}', ["p", "q", "t"]),
    ('{"value":"e\\"s\\\\c\\/d\\n"}', ['e"s\\c/d\\n']),
    ('{"value":"\\\\"}', ["\\"]),
    ('{"v\\u0061lue":"no","value":"yes"}', ["yes"]),
    ('{"value":"first","value":"last"}', ["last"]),
    ('{"value":"x","value":2}', []),
    ('{"value":{"a":"b"}}', []),
    ('{"value":true}', []),
    ('{"value":""}', [""]),
    ('{"other":"x"}', []),
    ("{}", []),
    ('{"value":"x"} trailing "', ["x"]),
    ('["value","x"]', []),
    ('{"value" "x"}', []),
    ('{"value":"x",}', ["x"]),
    ('{"value":"x"', []),
    ('{"value":"x', []),
    ('{"value":"x"]', []),
    ('{"value":"x"\x01}', []),
    ("", []),
], ids=lambda v: repr(v)[:30] if isinstance(v, str) else None)
def test_the_strings_of_one_top_level_key(awk: list[str], text: str, expected: list[str]) -> None:
    assert strings(awk, text, "value") == expected


def jwt(claims: dict[str, object]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"


def test_the_audiences_of_a_jwt(awk: list[str]) -> None:
    assert strings(awk, jwt({"aud": "ccweb", "sub": "x"}) + "\n", "aud", jwt=True) == ["ccweb"]
    assert strings(awk, jwt({"x": {"aud": "no"}, "aud": ["https://a/", "b"]}), "aud", jwt=True) == ["https://a/", "b"]
    assert strings(awk, "a.b", "aud", jwt=True) == []
    assert strings(awk, "a.!!!.c", "aud", jwt=True) == []


@pytest.mark.parametrize("shape", ["one-string", "many-escapes", "many-strings", "deep", "jwt"])
def test_time_grows_with_the_size_not_its_square(awk: list[str], shape: str) -> None:
    """Inputs of 64 KiB (the most the helper gives it) of the shapes that cost the most, each read within a second
    by every awk (BusyBox awk took 2 s for one string of 64 KiB, 38 s for 256 KiB: it built strings a character at
    a time)."""
    size = 65536
    key, as_jwt, expected = "value", False, None
    if shape == "one-string":
        text, expected = '{"value":"' + "a" * size + '"}', ["a" * size]
    elif shape == "many-escapes":
        text, expected = '{"value":"' + '\\"' * (size // 2) + '"}', ['"' * (size // 2)]
    elif shape == "many-strings":
        text = '{"value":[' + ",".join(['"ab"'] * (size // 5)) + "]}"
        expected = ["ab"] * (size // 5)
    elif shape == "deep":
        text, expected = '{"x":' + "[" * (size // 2) + "]" * (size // 2) + ',"value":"y"}', ["y"]
    else:
        text, key, as_jwt = jwt({"aud": ["a" * 30] * (size // 45)}), "aud", True
        expected = ["a" * 30] * (size // 45)
    started = time.monotonic()
    found = strings(awk, text, key, as_jwt)
    took = time.monotonic() - started
    assert found == expected
    assert took < 1, f"{took:.1f} s"
