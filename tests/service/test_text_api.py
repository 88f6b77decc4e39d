"""``POST /v1/git-credential`` over real HTTP on loopback: git's credential format in and out, the JSON route's
credential, refusals, statuses and headers, one rate limit, audit line and metrics for both, and no token in
any log line. (``GET /.well-known/ccweb.txt``: tests/service/test_text_api_discovery.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.sandbox.dev import Sandbox
from ccweb.sandbox.issuer import DevIssuer
from ccweb.signing import PASSWORD_LIFETIME_SECONDS, AwsCredentials
from ccweb.sts import AssumeRoleRequest, STSClient
from ccweb.textapi import MAX_TEXT_BODY_BYTES, parse_git_credential
from support import PLANTED_SECRET, PLANTED_SESSION_TOKEN, RecordingSTS, serve, serve_issuer

VECTORS: dict[str, Any] = json.loads((Path(__file__).parents[1] / "data" / "codecommit-sigv4.json").read_text())
SIGNED_AT = dt.datetime.strptime(VECTORS["timestamp"], "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC).timestamp()
TEXT = "text/plain; charset=utf-8"
HOST = "git-codecommit.us-east-1.amazonaws.com"


def git_lines(**fields: str) -> str:
    return "".join(f"{key}={value}\n" for key, value in fields.items())


def ask_text(url: str, token: str | None, body: str | bytes, **headers: str) -> httpx.Response:
    auth = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"{url}/v1/git-credential", content=body.encode() if isinstance(body, str) else body,
                      headers={**auth, **headers}, timeout=30)


def ask_json(url: str, token: str | None, body: dict[str, str]) -> httpx.Response:
    auth = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"{url}/v1/credentials", json=body, headers=auth, timeout=30)


def answer_lines(response: httpx.Response) -> dict[str, str]:
    """The ``key=value`` lines of a text answer, checked to be printable lines each."""
    assert response.headers["content-type"] == TEXT
    assert b"Traceback" not in response.content
    lines = response.text.split("\n")
    assert lines[-1] == "", "every line ends with a newline"
    assert all(line.isprintable() and "=" in line for line in lines[:-1]), response.text
    return {key: value for key, _, value in (line.partition("=") for line in lines[:-1])}


class VectorSTS:
    """STS answering with the AWS CLI vectors' credentials, valid an hour from the vectors' second."""

    async def assume_role(self, request: AssumeRoleRequest) -> AwsCredentials:
        creds = VECTORS["credentials"]
        return AwsCredentials(creds["access_key_id"], creds["secret_access_key"], creds["session_token"],
                              dt.datetime.fromtimestamp(SIGNED_AT + 3600, dt.UTC))


_TYPED: STSClient = VectorSTS()


def policy(issuer_url: str, **extra: Any) -> dict[str, Any]:
    return {"issuers": [{"name": "corp", "issuer": issuer_url, "audiences": ["ccweb"]}],
            "rules": [{"name": "all", "issuer": "corp", "claims": {"groups": "dev"},
                       "role_arn": "arn:aws:iam::111122223333:role/all", "repositories": ["*"]}], **extra}


@contextlib.contextmanager
def service(sts: STSClient, clock: Any = None, **extra: Any) -> Iterator[tuple[str, DevIssuer]]:
    """A service of the ``policy`` above with ``sts`` (and ``clock``), on loopback; its URL and its issuer."""
    with serve_issuer() as issuer:
        app = create_app(parse_config(policy(issuer.issuer_url, **extra)), sts=sts,
                         **({"clock": clock} if clock else {}))
        with serve(app) as url:
            yield url, issuer


@pytest.fixture(scope="module")
def vectors() -> Iterator[tuple[str, str]]:
    """A service at the vectors' second, its STS the vectors' keys; its URL and a token it grants."""
    with service(VectorSTS(), clock=lambda: SIGNED_AT) as (url, issuer):
        yield url, issuer.mint({"sub": "u-1", "groups": ["dev"]}, now=SIGNED_AT)


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[f"{c['host']}/{c['path']}" for c in VECTORS["cases"]])
def test_the_text_credential_is_the_aws_cli_s_and_the_json_route_s(vectors: tuple[str, str],
                                                                    case: dict[str, str]) -> None:
    url, token = vectors
    text = ask_text(url, token, git_lines(protocol="https", host=case["host"], path=case["path"]))
    assert text.status_code == 200, text.text
    expiry = int(SIGNED_AT) + PASSWORD_LIFETIME_SECONDS
    assert text.text == git_lines(username=VECTORS["username"], password=case["password"],
                                  password_expiry_utc=str(expiry))
    assert text.headers["content-type"] == TEXT
    as_json = ask_json(url, token, {"protocol": "https", "host": case["host"], "path": case["path"]}).json()
    assert (as_json["username"], as_json["password"], as_json["password_expiry_utc"]) == (
        VECTORS["username"], case["password"], expiry)


def test_git_s_own_input_with_crlf_and_keys_it_ignores(vectors: tuple[str, str]) -> None:
    url, token = vectors
    case = VECTORS["cases"][0]
    body = (f"capability[]=authtype\r\nprotocol=https\r\nhost={case['host']}\r\nusername=someone\r\n"
            f"path={case['path']}\r\nwwwauth[]=Basic realm=\"x\"\r\n\r\nhost=evil.example\n")
    text = ask_text(url, token, body, **{"Content-Type": "application/x-www-form-urlencoded"})
    assert text.status_code == 200, text.text
    assert answer_lines(text)["password"] == case["password"], "what follows the blank line is not read"


def test_a_sandbox_credential_opens_the_repository(company: Sandbox) -> None:
    """The password the text route gives is one the sandbox's git server accepts, checking it as CodeCommit does."""
    token = company.issuer.mint_user("bob")
    fields = {"protocol": "http", "host": company.git_host, "path": "v1/repos/demo"}
    text = ask_text(company.api_url, token, git_lines(**fields))
    assert text.status_code == 200, text.text
    credential = answer_lines(text)
    assert list(credential) == ["username", "password", "password_expiry_utc"]
    refs = f"{company.repo_url('demo')}/info/refs?service=git-upload-pack"
    opened = httpx.get(refs, auth=(credential["username"], credential["password"]), timeout=30)
    assert opened.status_code == 200, opened.text
    assert b"refs/heads/" in opened.content
    tampered = credential["password"][:-1] + ("0" if credential["password"][-1] != "0" else "1")
    assert httpx.get(refs, auth=(credential["username"], tampered), timeout=30).status_code == 403
    as_json = ask_json(company.api_url, token, fields).json()
    assert as_json["username"] == credential["username"], "the same STS session"
    assert abs(as_json["password_expiry_utc"] - int(credential["password_expiry_utc"])) <= 2


