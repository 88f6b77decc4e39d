"""``ccweb-helper doctor``, and the helper-list computation it rests on, judged against the real git.

First a table of configurations where recorder helpers log the order in which ``git credential fill`` really
runs them, compared with ``gitconfig.effective``. Then doctor itself in a throwaway HOME: a good setup against
the sandbox exits 0, and each broken configuration exits 1 and names its fix."""

from __future__ import annotations

import contextlib
import email.utils
import http.server
import io
import json
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ccweb.sandbox.dev import Sandbox
from ccweb_helper import gitconfig
from ccweb_helper.doctor_git import GitChecks, classify, runs_module
from support import home_env, self_signed, serve_http

ROOT = Path(__file__).resolve().parents[2]
STANDARD = "git-codecommit.us-east-1.amazonaws.com"



# -- the helper list git builds, computed and observed -----------------------------------------------------

def _recorder(home: Path) -> str:
    script = home / "rec"
    script.write_text(f"#!/bin/sh\necho \"$1\" >> {home}/ran\ncat >/dev/null\n")
    script.chmod(0o755)
    return str(script)


ORDER_CASES: dict[str, tuple[dict[str, str], str, list[str]]] = {
    # name: ({file: content with REC for the recorder}, git's attributes, the helpers git runs in order)
    "url-and-plain-in-file-order": ({"global": """
[credential "https://git-codecommit.*.amazonaws.com"]
    helper = !REC A
[credential]
    helper = !REC B
[credential "https://git-codecommit.us-east-1.amazonaws.com"]
    helper = !REC C
"""}, f"https {STANDARD}", ["A", "B", "C"]),
    "system-global-local": ({"system": "[credential]\n helper = !REC S\n",
                             "global": '[credential "https://git-codecommit.*.amazonaws.com"]\n helper = !REC G\n',
                             "local": "[credential]\n helper = !REC L\n"}, f"https {STANDARD}", ["S", "G", "L"]),
    "empty-value-resets-what-came-before": ({
        "system": "[credential]\n helper = !REC S\n",
        "global": '[credential]\n helper = !REC U\n[credential "https://git-codecommit.*.amazonaws.com"]\n'
                  " helper =\n helper = !REC C\n",
        "local": "[credential]\n helper = !REC L\n"}, f"https {STANDARD}", ["C", "L"]),
    "reset-only-for-matching-urls": ({
        "system": "[credential]\n helper = !REC S\n",
        "global": '[credential "https://git-codecommit.*.amazonaws.com"]\n helper =\n helper = !REC C\n'},
        "https example.com", ["S"]),
    "plain-reset-after-url": ({
        "global": '[credential "https://git-codecommit.*.amazonaws.com"]\n helper = !REC A\n'
                  "[credential]\n helper =\n",
        "local": '[credential "https://git-codecommit.us-east-1.amazonaws.com"]\n helper = !REC B\n'},
        f"https {STANDARD}", ["B"]),
    "xdg-file-before-home-file": ({"xdg": "[credential]\n helper = !REC X\n",
                                   "global": "[credential]\n helper = !REC G\n"}, "https example.com", ["X", "G"]),
    "include-in-place": ({"global": "[credential]\n helper = !REC A\n[include]\n path = extra.gitconfig\n"
                                    "[credential]\n helper = !REC C\n",
                          "extra": "[credential]\n helper = !REC B\n"}, "https example.com", ["A", "B", "C"]),
    "lookalike-suffix": ({"global": '[credential "https://git-codecommit.*.amazonaws.com"]\n helper = !REC A\n'},
                         "https git-codecommit.us-east-1.amazonaws.com.evil.example", []),
    "two-labels-for-one-star": ({"global": '[credential "https://git-codecommit.*.amazonaws.com"]\n helper = !REC A\n'},
                                "https git-codecommit.us-east-1.evil.amazonaws.com", []),
    "vpce-two-stars": ({"global": '[credential "https://*.git-codecommit.*.vpce.amazonaws.com"]\n helper = !REC V\n'},
                       "https vpce-0123456789abcdef0-abcdefgh.git-codecommit.us-east-1.vpce.amazonaws.com", ["V"]),
    "china-not-matched-by-com": ({"global": '[credential "https://git-codecommit.*.amazonaws.com"]\n helper = !REC A\n'
                                            '[credential "https://git-codecommit.*.amazonaws.com.cn"]\n'
                                            " helper = !REC N\n"},
                                 "https git-codecommit.cn-north-1.amazonaws.com.cn", ["N"]),
    "scheme-must-match": ({"global": '[credential "https://git-codecommit.*.amazonaws.com"]\n helper = !REC A\n'},
                          f"http {STANDARD}", []),
    "upper-case-pattern-host": ({"global": '[credential "https://GIT-CodeCommit.*.amazonaws.com"]\n helper = !REC A\n'},
                                f"https {STANDARD}", ["A"]),
    "port-must-match": ({"global": f'[credential "https://{STANDARD}:8443"]\n helper = !REC P\n'
                                   f'[credential "https://{STANDARD}:443"]\n helper = !REC D\n'},
                        f"https {STANDARD}", ["D"]),
    "user-in-pattern": ({"global": f'[credential "https://bob@{STANDARD}"]\n helper = !REC U\n'
                                   f'[credential "https://{STANDARD}"]\n helper = !REC A\n'},
                        f"https {STANDARD} bob", ["U", "A"]),
    "user-in-pattern-other-user": ({"global": f'[credential "https://bob@{STANDARD}"]\n helper = !REC U\n'},
                                   f"https {STANDARD} alice", []),
    "path-prefix-on-segments": ({"global": f'[credential "https://{STANDARD}/v1/repos"]\n helper = !REC R\n'
                                           f'[credential "https://{STANDARD}/v1/rep"]\n helper = !REC X\n'
                                           f'[credential "https://{STANDARD}/"]\n helper = !REC S\n'},
                                f"https {STANDARD}", ["R", "S"]),
    "partial-url-host": ({"global": f"[credential \"{STANDARD}\"]\n helper = !REC H\n"
                                    f"[credential \"{STANDARD}/v1\"]\n helper = !REC P\n"},
                         f"https {STANDARD}", ["H"]),
    "command-line-last": ({"global": "[credential]\n helper = !REC G\n", "count": "!REC K"},
                          "https example.com", ["G", "K"]),
}


