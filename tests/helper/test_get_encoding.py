"""``ccweb-helper get`` whatever the bytes and encodings around it: git's input that is not UTF-8, a console
that cannot write a character (cp1252 on Windows), a strict locale, a service that answers a credential with
characters no credential has. Each ends in a credential or in one sentence and ``quit=1`` — never a traceback
after which git goes on to prompt."""

from __future__ import annotations

import contextlib
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import home_env, serve_json

CODECOMMIT = "git-codecommit.us-east-2.amazonaws.com"
ATTRS = f"protocol=https\nhost={CODECOMMIT}\npath=v1/repos/demo\n\n".encode()
EXPIRY = 4102444800


@contextlib.contextmanager
def service(username: str, password: str = "20300101T000000Zsig") -> Iterator[str]:  # noqa: S107 (a stand-in)
    """A stand-in ccweb service whose every answer is this credential (JSON escapes kept as written: a lone
    surrogate such as ``\\ud800`` is valid JSON)."""
    body = f'{{"username": "{username}", "password": "{password}", "password_expiry_utc": {EXPIRY}}}'.encode()
    with serve_json(lambda _: (200, body)) as url:
        yield url


def get(home: Path, stdin: bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "ccweb_helper", "get"], input=stdin, capture_output=True,
                          env=home_env(home, CCWEB_CACHE_DIR=str(home / "cache"), **env), timeout=60, check=False)


def assert_one_sentence(run: subprocess.CompletedProcess[bytes], sentence: str) -> None:
    assert run.stdout == b"quit=1\n", run.stdout
    assert run.returncode == 1
    text = run.stderr.decode("utf-8", "backslashreplace")
    assert text.startswith("ccweb: ") and text.count("\n") == 1, text
    assert sentence in text, text
    assert "Traceback" not in text


NOT_A_CREDENTIAL = {  # as written in the JSON the service answers
    "lone-surrogate-username": ("AKIA\\ud800", "p", "its username is not printable ASCII"),
    "letter-cp1252-lacks": ("AKIA\\u0142", "p", "its username is not printable ASCII"),
    "non-ascii-password": ("AKIA", "p\\u00e4ss", "its password is not printable ASCII"),
    "escape-in-password": ("AKIA", "p\\u001b[2J", "its password is not printable ASCII"),
    "surrogate-pair-password": ("AKIA", "p\\ud83d\\ude00", "its password is not printable ASCII"),
}


@pytest.mark.parametrize("encoding", ["cp1252", "utf-8:strict", ""], ids=["cp1252-console", "strict", "default"])
@pytest.mark.parametrize(("username", "password", "sentence"), list(NOT_A_CREDENTIAL.values()),
                         ids=list(NOT_A_CREDENTIAL))
def test_a_credential_that_is_not_printable_ascii_is_refused_in_one_sentence(
    home: Path, username: str, password: str, sentence: str, encoding: str,
) -> None:
    with service(username, password) as url:
        run = get(home, ATTRS, CCWEB_URL=url, CCWEB_TOKEN="a.b.c", PYTHONIOENCODING=encoding)
    assert_one_sentence(run, f"ccweb: {url} sent a credential git cannot use ({sentence})")


@pytest.mark.parametrize("encoding", ["cp1252", "utf-8:strict", "ascii:strict"])
def test_a_good_credential_is_written_whatever_the_console_encoding(home: Path, encoding: str) -> None:
    with service("AKIAEXAMPLE%session+/=", "20300101T000000Zsig") as url:
        run = get(home, ATTRS, CCWEB_URL=url, CCWEB_TOKEN="a.b.c", PYTHONIOENCODING=encoding)
    assert (run.returncode, run.stderr) == (0, b"")
    assert run.stdout == (b"username=AKIAEXAMPLE%session+/=\npassword=20300101T000000Zsig\n"
                          b"password_expiry_utc=4102444800\n")


# git percent-decodes a remote's path into the request: `https://<host>/v1/repos/%ff` sends the byte 0xff.
NOT_UTF8 = f"protocol=https\nhost={CODECOMMIT}\npath=v1/repos/\xff\n\n".encode("latin-1")
LOCALES = {"c-utf8": {"LC_ALL": "C.UTF-8"}, "strict": {"LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8:strict"}}


