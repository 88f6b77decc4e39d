"""``ccweb-helper get`` as git runs it: a subprocess reading git's attributes on stdin, against real loopback
servers — the ccweb sandbox for the real service, small stand-ins for a hanging, non-ccweb or TLS service."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ccweb.sandbox.dev import Sandbox
from ccweb.signing import git_password
from support import home_env, self_signed, serve_http

ROOT = Path(__file__).resolve().parents[2]
CODECOMMIT = "git-codecommit.us-east-2.amazonaws.com"


class Run:
    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.code = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr

    @property
    def answer(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.stdout.splitlines())

    def assert_refused(self, sentence: str) -> None:
        assert self.stdout == "quit=1\n", self.stdout
        assert self.code == 1
        assert self.stderr.startswith("ccweb: "), self.stderr
        assert sentence in self.stderr, self.stderr
        assert self.stderr.count("\n") == 1, "one line on stderr"
        assert "Traceback" not in self.stderr


def helper(home: Path, stdin: str, command: str = "get", **env: str) -> Run:
    """Run the helper alone (only its own directory on the path), with git's attributes on stdin."""
    base = home_env(home, **env)
    result = subprocess.run([sys.executable, "-m", "ccweb_helper", command], input=stdin, env=base,
                            capture_output=True, text=True, timeout=60, check=False)
    return Run(result)


def attrs(host: str = CODECOMMIT, path: str | None = "v1/repos/demo", protocol: str = "https") -> str:
    lines = [f"protocol={protocol}", f"host={host}"] + ([f"path={path}"] if path is not None else [])
    return "\n".join(lines) + "\n\n"


def token(sandbox: Sandbox, user: str = "alice") -> str:
    return sandbox.token_file(user).read_text().strip()