@pytest.mark.parametrize(("files", "request_", "expected"), list(ORDER_CASES.values()), ids=list(ORDER_CASES))
def test_computed_helper_list_is_the_one_git_runs(tmp_path: Path, files: dict[str, str], request_: str,
                                                  expected: list[str]) -> None:
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    rec = _recorder(home)
    repo = home / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], env=home_env(home), check=True)
    env = home_env(home, GIT_CONFIG_SYSTEM=str(tmp_path / "system.gitconfig"))
    env.pop("GIT_CONFIG_NOSYSTEM")
    places = {"system": tmp_path / "system.gitconfig", "global": home / ".gitconfig", "extra": home / "extra.gitconfig",
              "xdg": home / ".config" / "git" / "config"}
    for name, template in files.items():
        text = template.replace("REC", rec)
        if name == "local":
            with (repo / ".git" / "config").open("a") as handle:
                handle.write(text)
        elif name == "count":
            env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "credential.helper", "GIT_CONFIG_VALUE_0": text})
        else:
            places[name].write_text(text)
    protocol, host, *user = request_.split()
    stdin = f"protocol={protocol}\nhost={host}\npath=v1/repos/demo\n" + (f"username={user[0]}\n" if user else "")
    subprocess.run(["git", "credential", "fill"], input=stdin + "\n", env=env, cwd=repo, capture_output=True,
                   text=True, check=False, timeout=30)
    observed = (home / "ran").read_text().split() if (home / "ran").exists() else []
    assert observed == expected, "git itself"
    target = gitconfig.Target(protocol, host, "v1/repos/demo", user[0] if user else "")
    computed = gitconfig.effective(gitconfig.read(r"^credential\.", env=env, cwd=str(repo)), target)
    assert [(e.value or "").split()[-1] for e in computed.helpers] == expected, "computed"


