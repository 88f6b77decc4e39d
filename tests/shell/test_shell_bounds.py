"""The POSIX sh helper's work is bounded, under dash, bash and BusyBox sh: by what git sends (a repository path
a hostile .gitmodules makes long), by what a service, CI token service or buildkite-agent answers (endless,
large, slow), and by a signal; and it reads what git sends as the Python helper does."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from shell.shells import CREDENTIAL, ShellHelper, TextService, jwt
from shell.test_shell_tokens import REQUEST_TOKEN, GitHub, actions_env
from support import Asked, serve_http, serve_json

HOST = "git-codecommit.us-east-1.amazonaws.com"
TOKEN = jwt({"aud": "ccweb", "sub": "job"})
TOO_LONG = ("ccweb: The request body must be git's credential format, key=value lines with protocol, host and path "
            "(path: String should have at most 1024 characters).\n")


@pytest.mark.parametrize("special", ['"', "\\", '\\"'], ids=["quotes", "backslashes", "both"])
def test_a_path_full_of_quotes_is_sent_as_it_is_at_once(shell_helper: ShellHelper, tmp_path: Path,
                                                        special: str) -> None:
    """A remote URL with %22 or %5C repeated (a .gitmodules can hold one): the path reaches the service whole,
    before any time limit could matter (escaping it once took minutes before curl started)."""
    path = "v1/repos/x" + special * (1000 // len(special))
    service = TextService()
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=TOKEN)
        started = time.monotonic()
        result = shell_helper.get(env, HOST, path)
        took = time.monotonic() - started
    assert (result.returncode, result.stdout) == (0, CREDENTIAL), result.stderr
    assert service.asked[0].body == f"protocol=https\nhost={HOST}\npath={path}\n".encode()
    assert took < 5


@pytest.mark.parametrize("path", ['v1/repos/x"' + '"' * 1100, "v1/repos/" + "a" * 1016, "/" * 200000 + "x"],
                         ids=["quotes", "letters", "slashes"])
def test_a_path_the_service_cannot_sign_for_is_refused_without_asking(shell_helper: ShellHelper, tmp_path: Path,
                                                                      path: str) -> None:
    service = TextService()
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=TOKEN)
        result = shell_helper.get(env, HOST, path, timeout=20)
        other_host = shell_helper.get(env, "github.com", path, timeout=20)
    assert (result.returncode, result.stdout, result.stderr) == (1, "quit=1\n", TOO_LONG)
    assert (other_host.returncode, other_host.stdout, other_host.stderr) == (0, "", "")
    assert service.paths() == ["GET /.well-known/ccweb.txt"]  # for github.com: is it one of the service's?


class Endless(http.server.BaseHTTPRequestHandler):
    """Answers every request with 200 and a chunked body that never ends."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._endless()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._endless()

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"%x\r\n%s\r\n" % (65536, b"username=u\n" * 5957 + b"x" * 9)
        with contextlib.suppress(OSError):
            while True:
                self.wfile.write(chunk)

    def log_message(self, *_: object) -> None:
        pass


def test_an_endless_answer_is_cut_short(shell_helper: ShellHelper, tmp_path: Path) -> None:
    """An answer of no announced length (chunked) that never ends: curl before 8.4 does not hold it to
    max-filesize, and wrote gigabytes to TMPDIR until CCWEB_TIMEOUT; now it stops within the first few hundred
    KiB, at once."""
    with serve_http(Endless) as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=TOKEN, CCWEB_TIMEOUT="30")
        started = time.monotonic()
        result = shell_helper.get(env, HOST)
        took = time.monotonic() - started
    assert (result.returncode, result.stdout) == (1, "quit=1\n")
    assert result.stderr == f"ccweb: the answer of the ccweb service at {url} is too large to be one it would send.\n"
    assert took < 10


