"""The STS client: BotoSTS (a SigV4-signed request over httpx) against moto's server or a loopback STS named by
AWS_ENDPOINT_URL_STS: the signed request, STS's answers as errors without secrets, the service's own
credentials, trust, the signing region botocore's rules give, and the bound on calls in flight. Faults through
the loopback STS as a user sees them are in test_faults."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import http.server
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.credentials import ReadOnlyCredentials
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ccweb.errors import UpstreamUnavailable
from ccweb.sandbox.sts import DevSTSStore, create_sts_app
from ccweb.sessions import SessionCache
from ccweb.signing import AwsCredentials
from ccweb.sts import AssumeRoleRequest, BotoSTS, StsError
from support import FakeTime, assume, fake_retry, isolate_aws, self_signed, serve, serve_http, serve_moto

ROLE = "arn:aws:iam::111122223333:role/ccweb-developers"
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["codecommit:GitPull"], "Resource": ["arn:aws:codecommit:*:111122223333:*"]}]})
REQUEST = AssumeRoleRequest(ROLE, "ann@example.com", "ann@example.com", POLICY, 3600)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_aws(monkeypatch)


@pytest.fixture
def moto_sts(aws_env: None) -> Iterator[str]:
    with serve_moto() as url:
        yield url


def test_boto_sts_against_moto(moto_sts: str) -> None:
    [creds] = assume(BotoSTS(endpoint_url=moto_sts), REQUEST)
    assert creds.access_key_id.startswith("ASIA")
    assert creds.secret_access_key and creds.session_token
    assert creds.expiration is not None
    assert timedelta(minutes=55) < creds.expiration - datetime.now(UTC) <= timedelta(hours=1, minutes=1)


def test_aws_endpoint_url_sts_names_moto(moto_sts: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_sts)
    sts = BotoSTS(session=boto3.session.Session())
    assert sts.endpoint_url == moto_sts
    [creds] = assume(sts, REQUEST)
    assert creds.access_key_id.startswith("ASIA")


def test_aws_endpoint_url_sts_is_honoured(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The standard AWS environment, AWS_ENDPOINT_URL_STS included, steers the service's STS client."""
    store = DevSTSStore()
    with serve(create_sts_app(store)) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", url)
        [creds] = assume(BotoSTS(session=boto3.session.Session()), REQUEST)
    issued = store.lookup(creds.access_key_id)
    assert issued is not None, "the call did not reach the loopback STS"
    assert (issued.role_arn, issued.role_session_name, issued.source_identity) == (
        ROLE, "ann@example.com", "ann@example.com")
    assert issued.policy == POLICY
    assert issued.credentials.expiration == creds.expiration
    assert issued.credentials.secret_access_key == creds.secret_access_key
    assert issued.credentials.session_token == creds.session_token