@pytest.mark.parametrize(("value", "kind"), [
    ("osxkeychain", "storage"), ("manager", "storage"), ("manager-core", "storage"), ("wincred", "storage"),
    ("store --file ~/.my-credentials", "storage"), ("cache --timeout=3600", "storage"), ("libsecret", "storage"),
    ("/usr/share/doc/git/contrib/credential/libsecret/git-credential-libsecret", "storage"),
    ("C:/Program Files/Git/mingw64/bin/git-credential-manager.exe", "other"),
    ("!aws codecommit credential-helper $@", "aws"), ("!ccweb-helper", "ccweb"),
    ("!'/opt/my tools/ccweb-helper'", "ccweb"), ("!PYTHONPATH=/src /usr/bin/python3 -m ccweb_helper", "ccweb"),
    ("!f() { echo password=x; }; f", "other"),
])
def test_helpers_are_recognised(value: str, kind: str) -> None:
    assert classify(value).kind == kind


@pytest.mark.parametrize(("command", "old"), [
    ("!PYTHONPATH=/src /usr/bin/python3 -m ccweb_helper", True), ("!python3 -I -m ccweb_helper grc", True),
    ("!'/opt/py 3/python' -mccweb_helper", True), ("!ccweb-helper", False), ("!ccweb-helper grc", False),
    ("!PYTHONPATH=/src /usr/bin/python3 /src/ccweb_helper/__main__.py", False),
    ("!python3 -m ccweb_helper_fork", False), ("!python3 -m pip install ccweb_helper", False),
])
def test_the_python_m_form_is_recognised(command: str, old: bool) -> None:
    assert runs_module(command) is old


# -- doctor ------------------------------------------------------------------------------------------------