def test_answers_a_codecommit_host_with_a_password_signed_for_that_repository(sandbox: Sandbox, home: Path) -> None:
    run = helper(home, attrs(path="/v1/repos/demo"), CCWEB_URL=sandbox.api_url,
                 CCWEB_TOKEN_FILE=str(sandbox.token_file("alice")))
    assert run.code == 0, run.stderr
    assert run.stderr == ""
    assert "\r" not in run.stdout
    answer = run.answer
    assert list(answer) == ["username", "password", "password_expiry_utc"]
    access_key_id, session_token = answer["username"].split("%", 1)
    session = sandbox.sts.lookup(access_key_id)
    assert session is not None and session.credentials.session_token == session_token
    signed = datetime.strptime(answer["password"][:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    assert answer["password"] == git_password(session.credentials.secret_access_key, hostname=CODECOMMIT,
                                              path="/v1/repos/demo", region="us-east-2", now=signed)
    assert 0 < int(answer["password_expiry_utc"]) - signed.timestamp() <= 900


def test_tolerates_everything_git_may_send(sandbox: Sandbox, home: Path) -> None:
    stdin = ("capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=" + CODECOMMIT +
             "\npath=v1/repos/demo\nwwwauth[]=Basic realm=\"x\"\nwwwauth[]=Bearer\nsomething new\nfuture=1\n\n")
    run = helper(home, stdin, CCWEB_URL=sandbox.api_url, CCWEB_TOKEN=token(sandbox))
    assert run.code == 0, run.stderr
    assert set(run.answer) == {"username", "password", "password_expiry_utc"}


def test_configured_git_endpoint_is_answered(sandbox: Sandbox, home: Path) -> None:
    run = helper(home, attrs(sandbox.git_host, protocol="http"), CCWEB_URL=sandbox.api_url, CCWEB_TOKEN=token(sandbox))
    assert run.code == 0, run.stderr
    assert run.answer["password"]


@pytest.mark.parametrize("host", ["github.com", "git-codecommit.us-east-1.amazonaws.com.evil.example", "127.0.0.1:1"])
def test_other_hosts_get_no_answer_so_git_asks_the_next_helper(sandbox: Sandbox, home: Path, host: str) -> None:
    run = helper(home, attrs(host), CCWEB_URL=sandbox.api_url, CCWEB_TOKEN=token(sandbox))
    assert (run.code, run.stdout, run.stderr) == (0, "", "")


def test_other_hosts_without_any_service_configured_get_no_answer(home: Path) -> None:
    run = helper(home, attrs("gitlab.example.com"))
    assert (run.code, run.stdout, run.stderr) == (0, "", "")


@pytest.mark.parametrize("stdin", ["protocol=ssh\nhost=" + CODECOMMIT + "\n\n", "protocol=https\n\n", ""],
                         ids=["ssh", "no-host", "nothing"])
def test_requests_that_are_not_https_git_get_no_answer(home: Path, stdin: str) -> None:
    run = helper(home, stdin, CCWEB_URL="http://127.0.0.1:9", CCWEB_TOKEN="x.y.z")
    assert (run.code, run.stdout, run.stderr) == (0, "", "")


def test_denied_identity_is_told_why_and_git_is_told_to_quit(sandbox: Sandbox, home: Path) -> None:
    run = helper(home, attrs(), CCWEB_URL=sandbox.api_url, CCWEB_TOKEN=token(sandbox, "mallory"))
    run.assert_refused("ccweb: No ccweb rule grants mallory@example.net")
    assert token(sandbox, "mallory") not in run.stderr


def test_missing_path_asks_for_use_http_path(sandbox: Sandbox, home: Path) -> None:
    run = helper(home, attrs(path=None), CCWEB_URL=sandbox.api_url, CCWEB_TOKEN=token(sandbox))
    run.assert_refused("git config --global credential.useHttpPath true")


def test_bad_repository_path_is_refused_by_the_service(sandbox: Sandbox, home: Path) -> None:
    run = helper(home, attrs(path="v1/repos/a/b"), CCWEB_URL=sandbox.api_url, CCWEB_TOKEN=token(sandbox))
    run.assert_refused("ccweb: ")
    assert "v1/repos/" in run.stderr


def test_codecommit_host_without_a_service_says_what_to_configure(home: Path) -> None:
    helper(home, "")  # nothing configured in this HOME
    run = helper(home, attrs())
    run.assert_refused("set CCWEB_URL, or run `git config --global ccweb.url")


def test_service_url_from_git_config(sandbox: Sandbox, home: Path) -> None:
    subprocess.run(["git", "config", "--global", "ccweb.url", sandbox.api_url], env={**os.environ, "HOME": str(home)},
                   check=True)
    run = helper(home, attrs(), CCWEB_TOKEN=token(sandbox))
    assert run.code == 0, run.stderr
    assert run.answer["password"]


def test_per_url_service_wins_over_the_global_one(sandbox: Sandbox, home: Path) -> None:
    config = {**os.environ, "HOME": str(home)}
    subprocess.run(["git", "config", "--global", "ccweb.url", "http://127.0.0.1:9"], env=config, check=True)
    subprocess.run(["git", "config", "--global", f"credential.https://{CODECOMMIT}.ccwebUrl", sandbox.api_url],
                   env=config, check=True)
    run = helper(home, attrs(), CCWEB_TOKEN=token(sandbox))
    assert run.code == 0, run.stderr
    other = helper(home, attrs("git-codecommit.eu-west-1.amazonaws.com"), CCWEB_TOKEN=token(sandbox))
    other.assert_refused("http://127.0.0.1:9")  # the global service, which is not running


@pytest.mark.parametrize(("url", "sentence"), [
    ("http://ccweb.example.com", "sends your token only over https"),
    ("ftp://127.0.0.1/", "must be an https:// URL"),
    ("https://user@ccweb.example.com", "must be an https:// URL"),
    ("https://ccweb.example.com:99999", "is not a URL"),
], ids=["plain-http-remote", "ftp", "userinfo", "bad-port"])
def test_unsafe_or_malformed_service_urls_are_refused_before_any_network(home: Path, url: str, sentence: str) -> None:
    run = helper(home, attrs(), CCWEB_URL=url, CCWEB_TOKEN="PLANTED.TOKEN.VALUE")
    run.assert_refused(sentence)
    assert "PLANTED.TOKEN.VALUE" not in run.stderr


@pytest.mark.parametrize(("env", "sentence"), [
    ({}, "no OIDC token found: set CCWEB_TOKEN"),
    ({"CCWEB_TOKEN_FILE": "/nonexistent/token.jwt"}, "cannot read the token file /nonexistent/token.jwt"),
    ({"CCWEB_TOKEN": "two words"}, "CCWEB_TOKEN does not hold a single OIDC token"),
    ({"CCWEB_TOKEN": "   "}, "no OIDC token found"),
    ({"CCWEB_TIMEOUT": "soon"}, "CCWEB_TIMEOUT must be a number of seconds"),
], ids=["none", "missing-file", "spaces", "blank", "bad-timeout"])
def test_token_problems_are_explained(sandbox: Sandbox, home: Path, env: dict[str, str], sentence: str) -> None:
    run = helper(home, attrs(), CCWEB_URL=sandbox.api_url, **env)
    run.assert_refused(sentence)


def test_empty_token_file_is_explained(sandbox: Sandbox, home: Path) -> None:
    empty = home / "empty.jwt"
    empty.write_text("\n")
    run = helper(home, attrs(), CCWEB_URL=sandbox.api_url, CCWEB_TOKEN_FILE=str(empty))
    run.assert_refused(f"the token file {empty} named by CCWEB_TOKEN_FILE is empty")


def test_token_variable_wins_over_token_file(sandbox: Sandbox, home: Path) -> None:
    run = helper(home, attrs(), CCWEB_URL=sandbox.api_url, CCWEB_TOKEN=token(sandbox, "mallory"),
                 CCWEB_TOKEN_FILE=str(sandbox.token_file("alice")))
    run.assert_refused("mallory@example.net")


def test_expired_token_is_explained(sandbox: Sandbox, home: Path) -> None:
    expired = sandbox.issuer.mint_user("alice", ttl=60, now=1_700_000_000)
    run = helper(home, attrs(), CCWEB_URL=sandbox.api_url, CCWEB_TOKEN=expired)
    run.assert_refused("ccweb: The OIDC token was refused: it has expired")
    assert expired not in run.stderr


def test_unreachable_service_names_its_url(home: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    run = helper(home, attrs(), CCWEB_URL=dead, CCWEB_TOKEN="PLANTED.TOKEN.VALUE")
    run.assert_refused(f"cannot reach the ccweb service at {dead}")
    assert "PLANTED.TOKEN.VALUE" not in run.stderr


def test_a_hanging_service_is_cut_by_the_timeout(home: Path) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        run = helper(home, attrs(), CCWEB_URL=url, CCWEB_TOKEN="a.b.c", CCWEB_TIMEOUT="0.5")
        elapsed = time.monotonic() - started
    run.assert_refused(f"the ccweb service at {url} did not answer within 0.5 seconds")
    assert elapsed < 30  # bounded: it did not wait for the default 10 s per attempt, nor forever


class _Canned(http.server.BaseHTTPRequestHandler):
    status = 200
    body: bytes = b""
    content_type = "application/json"
    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer()

    def _answer(self) -> None:
        self.seen.append(dict(self.headers))
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("Retry-After", "7")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_: Any) -> None:
        pass


@contextlib.contextmanager
def canned(status: int, body: bytes, content_type: str = "application/json",
           tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_Canned,), {"status": status, "body": body, "content_type": content_type, "seen": seen})
    with serve_http(handler, tls) as url:
        yield url, seen


@pytest.mark.parametrize("login", [b"true", b"5", b'"x"', b"[1, null, {}]"])
def test_odd_discovery_shapes_are_explained_not_a_traceback(home: Path, login: bytes) -> None:
    body = b'{"audience": "ccweb", "git_endpoints": [], "login": ' + login + b"}"
    with canned(200, body) as (url, _):
        run = helper(home, attrs(), CCWEB_URL=url)
    run.assert_refused("no OIDC token found")


@pytest.mark.parametrize(("status", "body", "sentence"), [
    (502, b"<html>Bad gateway</html>", "answered HTTP 502 with something that is not ccweb's JSON"),
    (200, b'{"username": "u"}', "answered without a username and password"),
    (200, b'{"username": "u", "password": "p"}', "answered without password_expiry_utc"),
    (200, b'{"username": "u", "password": "p\\nquit=0", "password_expiry_utc": 1}', "a credential git cannot use"),
    (503, b'{"error": "upstream_unavailable", "detail": "AWS STS is failing."}',
     "AWS STS is failing (retry after 7 s)"),
    (418, b'{"error": "teapot"}', "the service refused the request (HTTP 418, teapot)"),
], ids=["html", "no-password", "no-expiry", "injected-line", "retry-after", "no-detail"])
def test_answers_that_are_not_a_credential_are_explained(home: Path, status: int, body: bytes, sentence: str) -> None:
    with canned(status, body, "text/html" if body.startswith(b"<") else "application/json") as (url, _):
        run = helper(home, attrs(), CCWEB_URL=url, CCWEB_TOKEN="a.b.c")
    run.assert_refused(sentence)


def test_tls_is_verified_and_a_company_ca_can_be_trusted(home: Path, tmp_path: Path) -> None:
    cert, context = self_signed(tmp_path)
    body = json.dumps({"username": "AKIA%tok", "password": "20261122T101500Z" + "0" * 64,
                       "password_expiry_utc": 1795343400}).encode()
    with canned(200, body, tls=context) as (url, seen):
        untrusted = helper(home, attrs(), CCWEB_URL=url, CCWEB_TOKEN="PLANTED.TOKEN.VALUE")
        trusted = helper(home, attrs(), CCWEB_URL=url, CCWEB_TOKEN="PLANTED.TOKEN.VALUE", SSL_CERT_FILE=str(cert))
    untrusted.assert_refused("could not be verified")
    assert "SSL_CERT_FILE" in untrusted.stderr
    assert trusted.code == 0, trusted.stderr
    assert trusted.answer["password_expiry_utc"] == "1795343400"
    assert len(seen) == 1 and seen[0]["Authorization"] == "Bearer PLANTED.TOKEN.VALUE"  # only over verified TLS


@pytest.mark.parametrize("command", ["store", "erase"])
def test_store_and_erase_return_at_once_with_no_network_and_no_heavy_imports(home: Path, command: str) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        run = helper(home, attrs() + "username=u\npassword=p\n", command, CCWEB_URL=url, CCWEB_TOKEN="a.b.c")
        silent.settimeout(0.2)
        with pytest.raises(TimeoutError):
            silent.accept()  # nobody connected
    assert (run.code, run.stdout, run.stderr) == (0, "", "")
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from ccweb_helper.cli import main; main(['" + command + "']); "
         "print(sorted(m for m in ('json', 'socket', 'ssl', 'http.client', 'subprocess', 'ccweb_helper.get') "
         "if m in sys.modules))"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "helper")}, capture_output=True, text=True, check=True,
    )
    assert probe.stdout.strip() == "[]"