SAME_AS_JSON = {
    "denied": ("mallory", {"protocol": "https", "host": HOST, "path": "v1/repos/demo"}, 403, "access_denied"),
    "no-token": (None, {"protocol": "https", "host": HOST, "path": "v1/repos/demo"}, 401, "invalid_token"),
    "garbage-token": ("garbage", {"protocol": "https", "host": HOST, "path": "v1/repos/demo"}, 401, "invalid_token"),
    "lookalike-host": ("alice", {"protocol": "https", "host": HOST + ".evil.example", "path": "v1/repos/demo"}, 400,
                       "invalid_request"),
    "hostile-host": ("alice", {"protocol": "https", "host": "x\x1b]0;owned\x07\u202e.example", "path": "v1/repos/d"},
                     400, "invalid_request"),
    "no-path": ("alice", {"protocol": "https", "host": HOST}, 400, "invalid_request"),
    "bad-path": ("alice", {"protocol": "https", "host": HOST, "path": "v1/repos/a b"}, 400, "invalid_request"),
    "plain-http": ("alice", {"protocol": "http", "host": HOST, "path": "v1/repos/demo"}, 400, "invalid_request"),
    "ssh": ("alice", {"protocol": "ssh", "host": HOST, "path": "v1/repos/demo"}, 400, "invalid_request"),
}