class Machine:
    """A throwaway HOME with a user `store` helper and a system `cache` helper, and ccweb set up."""

    def __init__(self, root: Path, sandbox: Sandbox) -> None:
        self.home = root / "home"
        self.home.mkdir()
        self.system = root / "system.gitconfig"
        self.system.write_text("[credential]\n\thelper = cache --timeout=30\n")
        (self.home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
        self.sandbox = sandbox
        self.cwd = self.home
        self.env = home_env(self.home, GIT_CONFIG_SYSTEM=str(self.system),
                             CCWEB_TOKEN_FILE=str(sandbox.token_file("alice")))
        self.env.pop("GIT_CONFIG_NOSYSTEM")

    def git(self, *args: str) -> None:
        subprocess.run(["git", *args], env=self.env, cwd=self.cwd, check=True, capture_output=True, timeout=30)

    def setup(self, *extra: str) -> None:
        done = subprocess.run([sys.executable, "-m", "ccweb_helper", "setup", "--url", self.sandbox.api_url, *extra],
                              env=self.env, cwd=self.home, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr

    def repo(self, remote: str | None = None) -> None:
        self.git("init", "-q", str(self.home / "repo"))
        self.cwd = self.home / "repo"
        if remote:
            self.git("remote", "add", "origin", remote)

    def doctor(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ccweb_helper", "doctor"], env=self.env, cwd=self.cwd,
                              capture_output=True, text=True, timeout=120, check=False)


def statuses(output: str) -> set[str]:
    return {line.split(" ", 1)[0] for line in output.splitlines() if line[:4] in ("ok  ", "note", "warn", "FAIL")}


def test_a_good_configuration_passes(sandbox: Sandbox, tmp_path: Path) -> None:
    box = Machine(tmp_path, sandbox)
    box.setup()
    box.env.pop("CCWEB_TOKEN_FILE")
    token = sandbox.token_file("alice").read_text().strip()
    box.env["CCWEB_TOKEN"] = token
    box.repo(sandbox.repo_url("demo"))
    result = box.doctor()
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(result.stdout) <= {"ok", "note"}
    out = result.stdout
    assert f"git endpoint http://{sandbox.git_host}" in out and "remote origin" in out
    assert "you are alice@example.com" in out and "rule " in out and "access to" in out
    assert "clock is within" in out and "TLS" not in out.split("service", 1)[0]
    assert token not in out + result.stderr


def _dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


WHOAMI: dict[str, Any] = {
    "identity": "someone@example.com", "issuer": "corp", "issuer_url": "https://login.example.com",
    "expires_at": "2099-01-01T00:00:00Z",
    "rules": [{"rule": "devs", "access": "read", "repositories": ["*"], "role_arn": "arn:x"}],
}


class _StandIn(http.server.BaseHTTPRequestHandler):
    """A ccweb look-alike whose clock is ``offset`` seconds off and whose /v1/whoami answers ``whoami``."""

    offset = 0.0
    whoami: dict[str, Any] = WHOAMI

    def do_GET(self) -> None:
        body: dict[str, Any] = {"git_endpoints": []}
        if self.path == "/v1/whoami":
            body = self.whoami
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(time.time() + self.offset, usegmt=True)

    def log_message(self, *_: Any) -> None:
        pass


@contextlib.contextmanager
def stand_in(offset: float = 0.0, tls: ssl.SSLContext | None = None,
             whoami: dict[str, Any] | None = None) -> Iterator[str]:
    handler = type("Handler", (_StandIn,), {"offset": offset, "whoami": WHOAMI if whoami is None else whoami})
    with serve_http(handler, tls) as url:
        yield url


PLANTED_PASSWORD = "20261122T101500Z" + "ab" * 32
PLANTED_KEY_ID, PLANTED_SESSION = "ASIAPLANTEDKEYID0001", "PLANTED-SESSION-TOKEN"


def _helper_missing(box: Machine) -> None:
    box.git("config", "--global", "ccweb.url", box.sandbox.api_url)


def _storage_before(box: Machine) -> None:
    box.git("config", "--global", "ccweb.url", box.sandbox.api_url)
    for key, value in (("helper", f"!{sys.executable} -m ccweb_helper"), ("useHttpPath", "true")):
        box.git("config", "--global", f"credential.https://git-codecommit.*.amazonaws.com.{key}", value)


def _storage_after(box: Machine) -> None:
    box.setup()
    box.repo()
    box.git("config", "--local", "credential.helper", "cache --timeout=5")


def _global_for_all_hosts(box: Machine) -> None:
    box.setup()
    box.git("config", "--global", "--add", "credential.helper", f"!PYTHONPATH={ROOT / 'helper'} {sys.executable} "
            "-m ccweb_helper")


def _use_http_path_missing(box: Machine) -> None:
    box.setup()
    box.git("config", "--global", "--unset-all", "credential.https://git-codecommit.*.amazonaws.com.usehttppath")


def _stored_password(box: Machine) -> None:
    box.setup()
    (box.home / ".git-credentials").write_text(
        f"https://ASIAEXAMPLE%25session:{PLANTED_PASSWORD}@{STANDARD}\nhttps://me:other@example.com\n")


def _no_service_url(box: Machine) -> None:
    box.setup()
    box.git("config", "--global", "--unset", "ccweb.url")


def _unreachable(box: Machine) -> None:
    box.setup()
    box.env["CCWEB_URL"] = _dead_url()


def _no_token(box: Machine) -> None:
    box.setup()
    box.env.pop("CCWEB_TOKEN_FILE")


def _expired_token(box: Machine) -> None:
    box.setup()
    box.env.pop("CCWEB_TOKEN_FILE")
    box.env["CCWEB_TOKEN"] = box.sandbox.issuer.mint_user("alice", ttl=60, now=1_700_000_000)


def _no_rule(box: Machine) -> None:
    box.setup()
    box.env["CCWEB_TOKEN_FILE"] = str(box.sandbox.token_file("mallory"))


def _remote_with_user(box: Machine) -> None:
    box.setup()
    box.repo(f"https://alice@{STANDARD}/v1/repos/demo")


def _remote_with_codecommit_user(box: Machine) -> None:
    box.setup()
    box.repo(f"https://{PLANTED_KEY_ID}%25{PLANTED_SESSION}@{STANDARD}/v1/repos/demo")


def _remote_with_password(box: Machine) -> None:
    box.setup()
    box.repo(f"https://alice:{PLANTED_PASSWORD}@{STANDARD}/v1/repos/demo")


def _ssl_verify_off(box: Machine) -> None:
    box.setup()
    box.git("config", "--global", "http.sslVerify", "false")


def _helper_not_on_path(box: Machine) -> None:
    box.setup()
    for suffix in ("", "-fips"):
        key = f"credential.https://git-codecommit{suffix}.*.amazonaws.com.helper"
        box.git("config", "--global", "--replace-all", key, "")
        box.git("config", "--global", "--add", key, "!ccweb-helper-not-installed")


BROKEN: dict[str, tuple[Callable[[Machine], None], str, list[str]]] = {
    "helper-missing": (_helper_missing, "FAIL", ["git would not ask ccweb-helper", "run `ccweb-helper setup`"]),
    "storage-before": (_storage_before, "FAIL", ["store (~/.git-credentials, plain text) from global ~/.gitconfig "
                                                 "would answer before ccweb-helper", "cache (in memory) from system"]),
    "storage-after": (_storage_after, "FAIL", ["cache (in memory) from local", "comes after ccweb-helper",
                                               "ccweb-helper setup --local",
                                               "--fixed-value --unset-all credential.helper 'cache --timeout=5'"]),
    "global-for-all-hosts": (_global_for_all_hosts, "warn", ["ccweb-helper is configured for every host"]),
    "use-http-path-missing": (_use_http_path_missing, "FAIL", ["FAIL  CodeCommit: useHttpPath is off"]),
    "stored-password": (_stored_password, "FAIL", ["~/.git-credentials holds stored passwords for "
                                                   f"{STANDARD}", "git credential-store --file"]),
    "no-service-url": (_no_service_url, "FAIL", ["no ccweb service is configured", "ccweb-helper setup --url"]),
    "unreachable": (_unreachable, "FAIL", ["cannot reach the ccweb service at http://127.0.0.1:"]),
    "no-token": (_no_token, "FAIL", ["no OIDC token found: set CCWEB_TOKEN"]),
    "expired-token": (_expired_token, "FAIL", ["The OIDC token was refused: it has expired"]),
    "no-rule": (_no_rule, "FAIL", ["no ccweb rule grants mallory@example.net any repository"]),
    "remote-with-user": (_remote_with_user, "warn", ["remote origin names a user", "git remote set-url origin "
                                                     f"https://{STANDARD}/v1/repos/demo"]),
    "remote-with-codecommit-user": (_remote_with_codecommit_user, "warn", [
        f"remote origin names a user in its URL ({PLANTED_KEY_ID[:8]}…@…)"]),
    "remote-with-password": (_remote_with_password, "FAIL", ["remote origin has a password in its URL"]),
    "ssl-verify-off": (_ssl_verify_off, "FAIL", ["http.sslVerify is false"]),
    "helper-not-on-path": (_helper_not_on_path, "FAIL", ["`ccweb-helper-not-installed` cannot be found on PATH"]),
}


@pytest.mark.parametrize(("break_", "status", "sentences"), list(BROKEN.values()), ids=list(BROKEN))
def test_each_broken_configuration_is_named_with_its_fix(sandbox: Sandbox, tmp_path: Path,
                                                         break_: Callable[[Machine], None], status: str,
                                                         sentences: list[str]) -> None:
    box = Machine(tmp_path, sandbox)
    break_(box)
    result = box.doctor()
    assert result.returncode == 1, result.stdout
    flagged = [line for line in result.stdout.splitlines() if line.startswith(status)]
    for sentence in sentences:
        assert any(sentence in line for line in flagged), (sentence, result.stdout)
    assert "Traceback" not in result.stderr
    assert "problem" in result.stdout.splitlines()[-1]
    secrets = [PLANTED_PASSWORD, PLANTED_KEY_ID, PLANTED_SESSION, sandbox.token_file("alice").read_text().strip(),
               box.env.get("CCWEB_TOKEN", "")]
    assert not any(s and s in result.stdout + result.stderr for s in secrets)


def test_the_python_m_command_an_earlier_setup_wrote_is_flagged_until_setup_runs_again(sandbox: Sandbox,
                                                                                        tmp_path: Path) -> None:
    box = Machine(tmp_path, sandbox)
    box.setup("--helper", f"!PYTHONPATH={ROOT / 'helper'} {sys.executable} -m ccweb_helper")
    flagged = [line for line in box.doctor().stdout.splitlines() if line.startswith(("warn", "FAIL"))]
    assert flagged == [
        "warn  git runs ccweb-helper as `python -m ccweb_helper` (credential helper in global ~/.gitconfig, "
        "alias.remote-ccweb in global ~/.gitconfig), which runs a ccweb_helper/ folder of the repository at hand "
        "instead; run `ccweb-helper setup` again (it writes a command that runs the helper by its path)."]
    box.setup()
    result = box.doctor()
    assert result.returncode == 0, result.stdout
    assert "-m ccweb_helper" not in result.stdout


@pytest.mark.parametrize(("offset", "status", "sentence"), [
    (600, "FAIL", "clock is about 10 min ahead of the service's"),
    (-1200, "FAIL", "clock is about 20 min behind the service's"),
    (120, "warn", "clock is about 2 min ahead of the service's"),
], ids=["ahead-10-min", "behind-20-min", "ahead-2-min"])
def test_clock_skew_against_the_service(sandbox: Sandbox, tmp_path: Path, offset: int, status: str,
                                        sentence: str) -> None:
    box = Machine(tmp_path, sandbox)
    box.setup()
    with stand_in(offset=-offset) as url:
        box.env.update({"CCWEB_URL": url, "CCWEB_TOKEN": "PLANTED.TOKEN.VALUE"})
        result = box.doctor()
    assert result.returncode == 1, result.stdout
    line = next(line for line in result.stdout.splitlines() if "clock" in line)
    assert line.startswith(status) and sentence in line and "NTP" in line, line
    assert "PLANTED.TOKEN.VALUE" not in result.stdout + result.stderr
    assert "you are someone@example.com" in result.stdout


def test_untrusted_tls_is_explained(sandbox: Sandbox, tmp_path: Path) -> None:
    box = Machine(tmp_path, sandbox)
    box.setup()
    with stand_in(tls=self_signed(tmp_path)[1]) as url:
        box.env.update({"CCWEB_URL": url, "CCWEB_TOKEN": "PLANTED.TOKEN.VALUE"})
        result = box.doctor()
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if "could not be verified" in line)
    assert line.startswith("FAIL") and "SSL_CERT_FILE" in line
    assert "PLANTED.TOKEN.VALUE" not in result.stdout + result.stderr


def test_a_proxy_is_noted_not_failed(sandbox: Sandbox, tmp_path: Path) -> None:
    box = Machine(tmp_path, sandbox)
    box.setup()
    box.env["HTTPS_PROXY"] = "http://user:PROXYSECRET@proxy.example.com:3128"
    result = box.doctor()
    assert result.returncode == 0, result.stdout
    line = next(line for line in result.stdout.splitlines() if "answers" in line)
    assert line.startswith("ok") and line.endswith("directly (loopback is never proxied).")
    note = next(line for line in result.stdout.splitlines() if line.startswith("note") and "proxy" in line)
    assert "git reaches CodeCommit through a proxy (HTTPS_PROXY=http://proxy.example.com:3128)" in note
    assert "PROXYSECRET" not in result.stdout


PROXY_NOTES: dict[str, tuple[dict[str, str], str]] = {
    # name: (the environment, what the note shows of it)
    "encoded": ({"HTTPS_PROXY": "http://PLANTEDUSER:PLANTED%23PASS@proxy.example.com:3128"},
                "HTTPS_PROXY=http://proxy.example.com:3128"),
    "hash-in-the-password": ({"HTTPS_PROXY": "http://PLANTEDUSER:1234#PLANTEDPASS@proxy.example.com:3128"},
                             "HTTPS_PROXY=<not shown>"),
    "slash-in-the-password": ({"https_proxy": "http://PLANTEDUSER:4711/PLANTEDPASS@proxy.example.com:3128"},
                              "https_proxy=<not shown>"),
    "question-mark-in-the-password": ({"ALL_PROXY": "http://PLANTEDUSER:2024?PLANTEDPASS@proxy.example.com:3128"},
                                      "ALL_PROXY=<not shown>"),
    "a-terminal-escape": ({"all_proxy": "http://\x1b]0;PLANTED\x07proxy.example.com:3128"},
                          "all_proxy=<not shown>"),
    "a-vertical-tab": ({"HTTPS_PROXY": "http://proxy.example.com\x0bPLANTED:3128"},
                       "HTTPS_PROXY=<not shown>"),
    "git-http-proxy-with-a-hash": ({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.proxy",
                                    "GIT_CONFIG_VALUE_0": "http://PLANTEDUSER:4711#PLANTEDPASS@127.0.0.1:3128"},
                                   "http.proxy=<not shown>"),
    "git-http-proxy-socks": ({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.proxy",
                              "GIT_CONFIG_VALUE_0": "socks5h://PLANTEDUSER:PLANTEDPASS@127.0.0.1:1080"},
                             "http.proxy=<not shown>"),
    "git-http-proxy": ({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.proxy",
                        "GIT_CONFIG_VALUE_0": "PLANTEDUSER:PLANTEDPASS@proxy.example.com:8080"},
                       "http.proxy=http://proxy.example.com:8080"),
}


@pytest.mark.parametrize(("env", "shown"), PROXY_NOTES.values(), ids=PROXY_NOTES.keys())
def test_the_proxy_note_never_shows_part_of_a_user_name_or_password(tmp_path: Path, env: dict[str, str],
                                                                    shown: str) -> None:
    """Read up to the first "/", "?" or "#", http://alice:1234#secret@proxy:3128 was noted as "http://alice:1234":
    the user name and the start of the password, in doctor's output (often pasted into a ticket)."""
    out = io.StringIO()
    GitChecks(home_env(tmp_path, **env), out).tls_and_proxies()
    [note] = [line for line in out.getvalue().splitlines() if line.startswith("note")]
    assert note.startswith(f"note  git reaches CodeCommit through a proxy ({shown}); ")
    for secret in ("PLANTED", "1234", "4711", "2024", "\x1b", "\x0b"):
        assert secret not in out.getvalue()


# -- what the service answers, in any shape ----------------------------------------------------------------

ODD_WHOAMI: dict[str, tuple[Any, str]] = {
    # name: (the "rules" value, the line doctor must print)
    "rules-a-number": (7, "FAIL  no ccweb rule grants someone@example.com any repository"),
    "rules-true": (True, "FAIL  no ccweb rule grants someone@example.com any repository"),
    "rules-a-string": ("devs", "FAIL  no ccweb rule grants someone@example.com any repository"),
    "rules-an-object": ({"rule": "devs"}, "FAIL  no ccweb rule grants someone@example.com any repository"),
    "rules-of-scalars": ([1, "devs", None], "FAIL  no ccweb rule grants someone@example.com any repository"),
    "repositories-a-number": ([{"rule": "devs", "access": "read", "repositories": 5, "role_arn": "arn:x"}],
                              "ok    rule devs: read access to nothing (role arn:x)."),
    "repositories-true": ([{"rule": "devs", "access": "read", "repositories": True, "role_arn": "arn:x"}],
                          "ok    rule devs: read access to nothing (role arn:x)."),
    "repositories-a-string": ([{"rule": "devs", "access": "read", "repositories": "app-*", "role_arn": "arn:x"}],
                              "ok    rule devs: read access to nothing (role arn:x)."),
    "repositories-mixed": ([{"rule": "devs", "access": "write", "repositories": ["app-*", 3, None, {"x": 1}, "lib"],
                             "role_arn": "arn:x"}], "ok    rule devs: write access to app-*, lib (role arn:x)."),
    "rule-fields-not-strings": ([{"rule": {"x": 1}, "access": 5, "repositories": ["*"], "role_arn": []}],
                                "ok    rule ?: ? access to * (role ?)."),
}


@pytest.mark.parametrize(("rules", "line"), list(ODD_WHOAMI.values()), ids=list(ODD_WHOAMI))
def test_odd_shapes_from_the_service_are_reported_not_raised(sandbox: Sandbox, tmp_path: Path, rules: Any,
                                                             line: str) -> None:
    box = Machine(tmp_path, sandbox)
    box.setup()
    with stand_in(whoami={**WHOAMI, "rules": rules}) as url:
        box.env.update({"CCWEB_URL": url, "CCWEB_TOKEN": "PLANTED.TOKEN.VALUE"})
        result = box.doctor()
    assert "Traceback" not in result.stderr, result.stderr
    assert any(printed.startswith(line) for printed in result.stdout.splitlines()), result.stdout
    assert "you are someone@example.com" in result.stdout


def test_identity_fields_of_any_shape_are_reported_not_raised(sandbox: Sandbox, tmp_path: Path) -> None:
    box = Machine(tmp_path, sandbox)
    box.setup()
    with stand_in(whoami={"identity": ["x"], "issuer": 3, "expires_at": {"when": 1}, "rules": WHOAMI["rules"]}) as url:
        box.env.update({"CCWEB_URL": url, "CCWEB_TOKEN": "PLANTED.TOKEN.VALUE"})
        result = box.doctor()
    assert "Traceback" not in result.stderr, result.stderr
    assert "you are ? (issuer ?, ?), valid until ?." in result.stdout


# -- an older git ------------------------------------------------------------------------------------------

def _git_reporting(tmp: Path, version: str) -> str:
    """A directory holding a `git` that says it is ``version`` and hands everything else to the real git."""
    real = shutil.which("git")
    assert real is not None
    folder = tmp / f"git-{version}"
    folder.mkdir()
    script = folder / "git"
    script.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then echo "git version {version}"; exit 0; fi\n'
                      f'exec {shlex.quote(real)} "$@"\n')
    script.chmod(0o755)
    return str(folder)


