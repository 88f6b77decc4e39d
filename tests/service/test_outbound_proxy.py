"""The service's own requests through a real proxy (proxy.py, tests/proxies.py): an identity provider and STS
at https names only the proxy resolves (``idp.proxied.test``, ``sts.proxied.test``), reached as the standard
variables say, as an operator sees it: a credential issued, ``/readyz``, STS's answer, a log line naming the
proxy at fault. NO_PROXY as curl reads it, loopback never proxied, and ``ccweb serve`` refusing a proxy it
cannot use in one sentence."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import httpx
import pytest

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.outbound import ProxySettingError, check_proxy_environment
from ccweb.sandbox.dev import sandbox_policy
from ccweb.sandbox.issuer import DevIssuer
from ccweb.sts import AssumeRoleRequest, BotoSTS, StsError
from proxies import (
    PROXIED_NAMES,
    RunningProxy,
    closed_port,
    garbage_proxy,
    real_proxy,
    refusing_proxy,
    tls_front,
)
from support import RecordingSTS, isolate_aws, self_signed, serve, serve_issuer, serve_moto, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
CODECOMMIT = "git-codecommit.us-east-1.amazonaws.com"
GIT_HOST = "127.0.0.1:9"
PLANTED = "PLANTED-PROXY-PASSWORD"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy",
                   "NO_PROXY", "no_proxy")
REQUEST = AssumeRoleRequest("arn:aws:iam::111122223333:role/ccweb-developers", "ann@example.com", "ann@example.com",
                            '{"Version": "2012-10-17", "Statement": []}', 3600)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A certificate for the proxied names (and 127.0.0.1), its own authority."""
    return self_signed(tmp_path_factory.mktemp("tls"), *PROXIED_NAMES)


@pytest.fixture(scope="module")
def idp(certificate: tuple[Path, ssl.SSLContext]) -> Iterator[DevIssuer]:
    """The sandbox's development issuer as ``https://idp.proxied.test:<port>``: TLS in front of it on loopback."""
    issuer = DevIssuer("https://idp.proxied.test")
    with serve(issuer.app()) as url, tls_front(port_of(url), certificate[1]) as port:
        issuer.issuer_url = issuer.login.issuer_url = f"https://idp.proxied.test:{port}"
        yield issuer


@pytest.fixture(scope="module")
def proxy() -> Iterator[RunningProxy]:
    with real_proxy() as running:
        yield running