@pytest.mark.parametrize(("user", "fields", "status", "error"), SAME_AS_JSON.values(), ids=SAME_AS_JSON.keys())
def test_a_refusal_is_the_json_route_s_in_lines(company: Sandbox, user: str | None, fields: dict[str, str],
                                                 status: int, error: str) -> None:
    tokens = {None: None, "garbage": "not.a.jwt"}
    token = tokens[user] if user in tokens else company.issuer.mint_user(str(user))
    text, as_json = ask_text(company.api_url, token, git_lines(**fields)), ask_json(company.api_url, token, fields)
    assert (text.status_code, as_json.status_code) == (status, status)
    lines = answer_lines(text)
    assert lines == {"error": error, "detail": as_json.json()["detail"]}, "the same sentence, on one line"
    for header in ("www-authenticate", "retry-after"):
        assert text.headers.get(header) == as_json.headers.get(header)
    if status == 401:
        assert text.headers["www-authenticate"] == 'Bearer error="invalid_token"'


NOT_GIT_FORMAT = "The request body must be git's credential format, key=value lines with protocol, host and path ({})."
BAD_BODIES = {
    "no-host": (git_lines(protocol="https", path="v1/repos/demo"), "host: Field required"),
    "empty-host": (git_lines(protocol="https", host="", path="v1/repos/demo"),
                   "host: String should have at least 1 character"),
    "empty-body": ("", "protocol: Field required; host: Field required"),
    "a-line-without-equals": (f"protocol=https\nhost {HOST}\n", "line 2 has no '='"),
    "json": (json.dumps({"protocol": "https", "host": HOST}), "line 1 has no '='"),
    "not-utf-8": (b"protocol=https\nhost=\xff\n", "it is not UTF-8 text"),
}