def test_unknown_operations_are_ignored_as_git_requires(home: Path) -> None:
    run = helper(home, attrs(), "frobnicate")
    assert (run.code, run.stdout, run.stderr) == (0, "", "")


def test_the_helper_runs_on_the_standard_library_alone(tmp_path: Path) -> None:
    """No site-packages at all (-S -I): every module of the helper imports, and --version runs."""
    code = (
        "import sys, pkgutil; sys.path.insert(0, sys.argv[1]); import ccweb_helper; "
        "[__import__('ccweb_helper.' + m.name) for m in pkgutil.iter_modules(ccweb_helper.__path__) "
        "if m.name != '__main__']; "
        "from ccweb_helper.cli import main; main(['--version'])"
    )
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(ROOT / "helper")], capture_output=True,
                            text=True, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ccweb-helper ")


def _ctrl_c_at_its_default() -> None:
    """In the child: SIGINT as git leaves it. A test run started in the background of a shell (``cmd &``) hands its
    children SIGINT ignored, and Python installs no KeyboardInterrupt handler for a signal ignored on entry."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_while_waiting_stops_git_without_a_traceback(home: Path) -> None:
    with socket.socket() as silent:  # accepts connections and never answers: the helper waits
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        process = subprocess.Popen(
            [sys.executable, "-m", "ccweb_helper", "get"], env=home_env(home, CCWEB_TOKEN="PLANTED.TOKEN.VALUE",
                                                                         CCWEB_URL=f"http://127.0.0.1:{silent.getsockname()[1]}"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=_ctrl_c_at_its_default,  # noqa: PLW1509 (only a signal's disposition)
        )
        assert process.stdin is not None
        process.stdin.write(attrs())
        process.stdin.flush()
        connection, _ = silent.accept()  # the helper is now waiting for the service
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        connection.close()
    assert process.returncode == 130
    assert out == "quit=1\n"
    assert err.strip() == "ccweb: cancelled."


def _hashed_directory(directory: Path, *certs: Path) -> Path:
    """A CA directory the way ``update-ca-certificates`` leaves one: each certificate under OpenSSL's hash name."""
    directory.mkdir()
    for cert in certs:
        name = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(cert)], capture_output=True,
                              text=True, check=True).stdout.strip()
        (directory / f"{name}.0").write_bytes(cert.read_bytes())
    return directory


