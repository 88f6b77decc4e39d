"""``ccweb dev``: the API and its web page, a development issuer, an STS stand-in and a CodeCommit-compatible
git server.

Everything listens on loopback in one process and one event loop. The API talks to the STS stand-in
through boto3 (``endpoint_url``), exactly as it talks to AWS; the git server checks the SigV4 password
and the session policy the way CodeCommit does. The same ``Sandbox`` serves the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from ccweb.app import create_app
from ccweb.config import Config, parse_config
from ccweb.limits import SERVER_OPTIONS
from ccweb.sandbox.gitserver import create_demo_repository, create_git_app
from ccweb.sandbox.issuer import CLIENT_ID as LOGIN_CLIENT_ID
from ccweb.sandbox.issuer import DEMO_USERS, WEB_CLIENT_ID, DevIssuer
from ccweb.sandbox.sts import DevSTSStore, create_sts_app
from ccweb.sts import BotoSTS
from ccweb.webconfig import MIN_SESSION_SECRET_BYTES, read_secret
from ccweb_helper import setup
from ccweb_helper.hosts import is_loopback

ACCOUNT = "111122223333"
REGION = "us-east-1"
TOKEN_TTL = 3600
TOKEN_REFRESH = 600


def sandbox_policy(issuer_url: str, git_host: str, web: dict[str, Any] | None = None) -> dict[str, Any]:
    """The demo policy: engineering may push anywhere, contractors may read ``demo``, others nothing. ``web``:
    its ``web:`` block (``sandbox_web``); without it, the page has no sign-in."""
    return {
        "issuers": [{
            "name": "dev", "issuer": issuer_url, "audiences": ["ccweb", LOGIN_CLIENT_ID, WEB_CLIENT_ID],
            "login": {"client_id": LOGIN_CLIENT_ID, "scopes": ["openid", "email", "profile", "groups",
                                                             "offline_access"]},
        }],
        "rules": [
            {
                "name": "developers", "issuer": "dev", "claims": {"groups": "engineering"},
                "role_arn": f"arn:aws:iam::{ACCOUNT}:role/ccweb-developers", "repositories": ["*"],
                "access": "write",
            },
            {
                "name": "contractors", "issuer": "dev",
                "claims": {"groups": "contractors", "email": {"pattern": r".+@example\.com"}},
                "role_arn": f"arn:aws:iam::{ACCOUNT}:role/ccweb-readers", "repositories": ["demo"],
                "access": "read",
            },
        ],
        "git_endpoints": [{"host": git_host, "region": REGION}],
        "grc": {"region": REGION, "endpoints": {REGION: git_host}},  # codecommit::us-east-1://demo: this git server
        "aws": {"session_duration": 3600},
        **({"web": web} if web is not None else {}),
    }


def sandbox_web(api_url: str, workdir: Path) -> dict[str, Any]:
    """The sandbox's ``web:`` block: the page at ``api_url`` signs people in at the development issuer as its
    confidential client ``ccweb-web``; both secrets are files under ``<workdir>/web`` (``write_web_secrets``)."""
    return {
        "issuer": "dev", "client_id": WEB_CLIENT_ID, "client_secret": {"file": str(workdir / "web" / "client-secret")},
        "scopes": ["openid", "email", "profile", "groups"], "public_url": api_url,
        "session_secret": {"file": str(workdir / "web" / "session-secret")},
    }


def write_web_secrets(workdir: Path, client_secret: str) -> None:
    """``<workdir>/web`` (mode 0700) with ``client-secret`` (the development issuer's, for ``ccweb-web``) and a
    new random ``session-secret``, each mode 0600; a file already there is replaced."""
    web = workdir / "web"
    web.mkdir(mode=0o700, parents=True, exist_ok=True)
    web.chmod(0o700)
    session_secret = secrets.token_urlsafe(MIN_SESSION_SECRET_BYTES + 16)  # 48 random bytes, 64 characters
    for name, value in (("client-secret", client_secret), ("session-secret", session_secret)):
        _write_private(web / name, value)


def _write_private(path: Path, text: str) -> None:
    """``text`` into ``path`` with mode 0600, atomically (no moment where another mode or half a file shows)."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the sandbox (several servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def helper_command(executable: str = sys.executable, which: Callable[[str], str | None] = shutil.which) -> str:
    """How git should run this installation's ccweb-helper, as a ``credential.helper`` value: the command
    ``ccweb-helper setup`` writes (``setup.helper_command``) for the ``ccweb-helper`` script beside
    ``executable``, else for the one ``which`` finds, else for the package's ``__main__.py`` run by
    ``executable`` — never ``python -m ccweb_helper``. Always by an absolute path, never ``!ccweb-helper``: the
    banner is pasted in another terminal, whose PATH may differ."""
    script = Path(executable).parent / "ccweb-helper"
    program = str(script) if script.exists() else which("ccweb-helper") or ""
    return setup.helper_command(program, executable, lambda _: None, setup.PACKAGE_ROOT)


class Sandbox:
    def __init__(self, host: str = "127.0.0.1", port: int = 8700, workdir: Path | None = None,
                 log_level: str = "warning") -> None:
        if not is_loopback(host):
            raise ValueError(f"ccweb dev listens on loopback only (127.0.0.1, localhost, ::1), not {host!r}")
        self.host = "127.0.0.1" if host == "localhost" else host.strip("[]")
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="ccweb-dev-")) if workdir is None else workdir
        self._log_level = log_level
        self._sockets = {
            name: _listen(self.host, port if name == "api" else 0) for name in ("api", "issuer", "sts", "git")
        }
        self.api_url = _url(self.host, self._sockets["api"])
        self.issuer_url = _url(self.host, self._sockets["issuer"])
        self.sts_url = _url(self.host, self._sockets["sts"])
        self.git_url = _url(self.host, self._sockets["git"])
        self.git_host = self.git_url.removeprefix("http://")
        self.issuer = DevIssuer(self.issuer_url)
        self.sts = DevSTSStore()
        write_web_secrets(self.workdir, self.issuer.web_client_secret)
        self.config: Config = parse_config(sandbox_policy(self.issuer_url, self.git_host,
                                                          sandbox_web(self.api_url, self.workdir)))
        self.repos = self.workdir / "repos"
        self.tokens = self.workdir / "tokens"
        self._servers: list[tuple[_Server, socket.socket]] = []
        self._refresher: asyncio.Task[None] | None = None
        self.app: Any = None

    def repo_url(self, name: str = "demo") -> str:
        return f"{self.git_url}/v1/repos/{name}"

    def token_file(self, user: str) -> Path:
        return self.tokens / f"{user}.jwt"

    def write_tokens(self) -> None:
        self.tokens.mkdir(mode=0o700, exist_ok=True)
        for user in DEMO_USERS:
            path = self.token_file(user)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self.issuer.mint_user(user, ttl=TOKEN_TTL) + "\n")
            os.replace(tmp, path)

    async def _refresh_tokens(self) -> None:
        while True:
            await asyncio.sleep(TOKEN_REFRESH)
            self.write_tokens()

    def _prepare(self) -> None:
        self.repos.mkdir(parents=True, exist_ok=True)
        if not (self.repos / "demo.git").exists():
            create_demo_repository(self.repos, "demo")
        self.write_tokens()
        sts = BotoSTS(session=_dev_boto_session(), region=REGION, endpoint_url=self.sts_url)
        self.app = create_app(self.config, sts=sts, http=None, web_session_secret=self._web_session_secret())
        apps: dict[str, Any] = {
            "api": self.app,
            "issuer": self.issuer.app(),
            "sts": create_sts_app(self.sts),
            "git": create_git_app(self.sts, self.repos, region=REGION),
        }
        for name, app in apps.items():
            config = uvicorn.Config(app, log_level=self._log_level, access_log=False, lifespan="on", http="h11",
                                    **SERVER_OPTIONS)
            self._servers.append((_Server(config), self._sockets[name]))

    def _web_session_secret(self) -> bytes | None:
        """The secret ``web.session_secret`` names (the file ``write_web_secrets`` wrote), read as ``ccweb serve``
        reads it; None for a policy without one (a test may give the sandbox another policy)."""
        source = self.config.web.session_secret
        return None if source is None else read_secret(source, "web.session_secret", minimum=MIN_SESSION_SECRET_BYTES)

    async def serve(self, on_started: Callable[[], None] | None = None) -> None:
        """Run until ``stop()`` (from ``run()``: Ctrl-C or SIGTERM); ``on_started`` once all listen."""
        self._prepare()
        tasks = [asyncio.ensure_future(server.serve(sockets=[sock])) for server, sock in self._servers]
        self._refresher = asyncio.ensure_future(self._refresh_tokens())
        while not all(server.started for server, _ in self._servers):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.02)
        if on_started is not None and not any(task.done() for task in tasks):
            on_started()
        try:
            await asyncio.gather(*tasks)
        finally:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher

    def stop(self) -> None:
        for server, _ in self._servers:
            server.should_exit = True

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[Sandbox]:
        """Serve in a background thread (tests); stop and clean up on exit."""
        started = threading.Event()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_until_complete, args=(self.serve(started.set),), daemon=True)
        thread.start()
        if not started.wait(30):
            raise RuntimeError("the sandbox did not start")
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(self.stop)
            thread.join(30)
            loop.close()
            self.close()

    def grc_clone(self, helper: str) -> str:
        """A ``git clone`` of ``codecommit::us-east-1://demo`` (the console's GRC URL) through ccweb: the clone alone
        is given what of ``ccweb-helper setup``'s configuration it needs; ``helper``: ``helper_command()``."""
        return " ".join([
            "git clone",
            "--config url.ccweb::.insteadOf=codecommit::",
            "--config " + shlex.quote(f"alias.remote-ccweb={helper} grc"),
            *_credential_options(helper),
            f"codecommit::{REGION}://demo",
            "ccweb-demo-grc",
        ])

    def banner(self) -> str:
        helper = helper_command()
        clone = " ".join(["git clone", *_credential_options(helper), self.repo_url("demo"), "ccweb-demo"])
        users = ", ".join(
            f"{user} ({'write' if 'engineering' in info['groups'] else 'read' if info['groups'] else 'no access'})"
            for user, info in DEMO_USERS.items()
        )
        names = list(DEMO_USERS)
        sign_in = (f"sign in as {', '.join(names[:-1])} or {names[-1]}" if self.config.web.sign_in
                   else "no sign-in (the policy has no web.issuer)")
        return "\n".join([
            "ccweb dev: a sandbox on loopback, nothing from AWS, no real identity provider. Ctrl-C stops it.",
            f"  API           {self.api_url}   (OpenAPI: {self.api_url}/openapi.json)",
            f"  web page      {self.api_url}/   {sign_in}",
            f"  OIDC issuer   {self.issuer_url}   demo users: {users}",
            f"  STS stand-in  {self.sts_url}",
            f"  git server    {self.repo_url('demo')}   (checks CodeCommit signatures)",
            f"  token files   {self.tokens}/<user>.jwt   (renewed every {TOKEN_REFRESH // 60} minutes)",
            "",
            "In another terminal, paste:",
            f"  export CCWEB_URL={self.api_url}",
            f"  export CCWEB_TOKEN_FILE={shlex.quote(str(self.token_file('alice')))}",
            f"  {clone}",
            "",
            "Then try: cd ccweb-demo && git commit --allow-empty -m hello && git push",
            f"The console's GRC URL (codecommit::{REGION}://demo) works too, with no AWS keys: paste",
            f"  {self.grc_clone(helper)}",
            f"or, to set it up for every repository, run once `{helper.removeprefix('!')} setup --url "
            f"{self.api_url}` (your global git config), then: git clone codecommit::{REGION}://demo",
            f"Other users: export CCWEB_TOKEN_FILE={shlex.quote(str(self.tokens))}/bob.jwt (read-only) "
            "or mallory.jwt (denied).",
            "Or sign in as a person would, with single sign-on: unset CCWEB_TOKEN_FILE; "
            f"{helper_command().removeprefix('!')} login --device",
        ])


