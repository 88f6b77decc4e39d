"""A service URL with a user name or password (``https://user:password@host``) is refused, wherever it comes
from — ``CCWEB_URL``, git config, ``--url`` — in one sentence that repeats neither the URL nor what it holds.
The helper never sends userinfo, and a password in a URL must not end up in git's output or a CI log. So is
one with a space or control character (which ``urlsplit`` drops, hiding a password from the check), a query
or a fragment: refused before anything is sent, without repeating it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ccweb_helper.client import HelperError, parse_service_url
from ccweb_helper.sources import without_userinfo
from support import home_env

PASSWORD = "PLANTED-pass-7c1e"
USER = "alice-planted"
CODECOMMIT = "git-codecommit.us-east-2.amazonaws.com"
ATTRS = f"protocol=https\nhost={CODECOMMIT}\npath=v1/repos/demo\n\n"
SENTENCE = "must be an https:// URL of the ccweb service without a user name or password (not shown here)"

WITH_USERINFO = {
    "user-and-password": f"https://{USER}:{PASSWORD}@ccweb.example.com",
    "password-only": f"https://:{PASSWORD}@ccweb.example.com",
    "token-as-user": f"https://{PASSWORD}@ccweb.example.com",
    "loopback": f"http://{USER}:{PASSWORD}@127.0.0.1:9",
    "with-path": f"https://{USER}:{PASSWORD}@ccweb.example.com/ccweb/",
    "no-scheme": f"{USER}:{PASSWORD}@ccweb.example.com",
    "not-a-url-either": f"https://{USER}:{PASSWORD}@[::1",
    "at-sign-twice": f"https://{USER}@{PASSWORD}@ccweb.example.com",
}


CHECKS: dict[str, tuple[Callable[[str, str], object], str]] = {
    "sources": (without_userinfo, "CCWEB_URL"),  # where the URL is read
    "every-request": (parse_service_url, "--url"),  # the check every request passes through
}


@pytest.mark.parametrize("check", list(CHECKS.values()), ids=list(CHECKS))
@pytest.mark.parametrize("url", list(WITH_USERINFO.values()), ids=list(WITH_USERINFO))
def test_userinfo_is_refused_without_being_repeated(url: str, check: tuple[Callable[[str, str], object], str]) -> None:
    refuse, name = check
    with pytest.raises(HelperError) as raised:
        refuse(url, name)
    assert raised.value.message.startswith(f"{name} {SENTENCE}")
    assert PASSWORD not in raised.value.message and USER not in raised.value.message


@pytest.mark.parametrize("url", ["https://ccweb.example.com", "https://ccweb.example.com/team@corp",
                                 "http://127.0.0.1:8700", "https://ccwéb.example.com/"],
                         ids=["plain", "at-in-path", "loopback", "international-name"])
def test_urls_without_userinfo_pass_as_they_are(url: str) -> None:
    assert without_userinfo(url, "CCWEB_URL") == url


CONTROL = "holds a space, line break or other control character (not shown here)"
QUERY = "must be the ccweb service's address without a query (?) or fragment (#)"
# What urlsplit reads differently from the eye, or drops: a tab, CR or LF between the slashes hid the user name
# and password from the check (and the password-only form was accepted, and the token sent to that host).
MALFORMED = {
    "tab-between-slashes": (f"https:/\t/{USER}:{PASSWORD}@ccweb.example.com", CONTROL),
    "tab-password-only": (f"http:/\t/:{PASSWORD}@127.0.0.1:9", CONTROL),
    "tab-after-colon": (f"http:\t//:{PASSWORD}@127.0.0.1:9", CONTROL),
    "line-feed": (f"http:/\n/:{PASSWORD}@127.0.0.1:9", CONTROL),
    "carriage-return": (f"http:/\r/:{PASSWORD}@127.0.0.1:9", CONTROL),
    "escape": (f"https://ccweb.example.com/\x1b]0;{PASSWORD}\x07", CONTROL),
    "bidi-override": (f"https://ccweb.example.com/\u202e{PASSWORD}", CONTROL),
    "space-inside": (f"https://ccweb.example.com/ {PASSWORD}", CONTROL),
    "fragment": (f"http://127.0.0.1:9#@x{PASSWORD}", QUERY),
    "empty-fragment": ("https://ccweb.example.com#", QUERY),
    "query": (f"https://ccweb.example.com/?k={PASSWORD}", QUERY),
    "empty-query": ("https://ccweb.example.com?", QUERY),
    "at-in-query": (f"https://ccweb.example.com?x={USER}@{PASSWORD}", QUERY),
    "bad-port": (f"https://ccweb.example.com:99{PASSWORD}", "is not a URL (not shown here)"),
    "not-http": (f"ftp://ccweb.example.com/{PASSWORD}", "must be an https:// URL of the ccweb service (not shown"),
}


@pytest.mark.parametrize(("url", "sentence"), list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_service_url_is_refused_without_being_repeated(url: str, sentence: str) -> None:
    with pytest.raises(HelperError) as raised:
        parse_service_url(url, "CCWEB_URL")
    assert raised.value.message.startswith(f"CCWEB_URL {sentence}"), raised.value.message
    assert PASSWORD not in raised.value.message and USER not in raised.value.message
    assert raised.value.message.isprintable()
    if sentence != MALFORMED["not-http"][1]:  # the scheme is parse_service_url's to check
        with pytest.raises(HelperError, match=r"^CCWEB_URL "):
            without_userinfo(url, "CCWEB_URL")


@pytest.fixture
def listener() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback port that records whatever connects to it: a refused URL must lead nowhere."""
    received: list[bytes] = []
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.settimeout(0.05)
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    connection, _ = sock.accept()
                except OSError:
                    continue
                with connection:
                    connection.settimeout(5)
                    with contextlib.suppress(OSError):
                        received.append(connection.recv(4096))

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield f"127.0.0.1:{sock.getsockname()[1]}", received
        stop.set()
        thread.join(5)


