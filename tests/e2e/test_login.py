"""Interactive login end to end: a real OpenID provider (the npm package oidc-provider, on loopback), the
helper as a subprocess, a scripted browser driving the provider's own login, consent and device pages, and
the real ccweb service (the sandbox, with the provider as its issuer) in front of the signature-checking
git server."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pty
import re
import select
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from ccweb.config import parse_config
from ccweb.sandbox.dev import ACCOUNT, REGION, Sandbox, helper_command

ROOT = Path(__file__).resolve().parents[2]
OIDC = ROOT / "tests" / "oidc"
BROWSER = OIDC / "browser.py"
CLIENT_ID = "ccweb-cli"
CODECOMMIT = "git-codecommit.us-east-2.amazonaws.com"
STRIP = ("GIT_", "CCWEB_", "SSL_CERT", "SSH_", "BROWSER", "DISPLAY", "WAYLAND_DISPLAY", "XDG_", "CI",
         "GITHUB_", "GITLAB_", "CIRCLE", "BUILDKITE", "BITBUCKET_", "TF_BUILD", "SYSTEM_", "ACTIONS_")


class Provider:
    def __init__(self, process: subprocess.Popen[str], issuer: str) -> None:
        self.process = process
        self.issuer = issuer

    def grants(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.issuer + "/_test/grants", timeout=10) as answer:
            found: list[dict[str, Any]] = json.load(answer)
        return found

    def refresh_grant(self, refresh_token: str) -> tuple[int, dict[str, Any]]:
        """The token endpoint's answer to a refresh grant, as any client would get it."""
        body = urlencode({"grant_type": "refresh_token", "refresh_token": refresh_token,
                          "client_id": CLIENT_ID}).encode()
        request = urllib.request.Request(self.issuer + "/token", data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)