def test_the_endpoint_and_signing_region_are_botocores(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    sts = BotoSTS(session=boto3.session.Session(), region="eu-west-2")
    assert (sts.endpoint_url, sts.region) == ("https://sts.eu-west-2.amazonaws.com", "eu-west-2")
    monkeypatch.setenv("AWS_USE_FIPS_ENDPOINT", "true")
    fips = BotoSTS(session=boto3.session.Session(), region="us-east-2")
    assert (fips.endpoint_url, fips.region) == ("https://sts-fips.us-east-2.amazonaws.com", "us-east-2")


def test_unreachable_sts_is_a_retryable_error(aws_env: None) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    sts = BotoSTS(session=boto3.session.Session(), endpoint_url=dead, connect_timeout=1)
    with pytest.raises(StsError) as raised:
        assume(sts, REQUEST)
    assert raised.value.retryable
    assert raised.value.code == "ConnectError"
    assert "service-secret-example" not in str(raised.value)


class Gate:
    """ASGI middleware in front of the STS stand-in: holds each request until ``expected`` are in flight at
    once, and counts how many ever were (a guard against a hang, not a measurement)."""

    def __init__(self, app: Any, expected: int) -> None:
        self.app, self.expected = app, expected
        self.in_flight = 0
        self.most = 0
        self.opened: asyncio.Event | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.opened = self.opened or asyncio.Event()
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            if self.in_flight >= self.expected:
                self.opened.set()
            await asyncio.wait_for(self.opened.wait(), 30)
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize(("concurrency", "calls", "expected"), [(64, 40, 40), (4, 12, 4), (20, 30, 20)])
def test_boto_sts_has_up_to_concurrency_calls_in_flight_and_never_more(
    aws_env: None, concurrency: int, calls: int, expected: int
) -> None:
    """Calls for distinct keys go to STS side by side, up to ``concurrency`` at once; the rest wait their turn.
    Each call is held at the stand-in until ``expected`` are there, then for its latency: a call past the
    bound would arrive meanwhile and be counted."""
    store = DevSTSStore(latency=0.2)
    gate = Gate(create_sts_app(store), expected)
    with serve(gate) as url:
        sts = BotoSTS(session=boto3.session.Session(), endpoint_url=url, concurrency=concurrency,
                      read_timeout=30)  # held at the gate: as long as its guard, not the default 5 s
        requests = [dataclasses.replace(REQUEST, session_name=f"user-{n}") for n in range(calls)]

        async def scenario() -> list[AwsCredentials]:
            try:
                return await asyncio.gather(*(sts.assume_role(r) for r in requests))
            finally:
                await sts.aclose()

        results = asyncio.run(scenario())
    assert len({r.access_key_id for r in results}) == calls
    assert gate.most == store.max_in_flight == expected
    assert store.requests == calls


def test_boto_sts_refuses_a_pool_of_nothing(aws_env: None) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        BotoSTS(session=boto3.session.Session(), concurrency=0)


# --- the signed request, STS's answers, the service's own credentials -------------------------------------

SIGV4 = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
                   r"/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})")