@pytest.mark.parametrize("locale", list(LOCALES.values()), ids=list(LOCALES))
def test_a_path_that_is_not_utf8_is_refused_in_one_sentence(home: Path, locale: dict[str, str]) -> None:
    run = get(home, NOT_UTF8, CCWEB_URL="http://127.0.0.1:9", CCWEB_TOKEN="a.b.c", **locale)
    assert_one_sentence(run, "git sent a repository path that is not UTF-8 text")


@pytest.mark.parametrize("locale", list(LOCALES.values()), ids=list(LOCALES))
def test_a_path_that_is_not_utf8_on_another_host_is_left_to_the_next_helper(
    home: Path, locale: dict[str, str],
) -> None:
    stdin = b"protocol=https\nhost=github.com\npath=acme/\xff\xfe.git\n\n"
    run = get(home, stdin, CCWEB_TOKEN="a.b.c", **locale)  # git config names no service for github.com
    assert (run.returncode, run.stdout, run.stderr) == (0, b"", b"")


# --- with the real git: it must stop, not prompt ------------------------------------------------------------

@pytest.fixture
def askpass(home: Path) -> Path:
    """A GIT_ASKPASS program that records each prompt git makes (in ``asked``) and types an answer."""
    program, record = home / "askpass", home / "asked"
    program.write_text(f"#!/bin/sh\necho \"$1\" >> '{record}'\necho typed-by-the-person\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return record


def fill(home: Path, stdin: bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    """``git credential fill`` with ccweb-helper as git's credential helper, and git free to prompt (askpass)."""
    config = home_env(home)
    helper = f"!{sys.executable} -m ccweb_helper"
    for key, value in (("credential.helper", helper), ("credential.useHttpPath", "true")):
        subprocess.run(["git", "config", "--global", key, value], env=config, check=True, timeout=30)
    return subprocess.run(["git", "credential", "fill"], input=stdin, capture_output=True, timeout=60, check=False,
                          env=home_env(home, CCWEB_TOKEN="a.b.c", CCWEB_CACHE_DIR=str(home / "c"),
                                       GIT_ASKPASS=str(home / "askpass"), **env))


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script as GIT_ASKPASS")
@pytest.mark.parametrize("encoding", ["", "cp1252"], ids=["utf-8", "cp1252"])
def test_git_stops_instead_of_prompting_when_the_credential_cannot_be_written(
    home: Path, askpass: Path, encoding: str,
) -> None:
    with service("AKIA\\ud800" if not encoding else "AKIA\\u0142") as url:
        run = fill(home, ATTRS, CCWEB_URL=url, PYTHONIOENCODING=encoding)
    assert not askpass.exists(), askpass.read_text()
    assert run.returncode != 0 and b"username=" not in run.stdout
    assert b"told us to quit" in run.stderr and b"Traceback" not in run.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script as GIT_ASKPASS")
def test_git_stops_instead_of_prompting_for_a_path_that_is_not_utf8(home: Path, askpass: Path) -> None:
    stdin = f"url=https://{CODECOMMIT}/v1/repos/%ff\n\n".encode()
    run = fill(home, stdin, CCWEB_URL="http://127.0.0.1:9", LC_ALL="C.UTF-8", PYTHONIOENCODING="utf-8:strict")
    assert not askpass.exists(), askpass.read_text()
    assert b"not UTF-8 text" in run.stderr and b"told us to quit" in run.stderr
    assert b"Traceback" not in run.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script as GIT_ASKPASS")
def test_the_askpass_stand_in_does_record_a_prompt(home: Path, askpass: Path) -> None:
    """The two tests above could not fail if git never prompted here: for a host ccweb-helper leaves alone (no
    service named for it), it does."""
    run = fill(home, b"protocol=https\nhost=git.example.com\npath=x\n\n")
    assert askpass.exists() and "Username for" in askpass.read_text()
    assert run.returncode == 0 and b"username=typed-by-the-person" in run.stdout