@pytest.fixture(scope="module")
def guarded() -> Iterator[RunningProxy]:
    """A proxy that wants a user and password (a space, an @ and a colon in it: percent-encoded in the URL)."""
    with real_proxy(user="svc", password="p@ss w:rd") as running:
        yield running


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, ssl.SSLContext]) -> pytest.MonkeyPatch:
    """No proxy variable but those a test sets; the test certificate trusted (SSL_CERT_FILE, as an operator would
    for a company CA)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    return monkeypatch


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def ask(issuer: DevIssuer) -> httpx.Response:
    """A credential for alice from a service (its default outbound client, from this process's environment)
    whose only issuer is ``issuer``."""
    app = create_app(parse_config(sandbox_policy(issuer.issuer_url, GIT_HOST)), sts=RecordingSTS())
    with serve(app) as url:
        return httpx.post(f"{url}/v1/credentials", headers={"Authorization": f"Bearer {issuer.mint_user('alice')}"},
                          json={"protocol": "https", "host": CODECOMMIT, "path": "v1/repos/demo"}, timeout=30,
                          trust_env=False)  # the test's own request: no proxy


def idp_origin(issuer: DevIssuer) -> str:
    return issuer.issuer_url.removeprefix("https://")


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
def test_the_identity_providers_keys_come_through_the_proxy(
    env: pytest.MonkeyPatch, idp: DevIssuer, proxy: RunningProxy, variable: str
) -> None:
    proxy.forget()
    env.setenv(variable, proxy.url)
    answer = ask(idp)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rule"] == "developers"
    assert proxy.tunnels() == {idp_origin(idp)}


def test_without_the_proxy_the_identity_provider_is_out_of_reach(env: pytest.MonkeyPatch, idp: DevIssuer) -> None:
    answer = ask(idp)  # idp.proxied.test resolves nowhere but in the proxy
    assert answer.status_code == 503
    assert answer.json()["error"] == "upstream_unavailable"


@pytest.mark.parametrize("no_proxy", ["idp.proxied.test", ".proxied.test", "proxied.test", "test", "*",
                                      "example.com, IDP.PROXIED.TEST"])
def test_no_proxy_sends_the_request_directly(
    env: pytest.MonkeyPatch, idp: DevIssuer, proxy: RunningProxy, no_proxy: str
) -> None:
    proxy.forget()
    env.setenv("HTTPS_PROXY", proxy.url)
    env.setenv("NO_PROXY", no_proxy)
    assert ask(idp).status_code == 503  # directly: the name resolves nowhere
    assert proxy.seen() == []


@pytest.mark.parametrize("no_proxy", ["example.com", "other.proxied.test", "xidp.proxied.test", "10.0.0.0/8"])
def test_no_proxy_for_other_names_leaves_the_request_to_the_proxy(
    env: pytest.MonkeyPatch, idp: DevIssuer, proxy: RunningProxy, no_proxy: str
) -> None:
    proxy.forget()
    env.setenv("HTTPS_PROXY", proxy.url)
    env.setenv("no_proxy", no_proxy)
    assert ask(idp).status_code == 200
    assert proxy.tunnels() == {idp_origin(idp)}


def test_proxy_authentication_comes_from_the_proxy_url(
    env: pytest.MonkeyPatch, idp: DevIssuer, guarded: RunningProxy
) -> None:
    guarded.forget()
    env.setenv("HTTPS_PROXY", guarded.auth_url)
    assert ask(idp).status_code == 200
    assert guarded.tunnels() == {idp_origin(idp)}


def test_a_proxy_that_refuses_is_named_in_the_log_without_its_password(
    env: pytest.MonkeyPatch, idp: DevIssuer, guarded: RunningProxy, caplog: pytest.LogCaptureFixture
) -> None:
    env.setenv("HTTPS_PROXY", guarded.url_with("svc", PLANTED))
    with caplog.at_level(logging.WARNING):
        answer = ask(idp)
    assert answer.status_code == 503
    lines = [r.getMessage() for r in caplog.records if r.name == "ccweb.outbound"]
    assert lines, "the failure through the proxy is logged"
    assert all(f"through the proxy {guarded.url} (HTTPS_PROXY) failed" in line and "407" in line for line in lines)
    everything = "\n".join(r.getMessage() for r in caplog.records) + answer.text
    assert PLANTED not in everything and "svc:" not in everything


@pytest.mark.parametrize("kind", ["403", "407", "garbage", "closed"])
def test_a_proxy_that_fails_is_named_in_the_log(
    env: pytest.MonkeyPatch, idp: DevIssuer, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    with closed_port() as dead, refusing_proxy(403) as forbidding, refusing_proxy(407) as wanting, \
            garbage_proxy() as garbage:
        url = {"403": forbidding, "407": wanting, "garbage": garbage, "closed": f"http://127.0.0.1:{dead}"}[kind]
        env.setenv("ALL_PROXY", url)
        with caplog.at_level(logging.WARNING):
            answer = ask(idp)
    assert answer.status_code == 503
    [line, *_] = [r.getMessage() for r in caplog.records if r.name == "ccweb.outbound"]
    assert f"GET {idp.issuer_url} through the proxy {url} (ALL_PROXY) failed: " in line
    said = line.split(" failed: ", 1)[1]
    assert {"403": "403" in said, "407": "407" in said, "garbage": "ProtocolError" in said,
            "closed": "ConnectError" in said}[kind], said


def test_loopback_is_never_proxied(env: pytest.MonkeyPatch) -> None:
    with closed_port() as dead, serve_issuer() as issuer:
        for name in ("HTTPS_PROXY", "ALL_PROXY", "HTTP_PROXY"):
            env.setenv(name, f"http://127.0.0.1:{dead}")
        assert ask(issuer).status_code == 200


def test_the_service_reads_the_environment_once_when_it_starts(
    env: pytest.MonkeyPatch, idp: DevIssuer, proxy: RunningProxy
) -> None:
    """A worker's environment does not change: the proxy is chosen from it as it was when the app was made."""
    proxy.forget()
    env.setenv("HTTPS_PROXY", proxy.url)
    app = create_app(parse_config(sandbox_policy(idp.issuer_url, GIT_HOST)), sts=RecordingSTS())
    env.delenv("HTTPS_PROXY")
    with serve(app) as url:
        ready = httpx.get(f"{url}/readyz", timeout=30).json()
    assert ready["issuers"]["dev"]["state"] == "ok", ready
    assert proxy.tunnels() == {idp_origin(idp)}


# --- STS ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def moto_sts(env: pytest.MonkeyPatch, certificate: tuple[Path, ssl.SSLContext]) -> Iterator[str]:
    """moto's STS as ``https://sts.proxied.test:<port>`` (TLS in front of it on loopback), trusted through
    AWS_CA_BUNDLE, with throwaway service keys."""
    isolate_aws(env)
    env.setenv("AWS_CA_BUNDLE", str(certificate[0]))
    with serve_moto() as url, tls_front(port_of(url), certificate[1]) as port:
        yield f"https://sts.proxied.test:{port}"


def assume(endpoint: str) -> list[str]:
    """The access key id of one AssumeRole through BotoSTS at ``endpoint`` (the client closed after)."""
    sts = BotoSTS(session=boto3.session.Session(), endpoint_url=endpoint)

    async def scenario() -> list[str]:
        try:
            return [(await sts.assume_role(REQUEST)).access_key_id]
        finally:
            await sts.aclose()

    return asyncio.run(scenario())


def test_sts_is_called_through_the_proxy(env: pytest.MonkeyPatch, moto_sts: str, guarded: RunningProxy) -> None:
    guarded.forget()
    env.setenv("HTTPS_PROXY", guarded.auth_url)
    [key] = assume(moto_sts)
    assert key.startswith("ASIA")
    assert guarded.tunnels() == {moto_sts.removeprefix("https://")}


def test_sts_past_no_proxy_is_called_directly(env: pytest.MonkeyPatch, moto_sts: str, proxy: RunningProxy) -> None:
    proxy.forget()
    env.setenv("HTTPS_PROXY", proxy.url)
    env.setenv("NO_PROXY", "localhost,sts.proxied.test")
    with pytest.raises(StsError) as raised:
        assume(moto_sts)  # directly: the name resolves nowhere
    assert raised.value.retryable and raised.value.code == "ConnectError"
    assert proxy.seen() == []


def test_sts_on_loopback_is_never_proxied(env: pytest.MonkeyPatch, moto_sts: str) -> None:
    with closed_port() as dead:
        env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dead}")
        [key] = assume(moto_sts.replace("sts.proxied.test", "127.0.0.1"))
    assert key.startswith("ASIA")