def _credential_options(helper: str) -> list[str]:
    """``git clone`` options that make ``helper`` (and only it) answer for the sandbox's git server."""
    return ["--config credential.helper=", "--config " + shlex.quote(f"credential.helper={helper}"),
            "--config credential.useHttpPath=true"]


def _dev_boto_session() -> Any:
    """A boto3 session with throwaway keys: the sandbox never uses, or needs, real AWS credentials."""
    import boto3  # noqa: PLC0415

    return boto3.session.Session(
        aws_access_key_id="AKIASANDBOXEXAMPLE00", aws_secret_access_key="sandbox-not-a-secret",
        region_name=REGION,
    )


def run(host: str = "127.0.0.1", port: int = 8700) -> int:
    """The ``ccweb dev`` command: serve until Ctrl-C or SIGTERM."""
    try:
        sandbox = Sandbox(host, port, log_level="warning")
    except OSError as exc:
        print(f"ccweb dev: cannot listen on {host}:{port}: {exc.strerror}; pick another --port.", file=sys.stderr)
        return 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, sandbox.stop)
        await sandbox.serve(lambda: print(sandbox.banner(), flush=True))

    try:
        asyncio.run(main())
    finally:
        sandbox.close()
    print("ccweb dev: stopped.", file=sys.stderr)
    return 0