@pytest.mark.parametrize(("lines", "answered"), [(3500, True), (16000, False)], ids=["60-kib", "270-kib"])
def test_a_discovery_of_many_lines_is_read_at_once_or_refused(shell_helper: ShellHelper, tmp_path: Path,
                                                              lines: int, answered: bool) -> None:
    service = TextService(discovery="audience=ccweb\n" + "git_endpoint=aaa\n" * lines + "git_endpoint=git.example\n")
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=TOKEN, CCWEB_TIMEOUT="2")
        started = time.monotonic()
        result = shell_helper.get(env, "git.example")
        took = time.monotonic() - started
    if answered:
        assert (result.returncode, result.stdout) == (0, CREDENTIAL), result.stderr
    else:
        assert (result.returncode, result.stdout) == (1, "quit=1\n")
        assert result.stderr == (f"ccweb: the answer of the ccweb service at {url} is too large to be one it would "
                                 "send.\n")
    assert took < 5


def test_a_large_token_answer_is_read_at_once(shell_helper: ShellHelper, tmp_path: Path) -> None:
    """GitHub's answer holding a 60 KiB token, with white space around it (the Python helper strips it): read in
    time linear in its size by every awk (BusyBox awk took 85 s for 256 KiB)."""
    big = jwt({"aud": "x", "sub": "repo:acme/app", "groups": ["g" * 40] * 1100}, signature="PLANTEDbig")
    assert 45000 < len(big) <= 65536

    asked: list[str] = []

    def answer(request: Asked) -> tuple[int, dict[str, object]]:
        asked.append(request.path)
        return 200, {"count": 1, "value": f"  {big} ", "extra": {"value": "not this"}}

    service = TextService()
    with service.serving() as url, serve_json(answer) as github_url:
        service.discovery = f"audience={url}\n"
        started = time.monotonic()
        result = shell_helper.get(actions_env(shell_helper, tmp_path / "home", url, github_url), HOST)
        took = time.monotonic() - started
    assert (result.returncode, result.stdout) == (0, CREDENTIAL), result.stderr
    assert service.asked[-1].headers["Authorization"] == f"Bearer {big}"
    assert len(asked) == 1
    assert took < 10


def stuck_agent(directory: Path) -> Path:
    """A buildkite-agent that never answers (writes its pid to ``pid`` first)."""
    directory.mkdir()
    agent = directory / "buildkite-agent"
    agent.write_text(f"#!/bin/sh\necho $$ > {directory}/pid\nexec sleep 60\n")
    agent.chmod(0o755)
    return directory / "pid"


def test_a_buildkite_agent_that_does_not_answer_is_given_ccweb_timeout(shell_helper: ShellHelper,
                                                                       tmp_path: Path) -> None:
    pid = stuck_agent(tmp_path / "agent")
    service = TextService()
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, BUILDKITE="true", CCWEB_TIMEOUT="1.5",
                               PATH=f"{tmp_path / 'agent'}:{shell_helper.bin}")
        started = time.monotonic()
        result = shell_helper.get(env, HOST, timeout=30)
        took = time.monotonic() - started
    assert (result.returncode, result.stdout) == (1, "quit=1\n")
    assert result.stderr == ("ccweb: `buildkite-agent oidc request-token` did not answer within 1.5 seconds; try "
                             "again.\n")
    assert took < 6
    with contextlib.suppress(ProcessLookupError, ValueError):
        os.kill(int(pid.read_text()), 0)
        pytest.fail("the agent still runs")


class Slow(http.server.BaseHTTPRequestHandler):
    """Holds every request (``asked`` is set when one arrived) and never answers."""

    asked = threading.Event()

    def do_GET(self) -> None:
        Slow.asked.set()
        time.sleep(30)

    def do_POST(self) -> None:
        Slow.asked.set()
        time.sleep(30)

    def log_message(self, *_: object) -> None:
        pass


def _signals_at_their_defaults() -> None:
    """In the child before it runs the shell: a signal ignored on entry cannot be trapped by a shell (POSIX), and a
    test run started under ``nohup`` would hand the helper an ignored SIGHUP, which git never does."""
    for number in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)