def test_a_hashed_ca_directory_is_read_lazily_and_trusted_like_the_bundle(home: Path, tmp_path: Path) -> None:
    from ccweb_helper.transport import tls_context

    cert, context = self_signed(tmp_path)
    authorities = _hashed_directory(tmp_path / "certs", cert)
    (tmp_path / "stranger").mkdir()
    others = _hashed_directory(tmp_path / "others", self_signed(tmp_path / "stranger")[0])
    body = json.dumps({"username": "AKIA%tok", "password": "20261122T101500Z" + "0" * 64,
                       "password_expiry_utc": 1795343400}).encode()
    with canned(200, body, tls=context) as (url, seen):
        trusted = helper(home, attrs(), CCWEB_URL=url, CCWEB_TOKEN="a.b.c", SSL_CERT_DIR=str(authorities))
        elsewhere = helper(home, attrs(), CCWEB_URL=url, CCWEB_TOKEN="a.b.c", SSL_CERT_DIR=str(others))
    assert trusted.code == 0, trusted.stderr
    assert trusted.answer["password_expiry_utc"] == "1795343400"
    elsewhere.assert_refused("could not be verified")  # not in that directory, nor in the system's bundle
    assert len(seen) == 1
    previous = os.environ.pop("SSL_CERT_FILE", None)
    try:
        os.environ["SSL_CERT_DIR"] = str(authorities)
        assert tls_context()[1] is True  # lazily, from the hashed directory
        os.environ["SSL_CERT_FILE"] = str(cert)
        assert tls_context()[1] is False  # a bundle named by SSL_CERT_FILE is always loaded whole
    finally:
        os.environ.pop("SSL_CERT_DIR", None)
        os.environ.pop("SSL_CERT_FILE", None)
        if previous is not None:
            os.environ["SSL_CERT_FILE"] = previous


def test_an_authority_missing_from_the_hashed_directory_is_looked_for_in_every_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ccweb_helper import client, transport

    cert, server = self_signed(tmp_path)
    asked: list[bool] = []

    def contexts(every_authority: bool = False) -> tuple[ssl.SSLContext, bool]:
        asked.append(every_authority)
        if every_authority:
            return ssl.create_default_context(cafile=str(cert)), False
        return ssl.create_default_context(cadata=""), True  # a directory without this server's authority

    monkeypatch.setattr(transport, "tls_context", contexts)
    with canned(200, b'{"ok": true}', tls=server) as (url, seen):
        answer = client.http_json(url + "/x", "the test service", timeout=10)
    assert answer.status == 200 and answer.body == {"ok": True}
    assert asked == [False, True] and len(seen) == 1