def sigv4_valid(method: str, path: str, headers: dict[str, str], body: bytes, secret: str) -> bool:
    """Signature Version 4 checked from scratch, as AWS checks it (no query string: a POST of a form)."""
    match = SIGV4.fullmatch(headers["authorization"])
    assert match is not None
    signed = match["signed"].split(";")
    canonical = "\n".join([
        method, path, "", "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed), match["signed"],
        hashlib.sha256(body).hexdigest()])
    scope = f"{match['date']}/{match['region']}/{match['service']}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", headers["x-amz-date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (match["date"], match["region"], match["service"], "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), match["signature"])


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Recorder:
    """ASGI middleware that records each request (method, path, headers, body) before the app answers it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[Seen] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.seen.append(Seen(scope["method"], scope["path"], headers, body))
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


SERVICE_KEY, SERVICE_SECRET, SERVICE_TOKEN = "ASIASERVICEEXAMPLE01", "service-secret-planted", "service-token-planted"


@pytest.mark.parametrize("token", [SERVICE_TOKEN, None], ids=["session-token", "long-term-keys"])
def test_the_request_is_signed_with_sigv4(aws_env: None, token: str | None) -> None:
    store = DevSTSStore()
    recorder = Recorder(create_sts_app(store))
    session = boto3.session.Session(aws_access_key_id=SERVICE_KEY, aws_secret_access_key=SERVICE_SECRET,
                                    aws_session_token=token, region_name="eu-west-2")
    with serve(recorder) as url:
        [creds] = assume(BotoSTS(session=session, endpoint_url=url), REQUEST)
    assert store.lookup(creds.access_key_id) is not None
    [seen] = recorder.seen
    assert (seen.method, seen.path) == ("POST", "/")
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded; charset=utf-8"
    assert parse_qs(seen.body.decode()) == {
        "Action": ["AssumeRole"], "Version": ["2011-06-15"], "RoleArn": [ROLE],
        "RoleSessionName": [REQUEST.session_name], "SourceIdentity": [REQUEST.source_identity], "Policy": [POLICY],
        "DurationSeconds": ["3600"]}
    amz_date = seen.headers["x-amz-date"]
    assert re.fullmatch(r"\d{8}T\d{6}Z", amz_date)
    match = SIGV4.fullmatch(seen.headers["authorization"])
    assert match is not None, seen.headers["authorization"]
    assert (match["key"], match["date"], match["region"], match["service"]) == (
        SERVICE_KEY, amz_date[:8], "eu-west-2", "sts")
    assert {"host", "x-amz-date"} <= set(match["signed"].split(";"))
    if token is None:
        assert "x-amz-security-token" not in seen.headers
    else:
        assert seen.headers["x-amz-security-token"] == token
        assert "x-amz-security-token" in match["signed"].split(";")
    assert sigv4_valid(seen.method, seen.path, seen.headers, seen.body, SERVICE_SECRET)
    assert not sigv4_valid(seen.method, seen.path, seen.headers, seen.body + b"&x=1", SERVICE_SECRET)
    assert not sigv4_valid(seen.method, seen.path, seen.headers, seen.body, "another-secret")


def scripted_sts(status: int, body: str) -> Starlette:
    """A loopback STS that answers every request with ``status`` and ``body``."""

    async def endpoint(_: Request) -> Response:
        return Response(body, status_code=status, media_type="text/xml")

    return Starlette(routes=[Route("/", endpoint, methods=["POST"])])


def error_xml(code: str, message: str) -> str:
    return (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>")


PLANTED_SECRET, PLANTED_TOKEN = "PLANTEDSECRETwJalrXUtnFEMI", "PLANTEDTOKENFwoGZXIvYXdzEJr"
HALF_AN_ANSWER = ('<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
                  f"<Credentials><AccessKeyId>ASIAPLANTED</AccessKeyId><SecretAccessKey>{PLANTED_SECRET}"
                  f"</SecretAccessKey><SessionToken>{PLANTED_TOKEN}")
NO_EXPIRATION = (HALF_AN_ANSWER + "</SessionToken></Credentials></AssumeRoleResult></AssumeRoleResponse>")

STS_ANSWERS = [  # status, body, code, retryable, message part
    pytest.param(400, error_xml("Throttling", "Rate exceeded"), "Throttling", True, "Rate exceeded", id="throttling"),
    pytest.param(403, error_xml("AccessDenied", "not authorized"), "AccessDenied", False, "not authorized",
                 id="access-denied"),
    pytest.param(400, error_xml("MalformedPolicyDocument", "bad"), "MalformedPolicyDocument", False, "bad",
                 id="bad-policy"),
    pytest.param(400, error_xml("IDPCommunicationError", "later"), "IDPCommunicationError", True, "later",
                 id="retryable-code"),
    pytest.param(500, error_xml("InternalFailure", "oops"), "InternalFailure", True, "oops", id="500"),
    pytest.param(503, "<html>Service Unavailable</html>", "503", True, "HTTP 503", id="503-not-xml"),
    pytest.param(429, "", "429", True, "HTTP 429", id="429-empty"),
    pytest.param(404, "nothing here", "404", False, "HTTP 404", id="404"),
    pytest.param(200, f"garbage {PLANTED_SECRET} {PLANTED_TOKEN}", "MalformedResponse", True, "without readable",
                 id="garbage-200"),
    pytest.param(200, HALF_AN_ANSWER, "MalformedResponse", True, "without readable", id="truncated-200"),
    pytest.param(200, NO_EXPIRATION, "MalformedResponse", True, "without readable", id="no-expiration-200"),
]


@pytest.mark.parametrize(("status", "body", "code", "retryable", "message"), STS_ANSWERS)
def test_sts_answers_map_to_errors_without_secrets(  # noqa: PLR0917 (one row of the table)
    aws_env: None, caplog: pytest.LogCaptureFixture, status: int, body: str, code: str, retryable: bool,
    message: str,
) -> None:
    session = boto3.session.Session(aws_access_key_id=SERVICE_KEY, aws_secret_access_key=SERVICE_SECRET,
                                    aws_session_token=SERVICE_TOKEN, region_name="us-east-1")
    with serve(scripted_sts(status, body)) as url, caplog.at_level(logging.DEBUG):
        sts = BotoSTS(session=session, endpoint_url=url)
        with pytest.raises(StsError) as raised:
            assume(sts, REQUEST)
        # And through the cache and its retries, which log every failed attempt.
        cache = SessionCache(BotoSTS(session=session, endpoint_url=url), retry=fake_retry(FakeTime(), budget=1.0))

        async def through_the_cache() -> None:
            try:
                await cache.get(("developers", "corp", "ann@example.com", ""), REQUEST)
            finally:
                await cache._sts.aclose()  # type: ignore[attr-defined]

        with pytest.raises(UpstreamUnavailable):
            asyncio.run(through_the_cache())
    error = raised.value
    assert (error.code, error.retryable) == (code, retryable)
    assert message in str(error)
    assert cache.sts_calls == (3 if retryable else 1)  # 0.25 + 0.5 s of backoff fit the 1 s budget
    for secret in (PLANTED_SECRET, PLANTED_TOKEN, SERVICE_SECRET, SERVICE_TOKEN):
        assert secret not in str(error)
        assert secret not in caplog.text
    assert "Signature=" not in caplog.text


def test_without_any_credentials_the_error_says_so(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    for name in ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    sts = BotoSTS(session=boto3.session.Session(), endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StsError) as raised:
        assume(sts, REQUEST)
    assert raised.value.code == "NoCredentials"
    assert not raised.value.retryable
    assert "no AWS credentials found for the service" in str(raised.value)


class FakeRefreshable:
    """botocore's RefreshableCredentials as BotoSTS uses them: a refresh is due until one has run."""

    def __init__(self, fail: bool = False) -> None:
        self.due = True
        self.fail = fail
        self.threads: list[threading.Thread] = []
        self.refreshes = 0

    def refresh_needed(self, refresh_in: float | None = None) -> bool:
        return self.due

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        self.threads.append(threading.current_thread())
        if self.due:
            time.sleep(0.05)  # IMDS or AssumeRoleWithWebIdentity
            if self.fail:
                raise RuntimeError(f"could not refresh {PLANTED_SECRET}")
            self.refreshes += 1
            self.due = False
        return ReadOnlyCredentials("ASIAREFRESHED0000001", SERVICE_SECRET, SERVICE_TOKEN)