@pytest.mark.parametrize(("body", "problem"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_body_that_is_not_git_s_format_is_a_400_saying_so(company: Sandbox, body: str | bytes,
                                                            problem: str) -> None:
    text = ask_text(company.api_url, company.issuer.mint_user("alice"), body)
    assert text.status_code == 400
    assert answer_lines(text) == {"error": "invalid_request", "detail": NOT_GIT_FORMAT.format(problem)}


def test_the_body_may_be_as_large_as_its_limit_and_no_larger(company: Sandbox) -> None:
    token = company.issuer.mint_user("alice")
    lines = git_lines(protocol="http", host=company.git_host, path="v1/repos/demo")
    padded = lines + "wwwauth[]=" + "x" * (MAX_TEXT_BODY_BYTES - len(lines) - len("wwwauth[]=\n")) + "\n"
    assert len(padded) == MAX_TEXT_BODY_BYTES
    assert ask_text(company.api_url, token, padded).status_code == 200
    refused = ask_text(company.api_url, token, padded + "x")
    assert (refused.status_code, refused.headers["connection"]) == (413, "close")
    assert answer_lines(refused) == {"error": "request_too_large", "detail": (
        f"The request body is larger than {MAX_TEXT_BODY_BYTES} bytes; send only protocol, host and path.")}
    streamed = httpx.post(f"{company.api_url}/v1/git-credential", headers={"Authorization": f"Bearer {token}"},
                          content=iter([padded.encode(), b"more"]), timeout=30)  # chunked
    assert streamed.status_code == 413
    assert answer_lines(streamed)["error"] == "request_too_large"


def test_an_oversized_token_is_refused_in_text_before_routing(company: Sandbox) -> None:
    text = ask_text(company.api_url, "a" * 20_000, git_lines(protocol="https", host=HOST, path="v1/repos/demo"))
    assert text.status_code == 401
    assert text.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert answer_lines(text)["error"] == "invalid_token"
    assert "a" * 64 not in text.text


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limited() -> Iterator[tuple[str, DevIssuer, RecordingSTS]]:
    """A service allowing each identity a burst of 3, its rate limiter on a clock that never moves."""
    sts = RecordingSTS()
    with serve_issuer() as issuer:
        config = parse_config(policy(issuer.issuer_url, rate_limit={"requests_per_minute": 60, "burst": 3}))
        with serve(create_app(config, sts=sts, monotonic=Clock())) as url:
            yield url, issuer, sts


def test_one_rate_limit_audit_trail_and_count_for_both_routes(limited: tuple[str, DevIssuer, RecordingSTS],
                                                              caplog: pytest.LogCaptureFixture) -> None:
    url, issuer, _ = limited
    token = issuer.mint({"sub": "u-loop", "email": "loop@example.com", "groups": ["dev"]})
    fields = {"protocol": "https", "host": HOST, "path": "v1/repos/app"}
    with caplog.at_level(logging.INFO, logger="ccweb.audit"):
        statuses = [ask_json(url, token, fields).status_code, ask_text(url, token, git_lines(**fields)).status_code,
                    ask_json(url, token, fields).status_code]
        refused_text, refused_json = ask_text(url, token, git_lines(**fields)), ask_json(url, token, fields)
    assert statuses == [200, 200, 200]
    assert (refused_text.status_code, refused_json.status_code) == (429, 429)
    assert refused_text.headers["retry-after"] == refused_json.headers["retry-after"] == "1"
    assert answer_lines(refused_text) == {"error": "rate_limited", "detail": refused_json.json()["detail"]}
    audit = [r.fields for r in caplog.records if r.name == "ccweb.audit"]  # type: ignore[attr-defined]
    assert [line["outcome"] for line in audit] == ["issued", "issued", "issued", "rate_limited", "rate_limited"]
    assert audit[1]["subject"] == "u-loop" and audit[1]["repository"] == "app" and "token_sha256" in audit[1]
    metrics = httpx.get(f"{url}/metrics").text
    assert 'ccweb_decisions_total{outcome="issued",rule="all"} 3.0' in metrics
    assert 'ccweb_decisions_total{outcome="rate_limited",rule=""} 2.0' in metrics
    assert 'ccweb_requests_total{route="/v1/git-credential",status="200"} 1.0' in metrics
    assert 'ccweb_requests_total{route="/v1/git-credential",status="429"} 1.0' in metrics


def test_no_token_nor_secret_reaches_a_log_line(limited: tuple[str, DevIssuer, RecordingSTS],
                                                caplog: pytest.LogCaptureFixture) -> None:
    url, issuer, sts = limited
    granted = issuer.mint({"sub": "u-leak", "groups": ["dev"]})
    denied = issuer.mint({"sub": "u-none"})
    expired = issuer.mint({"sub": "u-old", "groups": ["dev"]}, now=1_000_000_000)
    fields = {"protocol": "https", "host": HOST, "path": "v1/repos/app"}
    with caplog.at_level(logging.DEBUG):
        answers = [ask_text(url, granted, git_lines(**fields)), ask_text(url, denied, git_lines(**fields)),
                   ask_text(url, expired, git_lines(**fields)), ask_text(url, granted, "protocol=https\n"),
                   ask_text(url, granted, git_lines(**{**fields, "host": "evil.example"}))]
    assert [a.status_code for a in answers] == [200, 403, 401, 400, 400]
    secrets = [granted, denied, expired, *(t.rsplit(".", 1)[1] for t in (granted, denied, expired)),
               answer_lines(answers[0])["password"], PLANTED_SECRET, PLANTED_SESSION_TOKEN]
    service_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert [r for r in service_records if r.name == "ccweb.audit"], "the audit lines were captured"
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in service_records)
    assert [secret for secret in secrets if secret in logged] == []
    assert sts.issued, "a session was issued, and its secrets planted"


class NewlineSTS:
    """An STS whose session token would break git's format: a second line in the username."""

    async def assume_role(self, request: AssumeRoleRequest) -> AwsCredentials:
        return AwsCredentials("ASIAEXAMPLE", PLANTED_SECRET, PLANTED_SESSION_TOKEN + "\nusername=other",
                              dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))


_NEWLINE: STSClient = NewlineSTS()


def test_a_credential_git_cannot_read_is_a_500_and_never_half_sent(caplog: pytest.LogCaptureFixture) -> None:
    with service(NewlineSTS()) as (url, issuer), caplog.at_level(logging.ERROR, logger="ccweb.app"):
        text = ask_text(url, issuer.mint({"sub": "u-1", "groups": ["dev"]}),
                        git_lines(protocol="https", host=HOST, path="v1/repos/app"))
    assert text.status_code == 500
    assert answer_lines(text) == {"error": "internal_error",
                                  "detail": "ccweb failed unexpectedly; the operators can find why in its log."}
    assert "ASIAEXAMPLE" not in text.text and PLANTED_SESSION_TOKEN not in text.text
    [record] = [r for r in caplog.records if r.name == "ccweb.app"]
    assert record.getMessage() == "unexpected error: ValueError"
    assert PLANTED_SESSION_TOKEN not in str(record.exc_info)