@pytest.mark.parametrize("url", [url for url, _ in MALFORMED.values()], ids=list(MALFORMED))
def test_get_refuses_a_malformed_ccweb_url_before_any_network(home: Path, listener: tuple[str, list[bytes]],
                                                               url: str) -> None:
    address, received = listener
    got = run(home, ["get"], ATTRS, CCWEB_URL=url.replace("127.0.0.1:9", address), CCWEB_TOKEN="PLANTED.TOKEN.VALUE")
    assert (got.returncode, got.stdout) == (1, "quit=1\n")
    assert got.stderr.startswith("ccweb: CCWEB_URL ") and got.stderr.count("\n") == 1, got.stderr
    assert_secret_free(got)
    assert "PLANTED.TOKEN.VALUE" not in got.stderr
    assert received == [], "nothing was sent anywhere"


def run(home: Path, args: list[str], stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ccweb_helper", *args], input=stdin,
                          env=home_env(home, CCWEB_CACHE_DIR=str(home / "cache"), **env), capture_output=True,
                          text=True, timeout=60, check=False)


def git_config(home: Path, key: str, value: str) -> None:
    subprocess.run(["git", "config", "--global", key, value], env=home_env(home), check=True, timeout=30)


def assert_secret_free(result: subprocess.CompletedProcess[str]) -> None:
    for text in (result.stdout, result.stderr):
        assert PASSWORD not in text and USER not in text, text


@pytest.mark.parametrize("url", list(WITH_USERINFO.values()), ids=list(WITH_USERINFO))
def test_get_refuses_ccweb_url_with_userinfo_in_one_line(home: Path, url: str) -> None:
    got = run(home, ["get"], ATTRS, CCWEB_URL=url, CCWEB_TOKEN="a.b.c")
    assert (got.returncode, got.stdout) == (1, "quit=1\n")
    assert got.stderr == f"ccweb: CCWEB_URL {SENTENCE}; set it to the service's address alone, e.g. " \
                         "https://ccweb.example.com.\n"
    assert_secret_free(got)


@pytest.mark.parametrize(("key", "source"), [
    (f"credential.https://{CODECOMMIT}.ccwebUrl", "git config credential.<url>.ccwebUrl"),
    ("ccweb.url", "git config ccweb.url"),
], ids=["credential-url", "ccweb.url"])
def test_get_refuses_a_git_config_url_with_userinfo(home: Path, key: str, source: str) -> None:
    git_config(home, key, WITH_USERINFO["user-and-password"])
    got = run(home, ["get"], ATTRS, CCWEB_TOKEN="a.b.c")
    assert (got.returncode, got.stdout) == (1, "quit=1\n")
    assert got.stderr.startswith(f"ccweb: {source} {SENTENCE}") and got.stderr.count("\n") == 1
    assert_secret_free(got)


@pytest.mark.parametrize("args", [["login", "--url"], ["status", "--url"], ["logout", "--url"], ["setup", "--url"]],
                         ids=["login", "status", "logout", "setup"])
def test_the_commands_refuse_a_url_option_with_userinfo(home: Path, args: list[str]) -> None:
    got = run(home, [*args, WITH_USERINFO["user-and-password"]])
    assert got.returncode != 0
    assert f"--url {SENTENCE}" in got.stderr and got.stderr.count("\n") == 1, got.stderr
    assert_secret_free(got)


@pytest.mark.parametrize("args", [["status"], ["login"], ["doctor"], ["setup", "--dry-run"]])
def test_the_commands_refuse_ccweb_url_with_userinfo(home: Path, args: list[str]) -> None:
    got = run(home, args, CCWEB_URL=WITH_USERINFO["password-only"])
    assert got.returncode != 0
    assert f"CCWEB_URL {SENTENCE}" in got.stdout + got.stderr
    assert "Traceback" not in got.stderr
    assert_secret_free(got)