class RefreshingSession(boto3.session.Session):  # type: ignore[misc]  # boto3 has no type information
    def __init__(self, credentials: FakeRefreshable) -> None:
        super().__init__(region_name="us-east-1")
        self.fake = credentials

    def get_credentials(self) -> Any:
        return self.fake


def test_refreshable_credentials_are_refreshed_off_the_event_loop_once(aws_env: None) -> None:
    credentials = FakeRefreshable()
    store = DevSTSStore()
    recorder = Recorder(create_sts_app(store))
    with serve(recorder) as url:
        sts = BotoSTS(session=RefreshingSession(credentials), endpoint_url=url)
        requests = [dataclasses.replace(REQUEST, session_name=f"user-{n}") for n in range(10)]

        async def scenario() -> list[AwsCredentials]:
            try:
                first = await asyncio.gather(*(sts.assume_role(r) for r in requests))
                return [*first, await sts.assume_role(REQUEST)]
            finally:
                await sts.aclose()

        results = asyncio.run(scenario())
    assert len(results) == 11
    assert credentials.refreshes == 1, "one refresh for every caller waiting on it"
    refresher, *others = credentials.threads
    assert refresher is not threading.main_thread(), "the refresh ran off the event loop"
    assert others and all(t is threading.main_thread() for t in others), "fresh credentials are read in place"
    assert {s.headers["authorization"].split("/")[0] for s in recorder.seen} == {
        "AWS4-HMAC-SHA256 Credential=ASIAREFRESHED0000001"}
    assert {s.headers["x-amz-security-token"] for s in recorder.seen} == {SERVICE_TOKEN}


