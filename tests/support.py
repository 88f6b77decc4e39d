"""Real servers on loopback for tests (any ASGI app under uvicorn in a background thread), and the stand-ins
every test shares: the STS client, the retry clock."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.server
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import uvicorn

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.limits import SERVER_OPTIONS
from ccweb.retry import RetryPolicy
from ccweb.sandbox.dev import REGION, Sandbox
from ccweb.sandbox.issuer import DevIssuer
from ccweb.signing import AwsCredentials
from ccweb.sts import AssumeRoleRequest, BotoSTS, STSClient, StsError


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def serve(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on an ephemeral loopback port; yield its base URL; stop it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = _QuietServer(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", http="h11",
                                         **SERVER_OPTIONS))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(sockets=[sock]),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a bound against a hang: a busy machine may take seconds to start it
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server failed to start")
        threading.Event().wait(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        loop.close()
        sock.close()


# Variables that would change what the helper or git does: theirs, and those CI platforms set (the machine
# running these tests may itself be a CI runner, with CI=true and a platform's token variables).
INHERITED_SKIP = ("GIT_", "CCWEB_", "SSL_CERT", "CI", "GITHUB_", "ACTIONS_", "RUNNER_", "GITLAB_", "CIRCLE",
                  "BUILDKITE", "BITBUCKET_", "TF_BUILD", "SYSTEM_", "AGENT_", "BUILD_", "AZURE", "ENDPOINT_",
                  "TEAMCITY", "JENKINS", "TRAVIS")


PROXIES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")  # loopback traffic must not go to a proxy


def clean_env(*skip: str, **extra: str) -> dict[str, str]:
    """This process's environment without ``INHERITED_SKIP`` (and ``skip``) variables nor proxies, plus
    ``extra``."""
    prefixes = INHERITED_SKIP + skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes) and k.lower() not in PROXIES}
    env.update(extra)
    return env


HELPER_SOURCE = Path(__file__).resolve().parents[1] / "helper"


def home_env(home: Path, **extra: str) -> dict[str, str]:
    """``clean_env()`` with a throwaway HOME and git configuration, no prompts, and the helper importable."""
    return clean_env(**{
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0", "PYTHONPATH": str(HELPER_SOURCE), **extra,
    })


def version_in_a_tree_of_its_own(command: str, root: Path) -> tuple[int, str, bool]:
    """Run the helper command ``command`` (``!…``) with ``--version`` where git runs helpers, in a work tree with a
    ``ccweb_helper/`` of its own, and no PYTHONPATH but what ``command`` says: (exit status, stdout, whether the
    tree's package ran)."""
    marker = root / "ran"
    (root / "tree" / "ccweb_helper").mkdir(parents=True)
    for name in ("__init__.py", "__main__.py"):
        (root / "tree" / "ccweb_helper" / name).write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    env = home_env(root)
    env.pop("PYTHONPATH")
    ran = subprocess.run(["sh", "-c", f"{command[1:]} --version"], cwd=root / "tree", env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    return ran.returncode, ran.stdout, marker.exists()


@contextlib.contextmanager
def serve_http(handler: type[http.server.BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve an ``http.server`` handler on an ephemeral loopback port (TLS with ``tls``); yield its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Asked(NamedTuple):
    """One request to a ``serve_json`` stand-in: its method, path (with the query), headers and body."""

    method: str
    path: str
    headers: Message
    body: bytes


JsonAnswer = Callable[[Asked], tuple[int, bytes | dict[str, Any] | list[Any]]]
"""What a ``serve_json`` stand-in answers a request with: a status and a document (bytes are sent as they are)."""


@contextlib.contextmanager
def serve_json(answer: JsonAnswer, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """A loopback stand-in that answers each GET and POST with ``answer(request)`` as JSON (TLS with ``tls``);
    yield its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply()

        def do_POST(self) -> None:
            self._reply()

        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            asked = Asked(self.command, self.path, self.headers, self.rfile.read(length) if length else b"")
            status, document = answer(asked)
            body = document if isinstance(document, bytes) else json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    with serve_http(Handler, tls) as url:
        yield url


@contextlib.contextmanager
def serve_issuer(asked: list[str] | None = None) -> Iterator[DevIssuer]:
    """The sandbox's development issuer on an ephemeral loopback port (``asked`` collects requested paths)."""
    issuer = DevIssuer("http://127.0.0.1")  # its real address is known once it listens
    inner = issuer.app()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if asked is not None and scope["type"] == "http":
            asked.append(scope["path"])
        await inner(scope, receive, send)

    with serve(app) as url:
        issuer.issuer_url = issuer.login.issuer_url = url
        yield issuer


class PartnerService:
    """A partner's real ccweb service (an ASGI app) for its ``git_host``: it trusts the company's CI issuer and
    names ``ci_audience`` (by default the company's URL) as its own CI audience, as its discovery may; it records
    the Authorization header of every request in ``authorizations``. ``url`` is for whoever serves it."""

    def __init__(self, company: Sandbox, git_host: str, ci_audience: str | None = None) -> None:
        audience = company.api_url if ci_audience is None else ci_audience
        self.url = ""
        self.authorizations: list[str] = []
        self.inner = create_app(parse_config({
            "issuers": [{"name": "ci", "issuer": company.issuer_url, "audiences": [audience]}],
            "git_endpoints": [{"host": git_host, "region": REGION}], "ci_audience": audience,
        }), sts=RecordingSTS())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        authorization = dict(scope.get("headers", [])).get(b"authorization")
        if scope["type"] == "http" and authorization is not None:
            self.authorizations.append(authorization.decode())
        await self.inner(scope, receive, send)


DEVICE_CODE_LINE = re.compile(r"open (?P<url>http://\S+) on any device and enter the code (?P<code>[A-Z]{4}-[A-Z]{4})")


def device_login(env: dict[str, str], *args: str, user: str = "bob") -> str:
    """``ccweb-helper login --device`` with the code entered as ``user`` on the device page it names (the
    sandbox's development issuer's); its stderr."""
    login = subprocess.Popen([sys.executable, "-m", "ccweb_helper", "login", "--device", *args], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert login.stderr is not None
        shown = ""
        found = None
        while found is None:
            line = login.stderr.readline()
            assert line, shown
            shown += line
            found = DEVICE_CODE_LINE.search(line)
        page = httpx.post(found["url"], data={"user_code": found["code"], "user": user})
        assert f"Signed in as {user}" in page.text
        _, err = login.communicate(timeout=60)
    finally:
        if login.poll() is None:
            login.kill()
            login.wait()
    assert login.returncode == 0, err
    return shown + err


class FakeTime:
    """A monotonic clock that only sleeping moves, and the sleep that moves it (for the STS retry policy)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def isolate_aws(monkeypatch: Any) -> None:
    """Throwaway service keys and no AWS files, profiles, endpoints or instance metadata: boto3 can reach only
    what a test names (``AWS_ENDPOINT_URL_STS``, set after this)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASERVICEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "service-secret-example")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@contextlib.contextmanager
def serve_moto() -> Iterator[str]:
    """moto's server on loopback (its in-process mock patches botocore's HTTP layer, which BotoSTS does not use);
    yield its URL. Call ``isolate_aws`` first."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def self_signed(directory: Path, *names: str, addresses: tuple[str, ...] = ("127.0.0.1",),
                ) -> tuple[Path, ssl.SSLContext]:
    """A certificate for the IP ``addresses`` (127.0.0.1) and the DNS ``names`` that is its own authority
    (``directory``/cert.pem, with its key beside it) and a server context that presents it."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ccweb test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([*(x509.IPAddress(ipaddress.ip_address(a)) for a in addresses),
                                                    *map(x509.DNSName, names)]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return cert_path, context


CHAINING_REFUSAL = ("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role "
                    "chaining.")
"""STS's own words when it refuses a chained session over an hour (``ValidationError``)."""
PLANTED_SECRET, PLANTED_SESSION_TOKEN = "PLANTEDSECRET", "PLANTEDSESSIONTOKEN"
"""How every secret access key and session token a ``RecordingSTS`` issues begins (leak tests look for them)."""


class RecordingSTS:
    """The STS stand-in of every test (an ``STSClient``: checked below). It records each AssumeRole request in
    ``requests`` (refused ones too) and each session it issues in ``issued``: distinct keys with planted
    secrets, ``lifetime`` long from ``clock()`` (by default an hour of real time). It can be told

    - to fail: ``fail`` is raised by every call while set; ``script`` by the next calls, one each, first;
    - to behave as STS does for a service whose own identity is a role (``chained``): more than an hour is
      refused with STS's ``ValidationError``;
    - to take time: each call lasts ``delay`` seconds; after ``hold()`` calls wait until ``release()``, or
      until ``until`` of them are waiting at once (``in_flight``, ``most_in_flight``; a guard of
      ``HOLD_GUARD_SECONDS`` against a hang, not a measurement).
    """

    HOLD_GUARD_SECONDS = 10.0

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        lifetime: dt.timedelta = dt.timedelta(hours=1),
        fail: Exception | None = None,
        chained: bool = False,
        delay: float = 0.0,
    ) -> None:
        self.clock, self.lifetime, self.fail, self.chained, self.delay = clock, lifetime, fail, chained, delay
        self.script: list[Exception] = []
        self.requests: list[AssumeRoleRequest] = []
        self.issued: list[AwsCredentials] = []
        self.in_flight = self.most_in_flight = 0
        self._gate: asyncio.Event | None = None
        self._until: int | None = None

    def hold(self, until: int | None = None) -> None:
        """Hold every call from now on until ``release()`` (or until ``until`` calls are held at once)."""
        self._gate, self._until = asyncio.Event(), until

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()

    async def assume_role(self, request: AssumeRoleRequest) -> AwsCredentials:
        self.requests.append(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self._gate is not None:
                if self._until is not None and self.in_flight >= self._until:
                    self._gate.set()
                await asyncio.wait_for(self._gate.wait(), self.HOLD_GUARD_SECONDS)
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.script:
            raise self.script.pop(0)
        if self.fail is not None:
            raise self.fail
        if self.chained and request.duration_seconds > 3600:
            raise StsError("ValidationError", CHAINING_REFUSAL, retryable=False)
        creds = AwsCredentials(
            "ASIA" + secrets.token_hex(8).upper(),
            PLANTED_SECRET + secrets.token_hex(12),
            PLANTED_SESSION_TOKEN + secrets.token_hex(24),
            dt.datetime.fromtimestamp(self.clock() + self.lifetime.total_seconds(), dt.UTC),
        )
        self.issued.append(creds)
        return creds


_TYPED: STSClient = RecordingSTS()  # mypy checks the stand-in against the interface it stands in for


def fake_retry(time_: FakeTime, **kwargs: Any) -> RetryPolicy:
    """The STS retry policy on ``time_``, with worst-case jitter (always the ceiling), so the schedule is
    exact: 0.25, 0.5, 1, 2, 4 s."""
    return RetryPolicy(monotonic=time_.monotonic, sleep=time_.sleep, jitter=lambda ceiling: ceiling, **kwargs)


def wait_until_healthy(server: subprocess.Popen[str], url: str) -> None:
    """Until the ``ccweb serve`` process ``server`` answers ``/healthz`` at ``url`` (a bound against a hang: 60 s);
    its stderr in the failure if it stops first."""
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/healthz", timeout=2).raise_for_status()
            return
        except httpx.TransportError:
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.2)


def assume(sts: BotoSTS, *requests: AssumeRoleRequest) -> list[AwsCredentials]:
    """Each request in turn on one event loop, and the client closed after."""

    async def scenario() -> list[AwsCredentials]:
        try:
            return [await sts.assume_role(r) for r in requests]
        finally:
            await sts.aclose()

    return asyncio.run(scenario())


@contextlib.contextmanager
def serve_downloads() -> Iterator[str]:
    """The service on loopback for what it serves everyone: the helper's downloads, their checksums, its page (one
    rule; its issuer is never asked)."""
    config = parse_config({
        "issuers": [{"name": "corp", "issuer": "http://127.0.0.1:9", "audiences": ["ccweb"]}],
        "rules": [{"name": "all", "issuer": "corp", "role_arn": "arn:aws:iam::111122223333:role/all",
                   "repositories": ["*"]}],
    })
    with serve(create_app(config, sts=RecordingSTS())) as served:
        yield served