def test_a_git_without_credential_wildcards_fails_with_the_upgrade(sandbox: Sandbox, tmp_path: Path) -> None:
    box = Machine(tmp_path, sandbox)
    box.setup()  # with the real git, which applies the sections setup writes
    box.env["PATH"] = f"{_git_reporting(tmp_path, '2.25.1')}:{box.env['PATH']}"
    result = box.doctor()
    assert result.returncode == 1, result.stdout
    lines = result.stdout.splitlines()
    version = next(line for line in lines if "git 2.25.1" in line)
    assert version.startswith("FAIL") and "is too old" in version and "upgrade git to 2.26 or newer" in version
    codecommit = next(line for line in lines if line.startswith("FAIL  CodeCommit"))
    assert "git would not ask ccweb-helper" in codecommit and "cache (in memory)" in codecommit
    assert "upgrade git to 2.26 or newer" in codecommit and "run `ccweb-helper setup`" not in codecommit
    # the service's own git endpoint is spelled out, no `*`: older git applies it too
    endpoint = next(line for line in lines if f"git endpoint http://{sandbox.git_host}" in line)
    assert endpoint.startswith("ok"), endpoint


def test_wildcards_are_not_claimed_for_a_git_without_them() -> None:
    entry = gitconfig.Entry("global", "file:/h/.gitconfig", "credential.https://git-codecommit.*.amazonaws.com.helper",
                            "!ccweb-helper")
    exact = entry._replace(name=f"credential.https://{STANDARD}.helper", value="!exact")
    target = gitconfig.Target("https", STANDARD, "v1/repos/demo", "")
    assert [e.value for e in gitconfig.effective([entry, exact], target).helpers] == ["!ccweb-helper", "!exact"]
    assert [e.value for e in gitconfig.effective([entry, exact], target, wildcards=False).helpers] == ["!exact"]
    assert gitconfig.has_wildcards((2, 26)) and gitconfig.has_wildcards((2, 39, 5))
    assert not gitconfig.has_wildcards((2, 25, 4))