def test_a_failed_refresh_is_a_retryable_error_without_its_words(
    aws_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    sts = BotoSTS(session=RefreshingSession(FakeRefreshable(fail=True)), endpoint_url="http://127.0.0.1:9")
    with caplog.at_level(logging.DEBUG), pytest.raises(StsError) as raised:
        assume(sts, REQUEST)
    assert raised.value.retryable
    assert raised.value.code == "RuntimeError"
    assert PLANTED_SECRET not in str(raised.value) and PLANTED_SECRET not in caplog.text


def test_a_closed_client_opens_a_new_one_when_used_again(aws_env: None) -> None:
    store = DevSTSStore()
    with serve(create_sts_app(store)) as url:
        sts = BotoSTS(session=boto3.session.Session(), endpoint_url=url)
        assume(sts, REQUEST)
        assume(sts, REQUEST)  # another event loop, after aclose()
    assert store.requests == 2


class IssuingHandler(http.server.BaseHTTPRequestHandler):
    """STS over TLS, as far as one AssumeRole goes: every POST gets the same session."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = (HALF_AN_ANSWER + "</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>"
                "</AssumeRoleResult></AssumeRoleResponse>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def test_aws_ca_bundle_is_the_trust_for_sts(aws_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cert, context = self_signed(tmp_path)
    with serve_http(IssuingHandler, tls=context) as url:
        monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
        with pytest.raises(StsError) as raised:
            assume(BotoSTS(session=boto3.session.Session(), endpoint_url=url), REQUEST)
        assert raised.value.retryable and raised.value.code == "ConnectError"  # an untrusted certificate
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
        [creds] = assume(BotoSTS(session=boto3.session.Session(), endpoint_url=url), REQUEST)
    assert (creds.access_key_id, creds.secret_access_key) == ("ASIAPLANTED", PLANTED_SECRET)
    assert creds.expiration == datetime(2099, 1, 1, tzinfo=UTC)


def test_a_profiles_ca_bundle_is_the_trust_for_sts_too(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cert, context = self_signed(tmp_path)
    config = tmp_path / "config"
    config.write_text(f"[default]\nca_bundle = {cert}\n")
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    with serve_http(IssuingHandler, tls=context) as url:
        [creds] = assume(BotoSTS(session=boto3.session.Session(), endpoint_url=url), REQUEST)
    assert creds.access_key_id == "ASIAPLANTED"


@pytest.mark.parametrize(("setting", "region", "endpoint", "signing_region"), [
    ("regional", "eu-west-1", "https://sts.eu-west-1.amazonaws.com", "eu-west-1"),
    ("legacy", "eu-west-1", "https://sts.amazonaws.com", "us-east-1"),  # the global endpoint signs for us-east-1
    ("legacy", "us-gov-west-1", "https://sts.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
])
def test_requests_are_signed_for_the_region_their_endpoint_expects(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, setting: str, region: str, *,
    endpoint: str, signing_region: str
) -> None:
    monkeypatch.setenv("AWS_STS_REGIONAL_ENDPOINTS", setting)
    with caplog.at_level(logging.WARNING, logger="ccweb.sessions"):
        sts = BotoSTS(session=boto3.session.Session(), region=region)
    assert (sts.endpoint_url, sts.region) == (endpoint, signing_region)
    assert not [r.getMessage() for r in caplog.records if r.name == "ccweb.sessions"], "read from botocore, not guessed"


def test_a_service_without_credentials_tells_the_caller_who_can_fix_it(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    for name in ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    cache = SessionCache(BotoSTS(session=boto3.session.Session(), endpoint_url="http://127.0.0.1:9"))

    async def run() -> UpstreamUnavailable:
        with pytest.raises(UpstreamUnavailable) as raised:
            await cache.get(("rule", "corp", "alice", ""), REQUEST)
        return raised.value

    error = asyncio.run(run())
    assert (error.status, error.reason, error.retry_after) == (503, "sts_no_credentials", 60)
    assert "no AWS credentials of its own" in error.detail and "trust policy" not in error.detail
    assert cache.sts_calls == 1  # not retried: nothing will change until the operators act


# --- what botocore offers no public way to ask -------------------------------------------------------------
# BotoSTS reads two private attributes. These tests fail, loudly, the day a botocore or boto3 release moves
# them; BotoSTS itself would then warn and assume (the last two tests).


@pytest.mark.parametrize(("setting", "region", "signing_region"), [
    ("legacy", "eu-west-1", "us-east-1"),  # the global endpoint, sts.amazonaws.com
    ("regional", "eu-west-1", "eu-west-1"),
])
def test_botocores_endpoint_rules_are_where_botosts_reads_the_signing_region(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, setting: str, region: str, signing_region: str
) -> None:
    monkeypatch.setenv("AWS_STS_REGIONAL_ENDPOINTS", setting)
    client = boto3.session.Session().client("sts", region_name=region)
    endpoint = client._ruleset_resolver.construct_endpoint(
        operation_model=client.meta.service_model.operation_model("AssumeRole"), call_args={}, request_context={})
    schemes = endpoint.properties.get("authSchemes") or [{}]  # none: sign for the client's own region
    assert schemes[0].get("signingRegion", client.meta.region_name) == signing_region


def test_boto3s_configuration_chain_is_where_botosts_reads_a_profiles_ca_bundle(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.write_text("[default]\nca_bundle = /etc/ccweb/profile-bundle.pem\n")
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert boto3.session.Session()._session.get_config_variable("ca_bundle") == "/etc/ccweb/profile-bundle.pem"


class MovedSession:
    """A boto3 session as a later boto3 and botocore might make it: the public methods BotoSTS calls, but no
    ``_session``, and clients without ``_ruleset_resolver``."""

    def __init__(self) -> None:
        self._boto3 = boto3.session.Session()
        self.region_name = self._boto3.region_name

    def client(self, *args: Any, **kwargs: Any) -> Any:
        client = self._boto3.client(*args, **kwargs)
        del client._ruleset_resolver
        return client

    def get_credentials(self) -> Any:
        return self._boto3.get_credentials()


@pytest.mark.parametrize(("setting", "region", "assumed", "host"), [
    ("legacy", "eu-west-1", "us-east-1", "sts.amazonaws.com"),
    ("regional", "eu-west-1", "eu-west-1", "sts.eu-west-1.amazonaws.com"),
])
def test_when_botocore_moves_them_botosts_warns_and_says_what_it_assumes(  # noqa: PLR0917 (one row of the table)
    aws_env: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, setting: str, region: str,
    assumed: str, host: str,
) -> None:
    monkeypatch.setenv("AWS_STS_REGIONAL_ENDPOINTS", setting)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with caplog.at_level(logging.WARNING, logger="ccweb.sessions"):
        sts = BotoSTS(session=MovedSession(), region=region)
    assert sts.region == assumed
    assert [r.getMessage() for r in caplog.records if r.name == "ccweb.sessions"] == [
        "could not read STS's signing region from botocore's endpoint rules (client._ruleset_resolver: "
        f"AttributeError); assuming {assumed} for the endpoint {host}",
        "could not read ca_bundle from the AWS configuration (session._session.get_config_variable is missing); "
        "a profile's ca_bundle is ignored, trusting the system's certificate authorities",
    ]
    assert "service-secret-example" not in caplog.text


def test_when_boto3_moves_its_configuration_aws_ca_bundle_is_still_the_trust(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    cert, context = self_signed(tmp_path)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    with serve_http(IssuingHandler, tls=context) as url, caplog.at_level(logging.WARNING, logger="ccweb.sessions"):
        [creds] = assume(BotoSTS(session=MovedSession(), endpoint_url=url), REQUEST)
    assert creds.access_key_id == "ASIAPLANTED"
    assert "a profile's ca_bundle is ignored, trusting AWS_CA_BUNDLE" in caplog.text
