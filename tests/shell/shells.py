"""The POSIX sh helper as an image without Python runs it: under dash, bash and BusyBox sh, with a PATH that holds
git, curl and POSIX tools only (under BusyBox, BusyBox's own applets, as on Alpine). Every tool on that PATH is a
wrapper that records its command line, and curl's wrapper its environment too, so a test can look for a planted
token in them."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import shlex
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from support import Asked, clean_env, serve_http

SHELLS = {"dash": ("dash",), "bash": ("bash",), "busybox": ("busybox", "sh")}
"""How each shell runs a script; ``busybox sh`` is Alpine's ``/bin/sh``."""
TOOLS = ("awk", "sed", "grep", "tr", "cut", "head", "tail", "wc", "cat", "mktemp", "rm", "sleep")
"""The POSIX tools the script uses (its header says which), besides git and curl."""
MISSING = {
    "busybox": "busybox is not installed (scripts/test installs Debian's busybox with apt-get when run as root)",
}


@dataclass
class ShellHelper:
    """The served script under one shell, with its own PATH of recording wrappers."""

    shell: str  # dash, bash, busybox
    command: list[str]  # the shell and the script: what git's `!` helper runs
    bin: Path  # the PATH: wrappers only
    argv_log: Path  # every command line a tool was started with, one a line
    curl_env_log: Path  # every environment curl was started with, blocks ended by "----"

    @property
    def helper(self) -> str:
        """git's ``credential.helper`` value for this shell."""
        return "!" + shlex.join(self.command)

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """A job's environment: nothing of this machine's git, CI, AWS, TLS or proxy settings, a throwaway HOME, the
        wrappers' PATH only, and a GIT_ASKPASS that records any prompt (ccweb must never let git prompt)."""
        home.mkdir(exist_ok=True)
        askpass = home / "askpass.sh"
        askpass.write_text(f"#!/bin/sh\necho prompted >> {shlex.quote(str(home))}/prompted\nexit 1\n")
        askpass.chmod(0o700)
        return clean_env("PATH", "AWS_", "CURL_", **{
            "PATH": str(self.bin), "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_ASKPASS": str(askpass), "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Job", "GIT_AUTHOR_EMAIL": "job@example.com",
            "GIT_COMMITTER_NAME": "Job", "GIT_COMMITTER_EMAIL": "job@example.com", **extra,
        })

    def run(self, args: list[str], env: dict[str, str], stdin: str = "", *, cwd: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.command, *args], input=stdin, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False, cwd=cwd)

    def get(self, env: dict[str, str], host: str, path: str = "v1/repos/demo", protocol: str = "https", *,
            cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``get`` with what git sends for ``protocol://host/path`` (in ``cwd``: git's is the work tree)."""
        return self.run(["get"], env, f"protocol={protocol}\nhost={host}\npath={path}\ncapability[]=authtype\n\n",
                        cwd=cwd, timeout=timeout)

    def command_lines(self) -> str:
        return self.argv_log.read_text() if self.argv_log.exists() else ""

    def curl_environments(self) -> list[dict[str, str]]:
        text = self.curl_env_log.read_text() if self.curl_env_log.exists() else ""
        return [dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
                for block in text.split("----\n") if block.strip()]


def tool_dirs(root: Path, shell: str) -> tuple[Path, Path]:
    """``real``: symbolic links to git, curl and the POSIX tools (BusyBox applets under BusyBox); ``bin``: a
    recording wrapper for each."""
    real, bin_ = root / "real", root / "bin"
    real.mkdir()
    bin_.mkdir()
    busybox = shutil.which("busybox")
    for tool in (*TOOLS, "git", "curl"):
        target = busybox if shell == "busybox" and tool in TOOLS else shutil.which(tool)
        assert target is not None, f"{tool} is not installed"
        (real / tool).symlink_to(target)
    env_program = shutil.which("env")
    assert env_program is not None
    for tool in (*TOOLS, "git", "curl"):
        record_env = (f"{env_program} >> {shlex.quote(str(root / 'curl-env.log'))}\n"
                      f"echo ---- >> {shlex.quote(str(root / 'curl-env.log'))}\n") if tool == "curl" else ""
        wrapper = bin_ / tool
        wrapper.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\n' {tool}\" $*\" >> {shlex.quote(str(root / 'argv.log'))}\n"
            f"{record_env}"
            f"exec {shlex.quote(str(real / tool))} \"$@\"\n"
        )
        wrapper.chmod(0o755)
    return real, bin_


CREDENTIAL = "username=ASIAEXAMPLE%session\npassword=20261207T101500Zabc123\npassword_expiry_utc=1796638500\n"
"""What ``POST /v1/git-credential`` answers (made-up values): the lines the helper passes to git as they are."""


@dataclass
class Answer:
    status: int = 200
    body: bytes = CREDENTIAL.encode()
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class TextService:
    """A stand-in for a ccweb service's plain-text API on loopback: ``/.well-known/ccweb.txt`` answers
    ``discovery``, ``/v1/git-credential`` answers ``answer``; every request is kept in ``asked``."""

    discovery: str = "audience=ccweb\n"
    answer: Answer = field(default_factory=Answer)
    asked: list[Asked] = field(default_factory=list)

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._reply()

            def do_POST(self) -> None:
                self._reply()

            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                service.asked.append(Asked(self.command, self.path, self.headers,
                                           self.rfile.read(length) if length else b""))
                answer = Answer(404, b"error=not_found\n")
                if self.path == "/.well-known/ccweb.txt":
                    answer = Answer(200, service.discovery.encode())
                elif self.path == "/v1/git-credential":
                    answer = service.answer
                status, body, headers = answer.status, answer.body, answer.headers
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        return Handler

    @contextlib.contextmanager
    def serving(self, tls: ssl.SSLContext | None = None) -> Iterator[str]:
        with serve_http(self.handler(), tls) as url:
            yield url

    def paths(self) -> list[str]:
        return [f"{asked.method} {urlsplit(asked.path).path}" for asked in self.asked]


def jwt(claims: dict[str, object], signature: str = "c2lnbmF0dXJl") -> str:
    """A compact JWT with ``claims`` (unsigned: the stand-ins do not check; the real service does)."""
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{signature}"
