"""A CodeCommit-compatible smart-HTTP git server: ``git http-backend`` behind CodeCommit's own checks.

For every request it does what CodeCommit does with an HTTPS git password: the username must be
``<AccessKeyId>%<SessionToken>`` of a live session issued by the STS stand-in, the password must be the
SigV4 signature of ``GIT /v1/repos/<name>`` for this host (without its port) and region, signed less than
15 minutes ago, and the session policy must allow ``codecommit:GitPull`` (fetch, clone) or
``codecommit:GitPush`` (push) on the repository's ARN. Only then does ``git http-backend`` run.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fnmatch
import hmac
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from ccweb.sandbox.sts import DevSession, DevSTSStore
from ccweb.signing import PASSWORD_LIFETIME_SECONDS, git_password, parse_password_time
from ccweb_helper.hosts import split_host

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ROUTE = re.compile(r"/v1/repos/([A-Za-z0-9._-]{1,100})(/.*)?")
GIT_PATHS = re.compile(r"/(info/refs|git-upload-pack|git-receive-pack|HEAD|objects/.+)")
CLOCK_SKEW_SECONDS = 5 * 60


class Refusal(Exception):
    def __init__(self, status: int, message: str, *, challenge: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.challenge = challenge


def policy_allows(policy: str | None, action: str, resource: str) -> bool:
    """IAM evaluation of a session policy for one action and resource: an explicit Deny wins, else any Allow."""
    if policy is None:
        return True  # no session policy: the role's own permissions, which the sandbox grants in full
    try:
        document = json.loads(policy)
    except ValueError:
        return False
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    allowed = False
    for statement in statements:
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if not any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in actions):
            continue
        if not any(fnmatch.fnmatchcase(resource, pattern) for pattern in resources):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _basic_credentials(headers: dict[str, str]) -> tuple[str, str]:
    value = headers.get("authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Refusal(401, "Authentication required.", challenge=True)
    try:
        username, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Refusal(403, "The Authorization header is not valid Basic credentials.") from None
    if not sep:
        raise Refusal(403, "The Authorization header is not valid Basic credentials.")
    return username, password


class CodeCommitChecks:
    """The credential and permission checks, apart from HTTP, so they can be tested on their own."""

    def __init__(self, store: DevSTSStore, region: str, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.region = region
        self.clock = clock

    def authenticate(self, username: str, password: str, hostname: str, repository: str) -> DevSession:
        access_key_id, _, session_token = username.partition("%")
        session = self.store.lookup(access_key_id)
        if session is None or not hmac.compare_digest(session.credentials.session_token or "", session_token):
            raise Refusal(403, "The security token included in the request is invalid.")
        now = self.clock()
        expiration = session.credentials.expiration
        if expiration is not None and expiration.timestamp() <= now:
            raise Refusal(403, "The security token included in the request is expired.")
        signed = parse_password_time(password)
        if signed is None:
            raise Refusal(403, "The password is not a CodeCommit SigV4 password.")
        age = now - signed.timestamp()
        if age > PASSWORD_LIFETIME_SECONDS or age < -CLOCK_SKEW_SECONDS:
            raise Refusal(403, "The password has expired or is signed for a time too far in the future.")
        expected = git_password(
            session.credentials.secret_access_key, hostname=hostname, path=f"/v1/repos/{repository}",
            region=self.region, now=signed,
        )
        if not hmac.compare_digest(expected, password):
            raise Refusal(403, "The request signature we calculated does not match the signature you provided.")
        return session

    def authorize(self, session: DevSession, action: str, repository: str) -> None:
        resource = f"arn:aws:codecommit:{self.region}:{session.account}:{repository}"
        if not policy_allows(session.policy, action, resource):
            raise Refusal(
                403,
                f"User: {session.assumed_role_arn} is not authorized to perform: {action} on resource: {resource}"
                " because no session policy allows the " + action + " action",
            )


def _action(rest: str, query: str) -> str:
    if rest.endswith("/git-receive-pack") or "service=git-receive-pack" in query:
        return "codecommit:GitPush"
    return "codecommit:GitPull"


async def _plain(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = (text + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


def create_git_app(
    store: DevSTSStore, repos_root: Path, *, region: str, clock: Callable[[], float] = time.time
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    checks = CodeCommitChecks(store, region, clock)
    git = shutil.which("git") or "git"
    root = str(Path(repos_root).resolve())

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode("latin-1")
        match = ROUTE.fullmatch(scope["path"])
        if match is None or not GIT_PATHS.fullmatch(match[2] or ""):
            await _plain(send, 404, "Not found: CodeCommit repositories live at /v1/repos/<name>.")
            return
        repository, rest = match[1], match[2]
        try:
            username, password = _basic_credentials(headers)
            try:
                hostname, _ = split_host(headers.get("host", ""))
            except ValueError:
                raise Refusal(400, "The Host header is not a host name.") from None
            session = checks.authenticate(username, password, hostname, repository)
            checks.authorize(session, _action(rest, query), repository)
        except Refusal as refusal:
            extra = [(b"www-authenticate", b'Basic realm="CodeCommit"')] if refusal.challenge else None
            await _plain(send, refusal.status, refusal.message, extra)
            return
        if not (Path(root) / f"{repository}.git").is_dir():
            await _plain(send, 404, f"Repository {repository} does not exist.")
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": root,
            "PATH_INFO": f"/{repository}.git{rest}",
            "REQUEST_METHOD": scope["method"],
            "QUERY_STRING": query,
            "REMOTE_USER": session.role_session_name,
            "REMOTE_ADDR": (scope.get("client") or ("127.0.0.1", 0))[0],
            "CONTENT_TYPE": headers.get("content-type", ""),
        }
        for header, variable in (
            ("content-length", "CONTENT_LENGTH"), ("content-encoding", "HTTP_CONTENT_ENCODING"),
            ("git-protocol", "GIT_PROTOCOL"),
        ):
            if header in headers:
                env[variable] = headers[header]
        await _run_backend(git, env, receive, send)

    return app


async def _run_backend(git: str, env: dict[str, str], receive: Receive, send: Send) -> None:
    process = await asyncio.create_subprocess_exec(
        git, "http-backend", env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    stdin, stdout, stderr = process.stdin, process.stdout, process.stderr
    if stdin is None or stdout is None or stderr is None:  # pragma: no cover (PIPE always gives streams)
        raise RuntimeError("git http-backend started without pipes")

    async def feed() -> None:
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    break
                stdin.write(message.get("body", b""))
                await stdin.drain()
                if not message.get("more_body", False):
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            stdin.close()

    feeder = asyncio.ensure_future(feed())
    stderr_task = asyncio.ensure_future(stderr.read())
    finished = False
    try:
        status, headers = 200, []
        while True:
            line = (await stdout.readline()).rstrip(b"\r\n")
            if not line:
                break
            name, _, value = line.partition(b":")
            if name.lower() == b"status":
                status = int(value.strip().split(b" ", 1)[0])
            else:
                headers.append((name.strip().lower(), value.strip()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        while chunk := await stdout.read(65536):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        finished = True
    finally:
        if not finished and process.returncode is None:
            # The client went away mid-answer. (Never kill a finished process: Popen.kill() would reap it
            # behind the event loop's child watcher.)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        with contextlib.suppress(Exception):
            await feeder
        await stderr_task
        await process.wait()


def create_demo_repository(repos_root: Path, name: str) -> Path:
    """A bare ``<name>.git`` with one commit (a README) on ``main``, accepting pushes over HTTP."""
    bare = Path(repos_root) / f"{name}.git"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "ccweb", "GIT_AUTHOR_EMAIL": "ccweb@example.com",
        "GIT_COMMITTER_NAME": "ccweb", "GIT_COMMITTER_EMAIL": "ccweb@example.com",
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    }

    def git(*args: str, cwd: Path | None = None) -> None:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    with tempfile.TemporaryDirectory(prefix="ccweb-demo-") as scratch:
        work = Path(scratch)
        git("init", "-q", "-b", "main", str(work))
        (work / "README.md").write_text(
            f"# {name}\n\nA repository of the ccweb sandbox. You reached it with a CodeCommit-style password "
            "that ccweb signed for exactly this repository.\n"
        )
        git("add", "README.md", cwd=work)
        git("commit", "-q", "-m", "Initial commit", cwd=work)
        git("clone", "-q", "--bare", str(work), str(bare))
    git("config", "http.receivepack", "true", cwd=bare)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=bare)
    return bare