def test_sts_through_a_proxy_that_refuses_is_a_retryable_error(
    env: pytest.MonkeyPatch, moto_sts: str, caplog: pytest.LogCaptureFixture
) -> None:
    with refusing_proxy(407) as url:
        env.setenv("HTTPS_PROXY", url)
        with pytest.raises(StsError) as raised, caplog.at_level(logging.WARNING):
            assume(moto_sts)
    assert raised.value.retryable and raised.value.code == "ProxyError"
    assert any(f"POST {moto_sts} through the proxy {url} (HTTPS_PROXY) failed: ProxyError: 407" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


# --- start-up ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("variable", "value"), [
    ("HTTPS_PROXY", f"socks5://svc:{PLANTED}@proxy.example.com:1080"),
    ("https_proxy", f"https://svc:{PLANTED}@proxy.example.com:3128"),
    ("ALL_PROXY", f"http://svc:{PLANTED}@proxy.example.com:notaport"),
])
def test_a_proxy_that_cannot_be_used_is_refused_by_name(variable: str, value: str) -> None:
    with pytest.raises(ProxySettingError) as raised:
        check_proxy_environment({variable: value, "NO_PROXY": "*"})  # whatever NO_PROXY bypasses
    assert variable in str(raised.value) and PLANTED not in str(raised.value)


@pytest.mark.parametrize("env", [{}, {"HTTPS_PROXY": "http://proxy.example.com:3128"}, {"HTTPS_PROXY": ""},
                                 {"HTTP_PROXY": "http://proxy.example.com:3128", "NO_PROXY": "*"}])
def test_proxy_settings_that_can_be_used_pass(env: dict[str, str]) -> None:
    check_proxy_environment(env)


SERVE_ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT / "service"), str(ROOT / "helper")]),
             "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example", "AWS_REGION": "us-east-1"}


def policy_file(tmp_path: Path, issuer: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(f"issuers:\n  - name: corp\n    issuer: {issuer}\n    audiences: [ccweb]\n"
                    "rules:\n  - name: everyone\n    issuer: corp\n    role_arn: arn:aws:iam::111122223333:role/ccweb\n"
                    "    repositories: ['*']\n")
    return path


def serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    return {**env, **SERVE_ENV, **extra}


def test_ccweb_serve_refuses_a_proxy_it_cannot_use_in_one_sentence(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ccweb", "serve", "--config", str(policy_file(tmp_path, "https://login.example.com")),
         "--port", "0"], env=serve_env(HTTPS_PROXY=f"socks5h://svc:{PLANTED}@proxy.example.com:1080"),
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("ccweb serve: ") and "HTTPS_PROXY" in line
    assert PLANTED not in result.stderr and "Traceback" not in result.stderr


def test_ccweb_serve_fetches_keys_through_the_proxy(
    tmp_path: Path, idp: DevIssuer, guarded: RunningProxy, certificate: tuple[Path, ssl.SSLContext]
) -> None:
    with closed_port() as port:
        pass  # free a moment ago: ccweb serve listens there
    guarded.forget()
    server = subprocess.Popen(
        [sys.executable, "-m", "ccweb", "serve", "--config", str(policy_file(tmp_path, idp.issuer_url)),
         "--host", "127.0.0.1", "--port", str(port)],
        env=serve_env(https_proxy=guarded.auth_url, SSL_CERT_FILE=str(certificate[0])),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(server, url)
        deadline = time.monotonic() + 30
        while (state := httpx.get(f"{url}/readyz", timeout=10).json()["issuers"]["corp"])["state"] != "ok":
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert guarded.tunnels() == {idp_origin(idp)}
    assert "p@ss" not in err and "p%40ss" not in err