def test_a_credential_that_cannot_be_written_is_audited_as_an_error_not_as_issued(
        caplog: pytest.LogCaptureFixture) -> None:
    """The audit line says what the client got: ``issued`` only once the answer's body is made."""
    fields = {"protocol": "https", "host": HOST, "path": "v1/repos/app"}
    with service(NewlineSTS()) as (url, issuer), caplog.at_level(logging.INFO, logger="ccweb.audit"):
        token = issuer.mint({"sub": "u-1", "groups": ["dev"]})
        text = ask_text(url, token, git_lines(**fields))
        as_json = ask_json(url, token, fields)  # JSON escapes the line break: this one is issued
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
    assert (text.status_code, as_json.status_code) == (500, 200)
    audit = [r.fields for r in caplog.records if r.name == "ccweb.audit"]  # type: ignore[attr-defined]
    assert [(line["outcome"], line.get("reason")) for line in audit] == [("error", "unrenderable"), ("issued", None)]
    assert {k: audit[0].get(k) for k in ("rule", "role_arn", "subject", "repository")} == {
        "rule": "all", "role_arn": "arn:aws:iam::111122223333:role/all", "subject": "u-1", "repository": "app"}
    assert 'ccweb_decisions_total{outcome="error",rule="all"} 1.0' in metrics
    assert 'ccweb_decisions_total{outcome="issued",rule="all"} 1.0' in metrics


def test_below_a_root_path_any_media_type_reaches_the_route() -> None:
    async def scenario(issuer: DevIssuer) -> list[httpx.Response]:
        async with httpx.AsyncClient() as http:
            app = create_app(parse_config(policy(issuer.issuer_url)), sts=RecordingSTS(), http=http)
            transport = httpx.ASGITransport(app=app, root_path="/api")
            headers = {"Authorization": f"Bearer {issuer.mint({'sub': 'u-1', 'groups': ['dev']})}",
                       "Content-Type": "application/octet-stream"}
            body = git_lines(protocol="https", host=HOST, path="v1/repos/app") + "x=" + "y" * 10_000 + "\n"
            async with httpx.AsyncClient(transport=transport, base_url="http://ccweb") as client:
                return [await client.post("/api/v1/git-credential", content=body, headers=headers),
                        await client.post("/api/v1/credentials", content=body, headers=headers)]

    with serve_issuer() as issuer:
        text, as_json = asyncio.run(scenario(issuer))
    assert text.status_code == 200, text.text
    assert list(answer_lines(text)) == ["username", "password", "password_expiry_utc"]
    assert as_json.status_code == 413, "the JSON route keeps its own limit"


@pytest.mark.parametrize(("raw", "expected"), [
    (b"protocol=https\nhost=h\npath=p\n", ("https", "h", "p")),
    (b"protocol=https\nhost=h\n", ("https", "h", None)),
    (b"protocol=https\nhost=a\nhost=b\npath=p=q\n", ("https", "b", "p=q")),
    (b"protocol=https\r\nhost=h\r\n\r\npath=p\n", ("https", "h", None)),
    (b"host=h\nprotocol=http\nurl=https://x/y\n", ("http", "h", None)),
], ids=["three", "no-path", "last-wins-and-value-with-equals", "crlf-and-blank-line", "url-ignored"])
def test_parse_git_credential(raw: bytes, expected: tuple[str, str, str | None]) -> None:
    request = parse_git_credential(raw)
    assert (request.protocol, request.host, request.path) == expected


def test_the_openapi_document_describes_the_text_routes(company: Sandbox) -> None:
    paths = httpx.get(f"{company.api_url}/openapi.json", timeout=30).json()["paths"]
    assert list(paths)[:2] == ["/v1/credentials", "/v1/git-credential"]
    operation = paths["/v1/git-credential"]["post"]
    assert list(operation["requestBody"]["content"]) == ["text/plain"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert set(operation["responses"]) == {"200", "400", "401", "403", "408", "413", "429", "431", "503"}
    assert all(list(answer["content"]) == ["text/plain"] for answer in operation["responses"].values())
    assert list(paths["/.well-known/ccweb.txt"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert {"200", "304"} <= set(paths["/helper/ccweb-helper.sh"]["get"]["responses"])