@pytest.mark.parametrize("target", ["helper", "group"])
@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["term", "int", "hup"])
def test_a_signal_ends_the_helper_at_once(shell_helper: ShellHelper, tmp_path: Path, sent: signal.Signals,
                                          target: str) -> None:
    """kill -TERM (a CI job cancelled: to the helper, or to its whole process group), while curl waits for a slow
    service: the sentence and quit=1 at once, curl stopped, nothing left in TMPDIR (before, the helper waited for
    curl's whole CCWEB_TIMEOUT)."""
    temporary = tmp_path / "tmpdir"
    temporary.mkdir()
    Slow.asked.clear()
    with serve_http(Slow) as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=TOKEN, CCWEB_TIMEOUT="20",
                               TMPDIR=str(temporary))
        given = tmp_path / "given"
        given.write_text(f"protocol=https\nhost={HOST}\npath=v1/repos/demo\n\n")
        with given.open() as stdin, subprocess.Popen([*shell_helper.command, "get"], env=env, stdin=stdin, text=True,
                                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                     start_new_session=True, preexec_fn=_signals_at_their_defaults,  # noqa: PLW1509 (only signal dispositions)
                                                     ) as helper:
            assert Slow.asked.wait(20)
            time.sleep(0.3)
            if target == "group":
                os.killpg(helper.pid, sent)
            else:
                helper.send_signal(sent)
            started = time.monotonic()
            stdout, stderr = helper.communicate(timeout=30)
            took = time.monotonic() - started
    assert (helper.returncode, stdout, stderr) == (1, "quit=1\n", "ccweb: cancelled.\n")
    assert took < 3
    assert list(temporary.iterdir()) == []


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGHUP], ids=["term", "hup"])
def test_a_signal_to_the_group_ends_setup_with_its_one_sentence(shell_helper: ShellHelper, tmp_path: Path,
                                                                sent: signal.Signals) -> None:
    Slow.asked.clear()
    with serve_http(Slow) as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_TIMEOUT="20")
        with subprocess.Popen([*shell_helper.command, "setup", "--url", url], env=env, stdin=subprocess.DEVNULL,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True, preexec_fn=_signals_at_their_defaults) as helper:  # noqa: PLW1509
            assert Slow.asked.wait(20)  # setup asks the service for its git endpoints
            time.sleep(0.3)
            os.killpg(helper.pid, sent)
            _, stderr = helper.communicate(timeout=30)
    assert (helper.returncode, stderr) == (1, "ccweb-helper setup: cancelled.\n")


@pytest.mark.parametrize("host", ["github.com:abc", "a:b:c", "[::1", "git.example.com:0", "git.example.com:65536",
                                  "git.example.com:000443", "git.example.com:", "git example.com", "git@example.com",
                                  "ex\u00e4mple.com"])
def test_what_is_no_host_and_port_is_left_to_the_next_helper(shell_helper: ShellHelper, tmp_path: Path,
                                                             host: str) -> None:
    """As the Python helper (hosts.split_host): silent, without asking the service (here, one that is down)."""
    env = shell_helper.env(tmp_path / "home", CCWEB_URL="http://127.0.0.1:9", CCWEB_TOKEN=TOKEN)
    result = shell_helper.get(env, host)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert "curl" not in shell_helper.command_lines()


@pytest.mark.parametrize(("host", "path"), [
    (f"  {HOST} ", "v1/repos/demo"), (HOST.upper() + ":443", "v1/repos/demo"), (HOST, "//v1/repos/demo"),
    (HOST, "v1/repos/demo/"),
], ids=["spaces-around-host", "upper-case-port", "two-slashes", "slash-after"])
def test_what_the_python_helper_answers_for_is_answered(shell_helper: ShellHelper, tmp_path: Path, host: str,
                                                        path: str) -> None:
    service = TextService()
    with service.serving() as url:
        result = shell_helper.get(shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=TOKEN), host, path)
    assert (result.returncode, result.stdout) == (0, CREDENTIAL), result.stderr
    assert service.asked[0].body == f"protocol=https\nhost={host}\npath={path}\n".encode()


def test_settings_of_a_github_job_are_read_without_white_space_around_them(shell_helper: ShellHelper,
                                                                           tmp_path: Path) -> None:
    github = GitHub()
    service = TextService()
    with service.serving() as url, serve_json(github.answer) as github_url:
        service.discovery = f"audience={url}\n"
        env = actions_env(shell_helper, tmp_path / "home", url, github_url)
        env["ACTIONS_ID_TOKEN_REQUEST_URL"] = f" {env['ACTIONS_ID_TOKEN_REQUEST_URL']}\n"
        env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = f"{REQUEST_TOKEN} "
        result = shell_helper.get(env, HOST)
    assert (result.returncode, result.stdout) == (0, CREDENTIAL), result.stderr
    assert github.audiences == [url]
