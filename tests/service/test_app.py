"""The HTTP API over a real loopback server: statuses, error bodies, headers, audit lines, OpenAPI."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jsonschema
import pytest

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.errors import UpstreamUnavailable
from ccweb.sandbox.issuer import DevIssuer
from ccweb.signing import git_password
from ccweb.sts import StsError
from support import RecordingSTS, serve, serve_issuer

ACCOUNT = "111122223333"


def policy(issuer_url: str) -> dict[str, Any]:
    return {
        "issuers": [{"name": "corp", "issuer": issuer_url, "audiences": ["ccweb"]}],
        "rules": [
            {"name": "admins", "issuer": "corp", "claims": {"groups": "admins"},
             "role_arn": f"arn:aws:iam::{ACCOUNT}:role/admins", "repositories": ["*"], "access": "write"},
            {"name": "readers", "issuer": "corp", "claims": {"email": {"pattern": r".+@example\.com"}},
             "role_arn": f"arn:aws:iam::{ACCOUNT}:role/readers", "repositories": ["us-east-2/app-*", "docs"],
             "access": "read", "session_duration": 7200},
        ],
        "git_endpoints": [{"host": "git.internal.example.com:8443", "region": "eu-west-1"}],
        "aws": {"retry_budget_seconds": 1},  # the fake STS may throttle forever: give up quickly
    }


class Env:
    def __init__(self, url: str, issuer: DevIssuer, sts: RecordingSTS) -> None:
        self.url, self.issuer, self.sts = url, issuer, sts

    def token(self, **claims: Any) -> str:
        return self.issuer.mint({"sub": "u-1", "email": "dana@example.com", "groups": ["staff"], **claims})

    def post(self, body: Any, token: str | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        content = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        return httpx.post(f"{self.url}/v1/credentials", content=content, headers=headers)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with serve_issuer() as issuer:
        sts = RecordingSTS()
        with serve(create_app(parse_config(policy(issuer.issuer_url)), sts=sts)) as url:
            yield Env(url, issuer, sts)


US_EAST_2 = "git-codecommit.us-east-2.amazonaws.com"


def test_issues_a_password_signed_for_exactly_that_repository(env: Env) -> None:
    before = int(time.time())
    response = env.post({"protocol": "https", "host": US_EAST_2, "path": "/v1/repos/app-web"}, env.token())
    assert response.status_code == 200, response.text
    body = response.json()
    creds = env.sts.issued[-1]
    assert body["username"] == f"{creds.access_key_id}%{creds.session_token}"
    signed_at = datetime.strptime(body["password"][:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    assert body["password"] == git_password(
        creds.secret_access_key, hostname=US_EAST_2, path="/v1/repos/app-web", region="us-east-2", now=signed_at
    )
    assert body["region"] == "us-east-2"
    assert body["repository"] == "app-web"
    assert body["rule"] == "readers"
    assert body["role_arn"] == f"arn:aws:iam::{ACCOUNT}:role/readers"
    assert before + 900 <= body["password_expiry_utc"] <= int(time.time()) + 900
    assert body["expires_at"] == datetime.fromtimestamp(body["password_expiry_utc"], UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    request = env.sts.requests[-1]
    assert request.source_identity == "dana@example.com"
    assert request.duration_seconds == 7200
    assert json.loads(request.policy)["Statement"][0]["Action"] == ["codecommit:GitPull"]


def test_expiry_never_outlives_the_sts_session(env: Env) -> None:
    env.sts.lifetime = timedelta(minutes=5)  # shorter than the 15-minute refresh margin: never cached
    try:
        response = env.post({"protocol": "https", "host": US_EAST_2, "path": "v1/repos/app-x"},
                            env.token(sub="short-lived", email="short@example.com"))
    finally:
        env.sts.lifetime = timedelta(hours=1)
    assert response.status_code == 200
    session_end = int(env.sts.issued[-1].expiration.timestamp())  # type: ignore[union-attr]
    assert response.json()["password_expiry_utc"] == session_end


def test_session_is_reused_across_repositories_of_a_rule(env: Env) -> None:
    token = env.token(sub="reuse", email="reuse@example.com")
    calls = len(env.sts.requests)
    for name in ("app-a", "app-b", "app-c"):
        assert env.post({"protocol": "https", "host": US_EAST_2, "path": f"v1/repos/{name}"}, token).status_code == 200
    assert len(env.sts.requests) == calls + 1


def test_configured_git_endpoint_signs_host_without_port(env: Env) -> None:
    response = env.post({"protocol": "https", "host": "git.internal.example.com:8443", "path": "v1/repos/x"},
                        env.token(groups=["admins"]))
    assert response.status_code == 200
    body = response.json()
    assert body["region"] == "eu-west-1"
    creds = next(c for c in env.sts.issued if body["username"] == f"{c.access_key_id}%{c.session_token}")
    signed_at = datetime.strptime(body["password"][:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)

    def signed_for(hostname: str) -> str:
        return git_password(creds.secret_access_key, hostname=hostname, path="/v1/repos/x", region="eu-west-1",
                            now=signed_at)

    assert body["password"] == signed_for("git.internal.example.com"), "the host git sends, without its port"
    assert body["password"] != signed_for("git.internal.example.com:8443")


@pytest.mark.parametrize(
    ("name", "body", "status", "error"),
    [
        ("lookalike-host", {"protocol": "https", "host": "git-codecommit.us-east-2.amazonaws.com.evil.example",
                            "path": "v1/repos/x"}, 400, "invalid_request"),
        ("http-to-aws", {"protocol": "http", "host": US_EAST_2, "path": "v1/repos/x"}, 400, "invalid_request"),
        ("missing-path", {"protocol": "https", "host": US_EAST_2}, 400, "invalid_request"),
        ("not-a-repo-path", {"protocol": "https", "host": US_EAST_2, "path": "v1/other/x"}, 400, "invalid_request"),
        ("bad-name", {"protocol": "https", "host": US_EAST_2, "path": "v1/repos/a b"}, 400, "invalid_request"),
        ("host-not-a-string", {"protocol": "https", "host": 7, "path": "v1/repos/x"}, 400, "invalid_request"),
        ("body-is-a-list", [1, 2], 400, "invalid_request"),
        ("body-not-json", b"{not json", 400, "invalid_request"),
        ("empty-body", b"", 400, "invalid_request"),
        ("denied-repository", {"protocol": "https", "host": US_EAST_2, "path": "v1/repos/secret"}, 403,
         "access_denied"),
        ("region-limited-glob", {"protocol": "https", "host": "git-codecommit.eu-west-1.amazonaws.com",
                                 "path": "v1/repos/app-web"}, 403, "access_denied"),
    ],
    ids=lambda v: v if isinstance(v, str) and v[:1] != "{" and not v.startswith(("invalid_", "access_")) else "",
)
def test_bad_requests_get_clear_errors_and_no_credential(
    env: Env, name: str, body: Any, status: int, error: str
) -> None:
    issued = len(env.sts.issued)
    response = env.post(body, env.token())
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"] == error
    assert payload["detail"].endswith((".", "true")) and len(payload["detail"]) > 20
    assert "password" not in payload and "username" not in payload
    if status != 200:
        assert len(env.sts.issued) == issued


def test_denial_tells_the_caller_who_they_are_and_what_was_refused(env: Env) -> None:
    response = env.post({"protocol": "https", "host": US_EAST_2, "path": "v1/repos/secret"},
                        env.token(sub="s-9", email="erin@example.com"))
    detail = response.json()["detail"]
    assert "erin@example.com" in detail and "'secret'" in detail and "us-east-2" in detail
    assert "admins" not in detail and "readers" not in detail  # other rules stay private


@pytest.mark.parametrize(
    ("name", "headers"),
    [
        ("no-authorization", {}),
        ("basic-scheme", {"Authorization": "Basic dXNlcjpwYXNz"}),
        ("garbage-bearer", {"Authorization": "Bearer not.a.jwt"}),
        ("bearer-without-token", {"Authorization": "Bearer"}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_token_problems_are_401_with_www_authenticate(env: Env, name: str, headers: dict[str, str]) -> None:
    response = httpx.post(f"{env.url}/v1/credentials", headers=headers,
                          json={"protocol": "https", "host": US_EAST_2, "path": "v1/repos/x"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["error"] == "invalid_token"


def test_token_is_checked_before_the_body(env: Env) -> None:
    response = env.post(b"{garbage")
    assert response.status_code == 401


def test_expired_token_says_so(env: Env) -> None:
    token = env.issuer.mint({"sub": "u"}, ttl=60, now=time.time() - 7200)
    response = env.post({"protocol": "https", "host": US_EAST_2, "path": "v1/repos/x"}, token)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_sts_failure_is_503_with_retry_after(env: Env) -> None:
    env.sts.fail = StsError("Throttling", "Rate exceeded", retryable=True)
    attempts = len(env.sts.requests)
    try:
        response = env.post({"protocol": "https", "host": US_EAST_2, "path": "v1/repos/x"},
                            env.token(sub="throttled", email="throttled@example.com", groups=["admins"]))
    finally:
        env.sts.fail = None
    assert response.status_code == 503
    assert response.json()["error"] == UpstreamUnavailable.error
    assert int(response.headers["Retry-After"]) > 0
    assert len(env.sts.requests) - attempts > 1  # retried, within aws.retry_budget_seconds (1 s here)


def test_whoami_lists_the_rules_the_identity_matches(env: Env) -> None:
    response = httpx.get(f"{env.url}/v1/whoami", headers={"Authorization": f"Bearer {env.token()}"})
    assert response.status_code == 200
    body = response.json()
    assert body["subject"] == "u-1" and body["identity"] == "dana@example.com" and body["issuer"] == "corp"
    assert [r["rule"] for r in body["rules"]] == ["readers"]


def test_discovery_health_and_metrics(env: Env) -> None:
    discovery = httpx.get(f"{env.url}/.well-known/ccweb").json()
    assert discovery["audience"] == "ccweb"
    assert discovery["git_endpoints"] == [{"host": "git.internal.example.com:8443", "region": "eu-west-1"}]
    assert discovery["login"] == []
    assert discovery["helper"] == "/helper/ccweb-helper"
    assert httpx.get(f"{env.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{env.url}/readyz").status_code == 200
    metrics = httpx.get(f"{env.url}/metrics").text
    assert 'ccweb_decisions_total{outcome="issued",rule="readers"}' in metrics


def test_unknown_route_is_json_404(env: Env) -> None:
    response = httpx.get(f"{env.url}/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_openapi_documents_what_the_service_does(env: Env) -> None:
    schema = httpx.get(f"{env.url}/openapi.json").json()
    operation = schema["paths"]["/v1/credentials"]["post"]
    assert set(operation["responses"]) == {"200", "400", "401", "403", "408", "413", "415", "429", "431", "503"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert {"/v1/whoami", "/.well-known/ccweb", "/healthz", "/readyz", "/metrics"} <= set(schema["paths"])


def test_a_credential_is_what_the_openapi_document_says(env: Env) -> None:
    """The flow's ``Credential`` and the document's ``CredentialResponse`` are written twice (a typed dict for the
    request's path, a model for the schema): a client generated from the document reads every field, no more."""
    document = httpx.get(f"{env.url}/openapi.json").json()
    schema = document["components"]["schemas"]["CredentialResponse"]
    body = env.post({"protocol": "https", "host": US_EAST_2, "path": "v1/repos/docs"}, env.token()).json()
    jsonschema.validate(body, schema)
    assert set(body) == set(schema["properties"]) == set(schema["required"])


def test_audit_line_per_decision_without_secrets(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ccweb.audit")
    token = env.token(sub="audited", email="audit+ops@example.com")
    ok = env.post({"protocol": "https", "host": US_EAST_2, "path": "v1/repos/docs"}, token).json()
    env.post({"protocol": "https", "host": US_EAST_2, "path": "v1/repos/secret"}, token)
    records = [r for r in caplog.records if r.name == "ccweb.audit"]
    fields = [r.fields for r in records[-2:]]  # type: ignore[attr-defined]
    assert [f["outcome"] for f in fields] == ["issued", "denied"]
    issued = fields[0]
    assert issued["identity"] == "audit+ops@example.com" and issued["repository"] == "docs"
    assert issued["source_identity"] == env.sts.requests[-1].source_identity == "audit+ops@example.com"
    assert issued["role_arn"].endswith(":role/readers") and issued["issuer"] == "corp"
    assert issued["rule"] == "readers" and issued["region"] == "us-east-2" and issued["subject"] == "audited"
    assert len(issued["token_sha256"]) == 64
    text = json.dumps(fields) + caplog.text
    creds = env.sts.issued[-1]
    for secret in (token, ok["password"], ok["username"], creds.secret_access_key, creds.session_token):
        assert secret and secret not in text
