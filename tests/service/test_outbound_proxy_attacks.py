"""Attacks on the service's proxying, each made and shown to fail: the service's own AWS credentials fetched
through ``HTTP_PROXY`` (the instance metadata service's token, role and keys in clear, or keys of the proxy's
choosing), a proxy that holds a request open with interim answers or one byte at a time, a proxy password
showing in a log line or a traceback, and an international name decided on in another form than the one
connected to. The proxies are real (proxy.py, ``tests/proxies.py``) or small loopback servers that misbehave."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.server
import json
import logging
import os
import ssl
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from botocore.utils import get_environ_proxies

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.credential_endpoints import keep_credentials_direct
from ccweb.outbound import outbound_client
from ccweb.retry import RetryPolicy
from ccweb.sandbox.dev import sandbox_policy
from ccweb.sandbox.issuer import DevIssuer
from ccweb.sts import AssumeRoleRequest, BotoSTS, StsError
from ccweb_helper.proxy import bypassed
from proxies import (
    RunningProxy,
    closed_port,
    dripping_proxy,
    interim_flood_proxy,
    real_proxy,
    refusing_proxy,
)
from support import RecordingSTS, isolate_aws, self_signed, serve, serve_http, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy",
                   "NO_PROXY", "no_proxy")
STAND_IN_KEY = "ASIASTANDIN000000000"
PLANTED = "PLANTED-PROXY-PASSWORD"
IDN, IDN_ASCII, IDN_2003 = "faß.proxied.test", "xn--fa-hia.proxied.test", "fass.proxied.test"
"""A name IDNA 2008 (httpx, which connects to it) and IDNA 2003 (Python's codec) write differently."""
OUTER = 20.0
"""A bound against a hang in these tests: every request here must end long before it."""


@pytest.fixture(scope="module")
def proxy() -> Iterator[RunningProxy]:
    with real_proxy(names=("ccweb.proxied.test", "idp.proxied.test", "sts.proxied.test", IDN_ASCII)) as running:
        yield running


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable but those a test sets; whatever the test (or the code it runs) sets is undone after it."""
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, "recorded")  # so that undoing restores the value before the test, or its absence
        monkeypatch.delenv(name)
    return monkeypatch


# --- the service's own AWS credentials ---------------------------------------------------------------------------


class Asked(NamedTuple):
    method: str
    path: str
    token: bool  # whether the request carried an IMDSv2 or container authorization token


@pytest.fixture
def metadata() -> Iterator[tuple[str, list[Asked]]]:
    """A stand-in for the EC2 instance metadata service (IMDSv2) and the container credentials endpoint on
    loopback, answering with an instance role's credentials; yield its URL and the requests it was asked."""
    asked: list[Asked] = []
    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    keys = json.dumps({"Code": "Success", "AccessKeyId": STAND_IN_KEY, "SecretAccessKey": "stand-in-secret",
                       "Token": "stand-in-session", "Expiration": expiry}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self._reply()

        def do_GET(self) -> None:
            self._reply()

        def _reply(self) -> None:
            token = "X-aws-ec2-metadata-token" in self.headers or "Authorization" in self.headers
            asked.append(Asked(self.command, self.path, token))
            body = {"/latest/api/token": b"IMDS-TOKEN", "/latest/meta-data/iam/security-credentials/": b"ccweb",
                    "/latest/meta-data/iam/security-credentials/ccweb": keys, "/v1/credentials": keys}.get(self.path)
            self.send_response(404 if body is None else 200)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *_: Any) -> None:
            pass

    with serve_http(Handler) as url:
        yield url, asked


def instance_role(env: pytest.MonkeyPatch, endpoint: str) -> None:
    """No AWS keys, files or profile: botocore's chain ends at the instance metadata service at ``endpoint``."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN"):
        env.delenv(name, raising=False)
    env.setenv("AWS_CONFIG_FILE", "/nonexistent")
    env.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    env.setenv("AWS_EC2_METADATA_DISABLED", "false")
    env.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)
    env.setenv("AWS_REGION", "us-east-1")


def test_instance_role_credentials_come_from_the_metadata_service_never_through_http_proxy(
    env: pytest.MonkeyPatch, proxy: RunningProxy, metadata: tuple[str, list[Asked]]
) -> None:
    url, asked = metadata
    instance_role(env, url)
    proxy.forget()
    env.setenv("HTTP_PROXY", proxy.url)
    env.setenv("HTTPS_PROXY", proxy.url)
    env.setenv("NO_PROXY", "corp.example")
    said = keep_credentials_direct(os.environ)  # what ccweb serve does before botocore first runs
    credentials = boto3.session.Session().get_credentials()
    assert credentials is not None and credentials.access_key == STAND_IN_KEY
    assert proxy.seen() == []  # neither the token, nor the role, nor its keys
    assert [(a.method, a.path) for a in asked] == [
        ("PUT", "/latest/api/token"), ("GET", "/latest/meta-data/iam/security-credentials/"),
        ("GET", "/latest/meta-data/iam/security-credentials/ccweb")]
    assert os.environ["NO_PROXY"].startswith("corp.example,") and os.environ["no_proxy"].startswith("corp.example,")
    assert said is not None and "169.254.169.254" in said


def test_container_credentials_never_go_through_http_proxy(
    env: pytest.MonkeyPatch, proxy: RunningProxy, metadata: tuple[str, list[Asked]]
) -> None:
    url, asked = metadata
    instance_role(env, "http://127.0.0.1:9")
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{url}/v1/credentials")  # as EKS Pod Identity names it
    env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-identity-token")
    proxy.forget()
    env.setenv("HTTP_PROXY", proxy.url)
    keep_credentials_direct(os.environ)
    credentials = boto3.session.Session().get_credentials()
    assert credentials is not None and credentials.access_key == STAND_IN_KEY
    assert proxy.seen() == []
    assert asked == [Asked("GET", "/v1/credentials", True)]


ENDPOINTS = ["http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://169.254.170.2/v2/credentials/x",
             "http://169.254.170.23/v1/credentials", "http://[fd00:ec2::23]/v1/credentials",
             "http://10.1.2.3:1338/latest/api/token"]


@pytest.mark.parametrize(("before", "after"), [
    ({}, {}),
    ({"NO_PROXY": "corp.example, .internal"},
     {"NO_PROXY": "corp.example, .internal,", "no_proxy": "corp.example, .internal,"}),
    ({"no_proxy": "a.example", "NO_PROXY": "b.example"}, {"no_proxy": "a.example,", "NO_PROXY": "b.example,"}),
    ({"no_proxy": "", "NO_PROXY": "b.example"}, {"no_proxy": "b.example,", "NO_PROXY": "b.example,"}),
])
def test_the_credential_endpoints_are_added_to_no_proxy_keeping_its_entries(
    env: pytest.MonkeyPatch, tmp_path: Path, before: dict[str, str], after: dict[str, str]
) -> None:
    config = tmp_path / "config"
    config.write_text("[default]\nec2_metadata_service_endpoint = http://10.1.2.3:1338\n")
    env.setenv("AWS_CONFIG_FILE", str(config))
    env.delenv("AWS_PROFILE", raising=False)
    env.setenv("HTTP_PROXY", "http://proxy.example.com:3128")
    for name, value in before.items():
        env.setenv(name, value)
    assert keep_credentials_direct(os.environ) is not None
    for name in ("no_proxy", "NO_PROXY"):
        assert os.environ[name].startswith(after.get(name, "169.254.169.254"))
    for url in ENDPOINTS:
        assert get_environ_proxies(url) == {}, url  # botocore's own reading: directly
        host = urlsplit(url).hostname
        assert host is not None and bypassed(host, None, os.environ["no_proxy"]), url  # curl's, the service's
    assert "http" in get_environ_proxies("http://other.example/")
    assert keep_credentials_direct(os.environ) is None  # nothing twice


@pytest.mark.parametrize("environment", [{"NO_PROXY": "*"}, {"HTTP_PROXY": ""}])
def test_no_proxy_is_left_alone_when_nothing_goes_through_a_proxy(
    env: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    env.setenv("HTTP_PROXY", "http://proxy.example.com:3128")
    for name, value in environment.items():
        env.setenv(name, value)
    keep_credentials_direct(os.environ)
    assert {os.environ.get("no_proxy"), os.environ.get("NO_PROXY")} <= {"*", None}


def test_ccweb_serve_fetches_its_instance_role_credentials_around_http_proxy(
    env: pytest.MonkeyPatch, tmp_path: Path, proxy: RunningProxy, metadata: tuple[str, list[Asked]]
) -> None:
    url, asked = metadata
    proxy.forget()
    policy = tmp_path / "policy.yaml"
    policy.write_text("issuers:\n  - name: corp\n    issuer: http://127.0.0.1:9\n    audiences: [ccweb]\n"
                      "rules:\n  - name: everyone\n    issuer: corp\n"
                      "    role_arn: arn:aws:iam::111122223333:role/ccweb\n    repositories: ['*']\n")
    instance_role(env, url)
    run_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "service"), str(ROOT / "helper")]),
               "HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "HTTPS_PROXY": proxy.url, "NO_PROXY": "corp.example"}
    with closed_port() as port:
        pass  # free a moment ago: ccweb serve listens there
    server = subprocess.Popen([sys.executable, "-m", "ccweb", "serve", "--config", str(policy), "--host", "127.0.0.1",
                               "--port", str(port), "--log-format", "text"],
                              env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_healthy(server, f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while not any(a.path.endswith("/ccweb") for a in asked):
            assert time.monotonic() < deadline, asked
            time.sleep(0.1)
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert proxy.seen() == []
    assert "were added to NO_PROXY and no_proxy" in err, err


# --- an international name -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idn_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """An https origin on loopback with a certificate for ``IDN_ASCII`` (and 127.0.0.1): its port and that
    certificate."""
    cert, server = self_signed(tmp_path_factory.mktemp("idn"), IDN_ASCII)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: Any) -> None:
            pass

    with serve_http(Handler, tls=server) as url:
        yield urlsplit(url).port or 0, cert


def get(url: str, env: dict[str, str], *, timeout: float = 5.0,
        verify: ssl.SSLContext | None = None) -> tuple[Any, float]:
    """GET ``url`` with the service's outbound client for ``env``: the answer, or the exception, and how long it
    took."""

    async def scenario() -> httpx.Response:
        client = outbound_client(timeout=httpx.Timeout(timeout), verify=verify, env=env)
        try:
            return await asyncio.wait_for(client.get(url), OUTER)
        finally:
            await client.aclose()

    started = time.monotonic()
    try:
        result: Any = asyncio.run(scenario())
    except Exception as exc:  # noqa: BLE001 (the test looks at it)
        result = exc
    return result, time.monotonic() - started


@pytest.mark.parametrize(("no_proxy", "proxied"), [(IDN_2003, True), (IDN_ASCII, False)])
def test_an_international_name_is_decided_on_in_the_form_connected_to(
    proxy: RunningProxy, idn_origin: tuple[int, Path], no_proxy: str, proxied: bool
) -> None:
    port, cert = idn_origin
    trust = ssl.create_default_context(cafile=str(cert))
    proxy.forget()
    answer, _ = get(f"https://{IDN}:{port}/", {"HTTPS_PROXY": proxy.url, "NO_PROXY": no_proxy}, verify=trust)
    if proxied:  # NO_PROXY names another host: the one IDNA 2003 would write
        assert isinstance(answer, httpx.Response) and answer.status_code == 200, answer
        assert proxy.tunnels() == {f"{IDN_ASCII}:{port}"}
    else:  # directly: the name resolves nowhere but in the proxy
        assert isinstance(answer, httpx.ConnectError), answer
        assert proxy.seen() == []


@pytest.mark.parametrize("host", ["127.1", "0x7f000001", "[::ffff:127.0.0.1]", "localhost"])
def test_loopback_in_any_spelling_is_reached_directly(idn_origin: tuple[int, Path], host: str) -> None:
    port, cert = idn_origin
    trust = ssl.create_default_context(cafile=str(cert))
    trust.check_hostname = False  # the certificate names 127.0.0.1 only; the test is about the route
    with refusing_proxy(407) as refusing:
        answer, _ = get(f"https://{host}:{port}/", {"HTTPS_PROXY": refusing}, verify=trust)
    assert isinstance(answer, httpx.Response) and answer.status_code == 200, answer


# --- proxies that hold a request open ----------------------------------------------------------------------------


def outbound_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ccweb.outbound"]


def test_a_proxy_flooding_connect_with_interim_answers_is_refused_at_once(caplog: pytest.LogCaptureFixture) -> None:
    with interim_flood_proxy() as flood, caplog.at_level(logging.WARNING):
        answer, took = get("https://idp.proxied.test:4430/", {"HTTPS_PROXY": flood}, timeout=5.0)
    assert isinstance(answer, httpx.RemoteProtocolError), answer
    assert took < 5.0  # not the 10 s the exchange may take, nor OUTER
    [line] = outbound_lines(caplog)
    assert f"through the proxy {flood} (HTTPS_PROXY) failed: RemoteProtocolError: the proxy sent more than 2 " \
           f"interim (1xx) answers to CONNECT" in line


def test_a_proxy_that_drips_its_answer_is_cut_at_the_clients_budget(caplog: pytest.LogCaptureFixture) -> None:
    with dripping_proxy() as drip, caplog.at_level(logging.WARNING):
        answer, took = get("https://idp.proxied.test:4430/", {"HTTPS_PROXY": drip}, timeout=0.5)
    assert isinstance(answer, httpx.ReadTimeout), answer
    assert 0.9 < took < 5.0  # connect + read timeouts: 1 s, although no read waits 0.5 s
    [line] = outbound_lines(caplog)
    assert f"through the proxy {drip} (HTTPS_PROXY) failed: ReadTimeout: no complete answer within 1 s" in line


def test_sts_through_a_dripping_proxy_keeps_to_its_retry_budget(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    isolate_aws(env)
    request = AssumeRoleRequest("arn:aws:iam::111122223333:role/ccweb-developers", "ann@example.com",
                                "ann@example.com", '{"Version": "2012-10-17", "Statement": []}', 3600)
    with dripping_proxy() as drip:
        env.setenv("HTTPS_PROXY", drip)
        sts = BotoSTS(session=boto3.session.Session(), endpoint_url="https://sts.proxied.test:4430",
                      connect_timeout=0.5, read_timeout=0.5)

        async def scenario() -> None:
            try:
                await RetryPolicy(budget=3.0).run(lambda: sts.assume_role(request))
            finally:
                await sts.aclose()

        started = time.monotonic()
        with pytest.raises(StsError) as raised, caplog.at_level(logging.INFO):
            asyncio.run(asyncio.wait_for(scenario(), OUTER))
        took = time.monotonic() - started
    assert raised.value.retryable and took < 4.0
    assert any("STS ReadTimeout; retry 1" in r.getMessage() for r in caplog.records)  # each attempt cut at 1 s


def test_issuer_keys_through_a_dripping_proxy_keep_to_their_5_s(env: pytest.MonkeyPatch) -> None:
    issuer = DevIssuer("https://idp.proxied.test:4430")  # never reached: the proxy only drips
    with dripping_proxy() as drip:
        env.setenv("HTTPS_PROXY", drip)
        app = create_app(parse_config(sandbox_policy(issuer.issuer_url, "127.0.0.1:9")), sts=RecordingSTS())
        with serve(app) as url:
            started = time.monotonic()
            token = issuer.mint_user("alice")
            answer = httpx.post(f"{url}/v1/credentials", headers={"Authorization": f"Bearer {token}"},
                                json={"protocol": "https", "host": "git-codecommit.us-east-1.amazonaws.com",
                                      "path": "v1/repos/demo"}, timeout=OUTER, trust_env=False)
            took = time.monotonic() - started
            ready = httpx.get(f"{url}/readyz", timeout=OUTER, trust_env=False).json()
    assert answer.status_code == 503 and took < 8.0
    assert "no answer within 5 s" in ready["issuers"]["dev"]["last_error"], ready


# --- the proxy's password ----------------------------------------------------------------------------------------


def frame_variables(exc: BaseException) -> list[str]:
    """What a traceback with every frame's variables shows (an error tracker's, a debugger's) — the header lists
    httpcore builds for CONNECT among them — but for this file's frames (whose variables hold the planted URL)."""
    shown = []
    summary: traceback.TracebackException | None = traceback.TracebackException.from_exception(
        exc, capture_locals=True)
    while summary is not None:
        shown += [f"{frame.name}: {frame.locals}" for frame in summary.stack if frame.filename != __file__]
        summary = summary.__cause__ or summary.__context__
    return shown


@pytest.mark.parametrize("kind", ["407", "closed"])
def test_the_proxy_password_shows_in_no_log_line_nor_traceback(caplog: pytest.LogCaptureFixture, kind: str) -> None:
    encoded = base64.b64encode(f"svc:{PLANTED}".encode()).decode()
    with refusing_proxy(407) as refusing, closed_port() as dead, caplog.at_level(logging.DEBUG), \
            caplog.at_level(logging.DEBUG, logger="httpcore"), caplog.at_level(logging.DEBUG, logger="httpx"):
        url = refusing if kind == "407" else f"http://127.0.0.1:{dead}"
        answer, _ = get("https://idp.proxied.test:4430/", {"HTTPS_PROXY": url.replace("//", f"//svc:{PLANTED}@")})
    assert isinstance(answer, httpx.ProxyError if kind == "407" else httpx.ConnectError), answer
    shown = [r.getMessage() for r in caplog.records]
    shown += [str(answer), repr(answer), *traceback.format_exception(answer), *frame_variables(answer)]
    everything = "\n".join(shown)
    assert f"through the proxy {url} (HTTPS_PROXY) failed" in everything
    assert "Proxy-Authorization" in everything  # the header is there, its value is not
    for secret in (PLANTED, encoded, encoded[:12]):
        assert secret not in everything