UNSET_VALUE = "store --file=~/.creds.d/a+b(1).txt"
UNSET_KEEP = [UNSET_VALUE + "-other", "store --file=~/.creds.d/aab1.txt"]  # a prefix; what the unescaped regex hits


@pytest.mark.parametrize("version", ["2.29.3", None], ids=["git-2.29", "this-git"])
def test_the_suggested_unset_command_works_on_the_running_git(sandbox: Sandbox, tmp_path: Path,
                                                               version: str | None) -> None:
    box = Machine(tmp_path, sandbox)
    box.setup()
    box.repo()
    for value in (UNSET_VALUE, *UNSET_KEEP):
        box.git("config", "--local", "--add", "credential.helper", value)
    if version:
        box.env["PATH"] = f"{_git_reporting(tmp_path, version)}:{box.env['PATH']}"
    result = box.doctor()
    assert result.returncode == 1, result.stdout
    commands = [shlex.split(c) for c in re.findall(r"`(git config --file [^`]*)`", result.stdout)]
    fixed = "--fixed-value" in result.stdout
    assert fixed is (version is None)
    wanted = UNSET_VALUE if fixed else gitconfig.ere_literal(UNSET_VALUE)
    command = next(c for c in commands if c[-1] == wanted)
    assert command[:3] == ["git", "config", "--file"] and command[-2] == "credential.helper"
    subprocess.run(command, env=box.env, cwd=box.cwd, check=True, capture_output=True, timeout=30)
    left = subprocess.run(["git", "config", "--local", "--get-all", "credential.helper"], env=box.env, cwd=box.cwd,
                          capture_output=True, text=True, check=True, timeout=30).stdout.splitlines()
    assert left == UNSET_KEEP