@contextlib.contextmanager
def start_provider(**env: str) -> Iterator[Provider]:
    if not (OIDC / "node_modules" / "oidc-provider").is_dir():
        subprocess.run(["npm", "ci", "--prefix", str(OIDC), "--no-audit", "--no-fund"], check=True,
                       capture_output=True, timeout=300)
    process = subprocess.Popen(
        ["node", str(OIDC / "provider.mjs")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env={**os.environ, "OIDC_CLIENT_ID": CLIENT_ID, **env},
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else ""
        assert line, "the OIDC provider did not start (is node installed? npm ci --prefix tests/oidc)"
        yield Provider(process, json.loads(line)["issuer"])
    finally:
        assert process.stdin is not None
        process.stdin.close()  # the provider exits when its stdin closes
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


@pytest.fixture(scope="session")
def provider() -> Iterator[Provider]:
    with start_provider() as running:
        yield running


def login_policy(issuer: str, git_host: str) -> dict[str, Any]:
    return {
        "issuers": [{"name": "corp", "issuer": issuer, "audiences": [CLIENT_ID],
                     "login": {"client_id": CLIENT_ID,
                               "scopes": ["openid", "email", "profile", "offline_access", "groups"]}}],
        "rules": [{"name": "developers", "issuer": "corp", "claims": {"groups": "engineering"},
                   "role_arn": f"arn:aws:iam::{ACCOUNT}:role/ccweb-developers", "repositories": ["*"],
                   "access": "write"}],
        "git_endpoints": [{"host": git_host, "region": REGION}],
        "aws": {"session_duration": 3600},
    }


@contextlib.contextmanager
def service_for(provider: Provider, workdir: Path) -> Iterator[Sandbox]:
    box = Sandbox(port=0, workdir=workdir)
    box.config = parse_config(login_policy(provider.issuer, box.git_host))
    with box.running() as running:
        yield running


@pytest.fixture(scope="module")
def sandbox(provider: Provider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with service_for(provider, tmp_path_factory.mktemp("sandbox")) as box:
        yield box


class Run:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr

    @property
    def answer(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.stdout.splitlines())


def browser_command(home: Path) -> str:
    """An executable for BROWSER (Python's webbrowser runs BROWSER as one program, without arguments). Like
    real browsers it writes to its stdout, which must never reach git through the helper's stdout."""
    path = home / "browser"
    if not path.exists():
        path.write_text(f"#!/bin/sh\necho browser-noise-on-stdout\n"
                        f"exec {shlex.quote(sys.executable)} {shlex.quote(str(BROWSER))} \"$@\"\n")
        path.chmod(0o700)
    return str(path)


def environment(home: Path, sandbox: Sandbox, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(STRIP)}
    env.update({
        "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "PYTHONPATH": str(ROOT / "helper"),
        "CCWEB_URL": sandbox.api_url, "CCWEB_CACHE_DIR": str(home / "cache"),
        "BROWSER": browser_command(home), "TEST_BROWSER_LOG": str(home / "browser.log"),
    })
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


class Started:
    """A helper process; with a terminal, its stderr is a pty read from the start (a pty loses what is
    left unread once the process has gone)."""

    def __init__(self, args: list[str], env: dict[str, str], stdin: str, *, terminal: bool,
                 controlling: bool = False) -> None:
        self.master = -1
        self.chunks: list[bytes] = []
        slave = -1
        self.tty = -1
        command = [sys.executable, "-m", "ccweb_helper", *args]
        if controlling:  # a terminal the process could open as /dev/tty, while its stderr is a pipe
            self.tty, tty_slave = pty.openpty()
            name = os.ttyname(tty_slave)
            os.close(tty_slave)
            # a session leader that opens a terminal makes it its controlling terminal, then becomes the helper
            command = [sys.executable, "-c", "import os, sys; os.close(os.open(sys.argv[1], os.O_RDWR)); "
                       "os.execv(sys.executable, [sys.executable, '-m', 'ccweb_helper', *sys.argv[2:]])", name, *args]
        if terminal:
            self.master, slave = pty.openpty()
        given, feed = os.pipe()  # git's attributes, all there at once: parallel helpers really run in parallel
        os.write(feed, stdin.encode())
        os.close(feed)
        self.process = subprocess.Popen(
            command, env=env, stdin=given, stdout=subprocess.PIPE,
            stderr=slave if terminal else subprocess.PIPE, text=True, start_new_session=True,
        )
        os.close(given)
        self.reader: threading.Thread | None = None
        if terminal:
            os.close(slave)
            self.reader = threading.Thread(target=self._drain, daemon=True)
            self.reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO once the process has gone
                return
            if not data:
                return
            self.chunks.append(data)

    def finish(self, timeout: float = 120) -> Run:
        out, err = self.process.communicate(timeout=timeout)
        if self.tty != -1:
            os.close(self.tty)
        if self.reader is not None:
            self.reader.join(10)
            os.close(self.master)
            err = b"".join(self.chunks).decode().replace("\r\n", "\n")
        return Run(self.process.returncode, out, err)


def start(args: list[str], env: dict[str, str], stdin: str = "", *, terminal: bool = False,
          controlling: bool = False) -> Started:
    """Start the helper in its own session (no controlling terminal); with ``terminal`` its stderr is a pty,
    with ``controlling`` it has a controlling terminal (but stderr stays a pipe)."""
    return Started(args, env, stdin, terminal=terminal, controlling=controlling)


def finish(started: Started, timeout: float = 120) -> Run:
    return started.finish(timeout)


def helper(args: list[str], env: dict[str, str], stdin: str = "", *, terminal: bool = False) -> Run:
    return finish(start(args, env, stdin, terminal=terminal))


def attrs(host: str = CODECOMMIT, path: str = "v1/repos/demo", protocol: str = "https") -> str:
    return f"protocol={protocol}\nhost={host}\npath={path}\n\n"


def cached(home: Path) -> dict[str, Any]:
    document = json.loads((home / "cache" / "login.json").read_text())
    (entry,) = document["logins"].values()
    assert isinstance(entry, dict)
    return entry


def browser_runs(home: Path) -> int:
    log = home / "browser.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def assert_no_secrets(entry: dict[str, Any], *outputs: str) -> None:
    for text in outputs:
        assert entry["id_token"] not in text
        assert entry["id_token"].split(".")[1] not in text
        if "refresh_token" in entry:
            assert entry["refresh_token"] not in text


def assert_password(run: Run) -> None:
    assert run.code == 0, run.stderr
    assert list(run.answer) == ["username", "password", "password_expiry_utc"], run.stdout
    assert re.fullmatch(r"\d{8}T\d{6}Z[0-9a-f]{64}", run.answer["password"])


def login(home: Path, sandbox: Sandbox, *args: str, **extra: str) -> Run:
    run = helper(["login", *args], environment(home, sandbox, **extra))
    assert run.code == 0, run.stderr
    return run


def test_login_in_the_browser_then_get_answers_git(sandbox: Sandbox, provider: Provider, home: Path) -> None:
    run = login(home, sandbox)
    assert "sign in to corp in your browser" in run.stderr
    assert "code_challenge_method=S256" in run.stderr and "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in run.stderr
    assert "signed in to corp as alice@example.com" in run.stderr
    assert run.stdout.startswith("Signed in to corp until ") and "renewed automatically" in run.stdout
    assert browser_runs(home) == 1
    entry = cached(home)
    assert set(entry) == {"name", "issuer", "client_id", "service", "id_token", "refresh_token", "expires_at"}
    assert (entry["issuer"], entry["client_id"], entry["service"]) == (provider.issuer, CLIENT_ID, sandbox.api_url)

    got = helper(["get"], environment(home, sandbox), attrs())
    assert_password(got)
    assert got.stderr == ""
    assert browser_runs(home) == 1, "the cached login was used"
    assert_no_secrets(entry, run.stdout, run.stderr, got.stdout, got.stderr)
    # the cache holds identity-provider tokens only: never the CodeCommit password
    for path in home.rglob("*"):
        if path.is_file():
            assert got.answer["password"] not in path.read_text(errors="replace"), path
            assert got.answer["username"].split("%")[1] not in path.read_text(errors="replace"), path


def test_a_fixed_redirect_port_for_providers_that_match_it_exactly(sandbox: Sandbox, home: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = login(home, sandbox, "--browser", CCWEB_LOGIN_PORT=str(port))
    assert f"redirect_uri=http%3A%2F%2F127.0.0.1%3A{port}%2Fcallback" in run.stderr
    assert "signed in to corp as alice@example.com" in run.stderr


def test_a_busy_or_bad_redirect_port_is_explained(sandbox: Sandbox, home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        taken = helper(["login", "--browser"], environment(home, sandbox, CCWEB_LOGIN_PORT=str(port)))
    assert taken.code == 1 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr
    assert "CCWEB_LOGIN_PORT" in taken.stderr and "Traceback" not in taken.stderr
    bad = helper(["login", "--browser"], environment(home, sandbox, CCWEB_LOGIN_PORT="80"))
    assert bad.code == 1 and "CCWEB_LOGIN_PORT must be a port number from 1024 to 65535" in bad.stderr
    assert browser_runs(home) == 0


def test_cache_directory_is_0700_and_file_0600(sandbox: Sandbox, home: Path) -> None:
    login(home, sandbox, "--browser")
    assert stat.S_IMODE((home / "cache").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "cache" / "login.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in (home / "cache").iterdir()) == ["login.json", "login.lock"]


def test_default_cache_directory_is_under_xdg_cache_home(sandbox: Sandbox, home: Path) -> None:
    env = environment(home, sandbox, XDG_CACHE_HOME=str(home / "xdg"))
    del env["CCWEB_CACHE_DIR"]
    run = helper(["login"], env)
    assert run.code == 0, run.stderr
    assert (home / "xdg" / "ccweb" / "login.json").is_file()
    assert stat.S_IMODE((home / "xdg" / "ccweb").stat().st_mode) == 0o700


def device_login(home: Path, env: dict[str, str], args: list[str]) -> tuple[Run, str]:
    """Run a device sign-in: read the address and code from the helper's stderr, then submit them."""
    started = start(["login", *args], env)
    assert started.process.stderr is not None
    seen = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = started.process.stderr.readline()
        seen += line
        found = re.search(r"open (\S+) on any device and enter the code (\S+)", line)
        if found:
            break
    assert found, seen
    other_device = {k: v for k, v in env.items() if k != "TEST_BROWSER_LOG"}
    browser = subprocess.run([sys.executable, str(BROWSER), "--user-code", found.group(2), found.group(1)],
                             env=other_device, capture_output=True, text=True, timeout=60, check=False)
    assert browser.returncode == 0, browser.stderr
    run = started.finish()
    return Run(run.code, run.stdout, seen + run.stderr), found.group(2)


@pytest.mark.parametrize(
    ("args", "extra"),
    [(["--device"], {}), ([], {"SSH_CONNECTION": "10.0.0.1 50000 10.0.0.2 22", "BROWSER": ""}),
     ([], {"BROWSER": "", "DISPLAY": "", "WAYLAND_DISPLAY": ""})],
    ids=["--device", "over-ssh", "no-display"],
)
def test_device_flow_prints_the_address_and_code_then_get_works(
    sandbox: Sandbox, provider: Provider, home: Path, args: list[str], extra: dict[str, str],
) -> None:
    if not args and "DISPLAY" in extra and not sys.platform.startswith("linux"):
        pytest.skip("the no-display rule is for Linux and the BSDs")
    env = environment(home, sandbox, **extra)
    run, user_code = device_login(home, env, args)
    assert run.code == 0, run.stderr
    assert f"{provider.issuer}/device" in run.stderr and user_code in run.stderr
    assert "signed in to corp as alice@example.com" in run.stderr
    assert "in your browser" not in run.stderr, run.stderr
    assert browser_runs(home) == 0
    assert any(g["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code" for g in provider.grants())
    got = helper(["get"], environment(home, sandbox), attrs())
    assert_password(got)
    assert_no_secrets(cached(home), run.stdout, run.stderr, got.stdout, got.stderr)


def test_issuer_without_device_endpoint_falls_back_to_the_browser(home: Path, tmp_path: Path) -> None:
    with start_provider(OIDC_NO_DEVICE="1") as plain, service_for(plain, tmp_path / "sandbox") as box:
        run = helper(["login", "--device"], environment(home, box))
        assert run.code == 0, run.stderr
        assert "offers no device sign-in; using the browser instead" in run.stderr
        assert browser_runs(home) == 1
        assert_password(helper(["get"], environment(home, box), attrs()))


def test_get_signs_in_when_a_terminal_is_attached(sandbox: Sandbox, home: Path) -> None:
    got = helper(["get"], environment(home, sandbox), attrs(), terminal=True)
    assert_password(got)
    assert "sign in to corp in your browser" in got.stderr
    assert "browser-noise-on-stdout" in got.stderr, "the browser's stdout went to stderr, not to git"
    assert browser_runs(home) == 1
    assert_no_secrets(cached(home), got.stdout, got.stderr)


def recording_browser(home: Path) -> str:
    """A BROWSER that records each address the helper opens (one a line in ``opened``), then signs in."""
    path = home / "recording-browser"
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$1\" >> {shlex.quote(str(home / 'opened'))}\n"
                    f"exec {shlex.quote(browser_command(home))} \"$@\"\n")
    path.chmod(0o700)
    return str(path)


def opened(home: Path) -> list[dict[str, list[str]]]:
    """The query of each authorization request the helper opened in the recording browser."""
    path = home / "opened"
    return [parse_qs(urlsplit(line).query) for line in path.read_text().splitlines()] if path.exists() else []


def test_another_service_naming_the_same_issuer_gets_a_sign_in_only_on_purpose(
    sandbox: Sandbox, provider: Provider, home: Path, tmp_path: Path,
) -> None:
    first = login(home, sandbox, BROWSER=recording_browser(home))
    assert "you are signing in to" not in first.stderr
    assert "prompt" not in opened(home)[0], "the first service's sign-in may use a live session"
    company = cached(home)
    with service_for(provider, tmp_path / "other") as other:
        got = helper(["get"], environment(home, other), attrs(), terminal=True)
        assert (got.code, got.stdout) == (1, "quit=1\n")
        assert got.stderr == (
            f"ccweb: you have not signed in for the ccweb service at {other.api_url} (a login is used only with the "
            f"service it was made for); run `ccweb-helper login --url {other.api_url}`.\n"
        )
        assert browser_runs(home) == 1, "git at a terminal started no sign-in for the other service"

        run = helper(["login", "--url", other.api_url], environment(home, sandbox, BROWSER=recording_browser(home)))
        assert run.code == 0, run.stderr
        warning = (f"ccweb: you are signing in to {other.api_url} with the identity provider you use for "
                   f"{sandbox.api_url}: {other.api_url} will receive a token that {sandbox.api_url} accepts too, so "
                   f"sign in only if you trust {other.api_url} with it.\n")
        assert run.stderr.startswith(warning + "ccweb: sign in to corp in your browser"), run.stderr
        assert browser_runs(home) == 2
        assert opened(home)[1]["prompt"] == ["login"], "the identity provider asks again, even in a live session"
        assert "&prompt=login" in run.stderr, "the address shown to open by hand asks the same"
        entries = json.loads((home / "cache" / "login.json").read_text())["logins"]
        assert {e["service"] for e in entries.values()} == {sandbox.api_url, other.api_url}
        assert company in entries.values(), "the company's login is kept as it was"
        assert_password(helper(["get"], environment(home, other), attrs()))  # now from the cache
    assert browser_runs(home) == 2


def test_a_cache_directory_of_another_user_is_not_used_and_the_login_lives_in_memory(
    sandbox: Sandbox, home: Path, tmp_path: Path,
) -> None:
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    import pwd

    shared = tmp_path / "shared"
    shared.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(shared, nobody.pw_uid, nobody.pw_gid)
    env = environment(home, sandbox, CCWEB_CACHE_DIR=str(shared))
    got = helper(["get"], env, attrs(), terminal=True)
    assert_password(got)
    notice = (f"ccweb: not using the cache directory {shared}: it is owned by another user (uid {nobody.pw_uid}); "
              "chown it to yourself, or set CCWEB_CACHE_DIR to a directory of your own. Working without a cache: a "
              "login is not kept.\n")
    assert got.stderr.startswith(notice) and got.stderr.count(notice) == 1, got.stderr
    assert "sign in to corp in your browser" in got.stderr
    assert list(shared.iterdir()) == [], "nothing was written there"
    again = helper(["get"], env, attrs())
    assert (again.code, again.stdout) == (1, "quit=1\n")
    assert again.stderr.startswith(notice) and "or sign in with `ccweb-helper login`" in again.stderr
    refused = helper(["login"], env)
    assert refused.code == 1 and refused.stderr == notice + "ccweb: no sign-in was started: it could not be kept.\n"
    assert browser_runs(home) == 1


def test_no_interactive_login_under_ci(sandbox: Sandbox, home: Path) -> None:
    got = helper(["get"], environment(home, sandbox, CI="true"), attrs(), terminal=True)
    assert (got.code, got.stdout) == (1, "quit=1\n")
    assert got.stderr.startswith("ccweb: no OIDC token found") and "CI=true, so no interactive login" in got.stderr
    assert browser_runs(home) == 0


@pytest.mark.parametrize("extra", [{}, {"CCWEB_LOGIN": "never"}, {"GIT_TERMINAL_PROMPT": "0"}],
                         ids=["no-terminal", "CCWEB_LOGIN=never", "GIT_TERMINAL_PROMPT=0"])
def test_without_a_person_get_says_how_to_sign_in(sandbox: Sandbox, home: Path, extra: dict[str, str]) -> None:
    got = helper(["get"], environment(home, sandbox, **extra), attrs(), terminal=bool(extra))
    assert (got.code, got.stdout) == (1, "quit=1\n")
    assert "or sign in with `ccweb-helper login`" in got.stderr and got.stderr.count("\n") == 1
    assert browser_runs(home) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="acquiring a controlling terminal the Linux way")
def test_no_login_when_stderr_is_not_a_terminal_though_there_is_one(sandbox: Sandbox, home: Path) -> None:
    started = start(["get"], environment(home, sandbox), attrs(), controlling=True)
    got = finish(started)
    assert (got.code, got.stdout) == (1, "quit=1\n")
    assert "or sign in with `ccweb-helper login`" in got.stderr
    assert browser_runs(home) == 0


IDLE = """
import os, socket, sys, time
from urllib.parse import parse_qs, urlsplit
redirect = urlsplit(parse_qs(urlsplit(sys.argv[1]).query)["redirect_uri"][0])
idle = socket.create_connection((redirect.hostname, redirect.port))
time.sleep(0.5)  # the helper takes this connection first
if os.fork() == 0:
    with open(sys.argv[2], "w") as pid:
        pid.write(str(os.getpid()))
    time.sleep(120)
"""


def test_an_idle_connection_to_the_callback_port_does_not_stall_the_sign_in(sandbox: Sandbox, home: Path) -> None:
    """A port scanner or a browser's speculative preconnect: a connection that never sends a request."""
    (home / "idle.py").write_text(IDLE)
    browser = home / "idle-browser"
    browser.write_text(f"#!/bin/sh\n{shlex.quote(sys.executable)} {shlex.quote(str(home / 'idle.py'))} \"$1\" "
                       f"{shlex.quote(str(home / 'idle.pid'))} </dev/null >/dev/null 2>&1\n"
                       f"exec {shlex.quote(browser_command(home))} \"$@\"\n")
    browser.chmod(0o700)
    started = time.monotonic()
    try:
        run = helper(["login", "--browser"], environment(home, sandbox, BROWSER=str(browser)))
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((home / "idle.pid").read_text()), 9)
    assert run.code == 0, run.stderr
    assert time.monotonic() - started < 30
    assert (home / "idle.pid").exists(), "the idle connection was open during the sign-in"
    assert_password(helper(["get"], environment(home, sandbox), attrs()))


def test_a_hand_edited_cached_token_is_never_sent(sandbox: Sandbox, provider: Provider, home: Path) -> None:
    login(home, sandbox)
    entry = expire(home, seconds_left=3600)
    expire(home, seconds_left=3600, id_token=entry["id_token"] + "\r\nX-Injected: yes")
    grants = refresh_grants(provider)
    got = helper(["get"], environment(home, sandbox), attrs())
    assert_password(got)
    assert refresh_grants(provider) == grants + 1, "renewed with the refresh token instead"
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", cached(home)["id_token"], re.ASCII)


def test_a_cached_login_loads_no_server_code(sandbox: Sandbox, home: Path) -> None:
    login(home, sandbox)
    got = helper(["get"], environment(home, sandbox, PYTHONPROFILEIMPORTTIME="1"), attrs())
    assert_password(got)
    imported = {line.rsplit("|", 1)[1].strip() for line in got.stderr.splitlines() if line.startswith("import time:")}
    assert "ccweb_helper.login" in imported and "ccweb_helper.client" in imported
    assert not imported & {"ccweb_helper.callback", "http.server", "socketserver", "webbrowser", "tempfile"}


@pytest.mark.parametrize(
    "damage",
    ["bm90LWpzb24", "exp-1e300", "exp-1e999", "exp-huge-integer", "not-a-dict"],
    ids=["payload-not-json", "exp-1e300", "exp-infinite", "exp-huge-integer", "payload-a-list"],
)
def test_status_explains_a_damaged_login_in_one_line(sandbox: Sandbox, provider: Provider, home: Path,
                                                     damage: str) -> None:
    login(home, sandbox)
    header, body, signature = cached(home)["id_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    if damage.startswith("exp-"):
        number = {"exp-1e300": "1e300", "exp-1e999": "1e999", "exp-huge-integer": "1" + "0" * 400}[damage]
        text = json.dumps({**claims, "exp": 0}).replace('"exp": 0', f'"exp": {number}')
        body = base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()
    elif damage == "not-a-dict":
        body = base64.urlsafe_b64encode(b"[1]").rstrip(b"=").decode()
    else:
        body = damage
    expire(home, seconds_left=3600, id_token=f"{header}.{body}.{signature}")
    run = helper(["status"], environment(home, sandbox))
    assert run.code == 1
    assert run.stderr.startswith("ccweb: ") and run.stderr.count("\n") == 1, run.stderr
    assert "is damaged; run `ccweb-helper login`" in run.stderr


def test_logout_explains_a_cache_it_cannot_remove(sandbox: Sandbox, home: Path) -> None:
    (home / "cache" / "login.json").mkdir(parents=True)
    run = helper(["logout"], environment(home, sandbox))
    assert run.code == 1
    assert run.stderr.startswith("ccweb: cannot remove the login cache ") and run.stderr.count("\n") == 1, run.stderr


def expire(home: Path, seconds_left: int = 30, **changes: str) -> dict[str, Any]:
    """Make the cached ID token (nearly) expired, as time would."""
    path = home / "cache" / "login.json"
    document = json.loads(path.read_text())
    for entry in document["logins"].values():
        entry["expires_at"] = int(time.time()) + seconds_left
        entry.update(changes)
    path.write_text(json.dumps(document))
    return cached(home)


def refresh_grants(provider: Provider) -> int:
    return sum(g["grant_type"] == "refresh_token" for g in provider.grants())


def test_token_near_expiry_is_refreshed_silently_and_the_rotated_refresh_token_kept(
    sandbox: Sandbox, provider: Provider, home: Path,
) -> None:
    login(home, sandbox)
    before = expire(home, seconds_left=30)  # within the 60 s margin
    time.sleep(1.1)  # a new second: the refreshed ID token differs from the first in iat and exp
    grants = refresh_grants(provider)
    got = helper(["get"], environment(home, sandbox), attrs())
    assert_password(got)
    assert got.stderr == ""
    after = cached(home)
    assert refresh_grants(provider) == grants + 1, "the new ID token came from the refresh grant"
    assert after["id_token"] != before["id_token"] and after["expires_at"] > before["expires_at"]
    assert after["refresh_token"] != before["refresh_token"], "the rotated refresh token was stored"
    assert browser_runs(home) == 1
    assert provider.refresh_grant(before["refresh_token"])[0] == 400, "the old refresh token is spent"
    assert_no_secrets(after, got.stdout, got.stderr)
    assert_no_secrets(before, got.stdout, got.stderr)


def test_expired_login_without_a_terminal_says_run_login(sandbox: Sandbox, home: Path) -> None:
    login(home, sandbox)
    expire(home, seconds_left=-10, refresh_token="revoked-or-unknown")
    got = helper(["get"], environment(home, sandbox), attrs())
    assert (got.code, got.stdout) == (1, "quit=1\n")
    assert got.stderr == "ccweb: your login has expired; run `ccweb-helper login`.\n"


def test_expired_login_with_a_terminal_signs_in_again(sandbox: Sandbox, home: Path) -> None:
    login(home, sandbox)
    expire(home, seconds_left=-10, refresh_token="revoked-or-unknown")
    got = helper(["get"], environment(home, sandbox), attrs(), terminal=True)
    assert_password(got)
    assert "your login has expired; signing in again" in got.stderr
    assert browser_runs(home) == 2


def test_parallel_gets_share_one_refresh(sandbox: Sandbox, provider: Provider, home: Path) -> None:
    login(home, sandbox)
    expire(home, seconds_left=5)
    grants = refresh_grants(provider)
    env = environment(home, sandbox)
    runs = [finish(s) for s in [start(["get"], env, attrs()) for _ in range(4)]]
    for run in runs:
        assert_password(run)
    # refresh tokens rotate: a second refresh with the spent token would fail and revoke the whole grant
    assert refresh_grants(provider) == grants + 1


def test_parallel_gets_share_one_login(sandbox: Sandbox, home: Path) -> None:
    env = environment(home, sandbox)
    runs = [finish(s) for s in [start(["get"], env, attrs(), terminal=True) for _ in range(3)]]
    for run in runs:
        assert_password(run)
    assert browser_runs(home) == 1, "one sign-in in the browser for all of them"
    assert sum("waiting for another ccweb-helper" in run.stderr for run in runs) >= 1


def test_status_shows_who_until_when_and_what_you_may_reach(sandbox: Sandbox, provider: Provider,
                                                            home: Path) -> None:
    env = environment(home, sandbox)
    before = helper(["status"], env)
    assert before.code == 1
    assert before.stderr == "ccweb: not signed in; run `ccweb-helper login`.\n"
    login(home, sandbox)
    run = helper(["status"], env)
    assert run.code == 0, run.stderr
    assert "Signed in as alice@example.com (subject alice)" in run.stdout
    assert f"corp ({provider.issuer})" in run.stdout
    assert re.search(r"until +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; renewed automatically", run.stdout)
    assert (f"\n  rule developers: write access to * as arn:aws:iam::{ACCOUNT}:role/ccweb-developers, SourceIdentity "
            "alice@example.com\n") in run.stdout
    assert_no_secrets(cached(home), run.stdout, run.stderr)


def test_logout_revokes_the_refresh_token_and_removes_the_cache(sandbox: Sandbox, provider: Provider,
                                                                home: Path) -> None:
    login(home, sandbox)
    entry = cached(home)
    run = helper(["logout"], environment(home, sandbox))
    assert run.code == 0, run.stderr
    assert "Signed out" in run.stdout and "revoked 1 login" in run.stdout
    assert not (home / "cache" / "login.json").exists()
    status, body = provider.refresh_grant(entry["refresh_token"])
    assert (status, body.get("error")) == (400, "invalid_grant")
    assert helper(["status"], environment(home, sandbox)).code == 1
    again = helper(["logout"], environment(home, sandbox))
    assert (again.code, again.stdout) == (0, "Not signed in; nothing to forget.\n")
    assert_no_secrets(entry, run.stdout, run.stderr)


def test_git_clone_after_login(sandbox: Sandbox, home: Path) -> None:
    login(home, sandbox)
    env = environment(home, sandbox, GIT_TERMINAL_PROMPT="0")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "helper"), str(ROOT / "service")])
    target = home / "clone"
    result = subprocess.run(
        ["git", "-c", "credential.helper=", "-c", f"credential.helper={helper_command()}",
         "-c", "credential.useHttpPath=true", "clone", sandbox.repo_url("demo"), str(target)],
        env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, check=False,
        start_new_session=True,
    )
    assert result.returncode == 0, result.stderr
    assert (target / "README.md").exists()
    assert browser_runs(home) == 1
    assert_no_secrets(cached(home), result.stdout, result.stderr)


def test_helper_imports_only_the_standard_library() -> None:
    assert shutil.which("node"), "node runs the test identity provider"
    code = ("import sys, ccweb_helper.login, ccweb_helper.account, ccweb_helper.cache; "
            "print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in {'ccweb', 'yaml', 'httpx'}))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT / "helper")},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
