"""Interactive login through proxies: the real OpenID provider (tests/oidc) at ``https://idp.proxied.test:<port>``,
a name that resolves nowhere but in the proxies (tests/proxies.py). The helper (discovery, the device
authorization, the token endpoint) and the person's browser reach it through a proxy that wants a password;
the service (the sandbox, with that provider as its issuer) fetches the provider's keys through another,
named by HTTPS_PROXY in its own environment when it started. Then git's credential comes from the login."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccweb.config import parse_config
from ccweb.sandbox.dev import Sandbox
from e2e.test_login import (
    Provider,
    assert_no_secrets,
    assert_password,
    attrs,
    browser_runs,
    cached,
    device_login,
    environment,
    helper,
    login_policy,
    start_provider,
)
from proxies import PROXIED_NAMES, RunningProxy, closed_port, real_proxy
from support import self_signed

PASSWORD = "PLANTED proxy:pass@word"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    return self_signed(tmp_path_factory.mktemp("tls"), *PROXIED_NAMES)


@pytest.fixture(scope="module")
def provider(certificate: tuple[Path, ssl.SSLContext]) -> Iterator[Provider]:
    """The provider over https, as ``idp.proxied.test`` (it listens on 127.0.0.1)."""
    cert = certificate[0]
    with start_provider(OIDC_TLS_CERT=str(cert), OIDC_TLS_KEY=str(cert.with_name("key.pem")),
                        OIDC_HOST="idp.proxied.test") as running:
        assert running.issuer.startswith("https://idp.proxied.test:")
        yield running


@pytest.fixture(scope="module")
def person_proxy() -> Iterator[RunningProxy]:
    """The proxy of the person's machine: the helper's and the browser's."""
    with real_proxy(user="alice", password=PASSWORD) as running:
        yield running


@pytest.fixture(scope="module")
def service_proxy() -> Iterator[RunningProxy]:
    """The proxy of the service's network."""
    with real_proxy() as running:
        yield running


@pytest.fixture(scope="module")
def sandbox(provider: Provider, certificate: tuple[Path, ssl.SSLContext], service_proxy: RunningProxy,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The service, with the provider as its issuer: started with HTTPS_PROXY and SSL_CERT_FILE set, as an
    operator behind a proxy starts it (the service reads its environment once, when it starts)."""
    box = Sandbox(port=0, workdir=tmp_path_factory.mktemp("sandbox"))
    box.config = parse_config(login_policy(provider.issuer, box.git_host))
    with contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as env:
            for name in ("https_proxy", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
                env.delenv(name, raising=False)
            env.setenv("HTTPS_PROXY", service_proxy.url)
            env.setenv("SSL_CERT_FILE", str(certificate[0]))
            running = stack.enter_context(box.running())
        yield running


def behind(home: Path, sandbox: Sandbox, certificate: tuple[Path, ssl.SSLContext], proxy_url: str,
           **extra: str) -> dict[str, str]:
    """The person's environment: HTTPS_PROXY for the helper, the same proxy for the browser, the test CA."""
    return environment(home, sandbox, HTTPS_PROXY=proxy_url, TEST_BROWSER_PROXY=proxy_url,
                       SSL_CERT_FILE=str(certificate[0]), **extra)


def test_login_in_the_browser_through_the_proxy_then_git_gets_its_password(  # noqa: PLR0917 (fixtures)
    sandbox: Sandbox, provider: Provider, certificate: tuple[Path, ssl.SSLContext], person_proxy: RunningProxy,
    service_proxy: RunningProxy, home: Path,
) -> None:
    person_proxy.forget()
    service_proxy.forget()
    idp = provider.issuer.removeprefix("https://")
    env = behind(home, sandbox, certificate, person_proxy.auth_url)
    run = helper(["login", "--browser"], env)
    assert run.code == 0, run.stderr
    assert "signed in to corp as alice@example.com" in run.stderr
    assert browser_runs(home) == 1
    assert person_proxy.tunnels() == {idp}

    got = helper(["get"], env, attrs())
    assert_password(got)
    assert service_proxy.tunnels() == {idp}, "the service fetched the provider's keys through its proxy"
    assert_no_secrets(cached(home), run.stdout, run.stderr, got.stdout, got.stderr)
    assert "PLANTED" not in run.stderr + got.stderr


def test_device_login_through_the_proxy(
    sandbox: Sandbox, provider: Provider, certificate: tuple[Path, ssl.SSLContext], person_proxy: RunningProxy,
    home: Path,
) -> None:
    person_proxy.forget()
    env = behind(home, sandbox, certificate, person_proxy.auth_url)
    run, user_code = device_login(home, env, ["--device"])
    assert run.code == 0, run.stderr
    assert f"{provider.issuer}/device" in run.stderr and user_code in run.stderr
    assert "signed in to corp as alice@example.com" in run.stderr
    assert person_proxy.tunnels() == {provider.issuer.removeprefix("https://")}
    assert_password(helper(["get"], env, attrs()))


def test_without_the_proxy_the_provider_is_out_of_reach(
    sandbox: Sandbox, provider: Provider, certificate: tuple[Path, ssl.SSLContext], home: Path,
) -> None:
    run = helper(["login", "--browser"], environment(home, sandbox, SSL_CERT_FILE=str(certificate[0])))
    assert run.code == 1 and run.stderr.startswith("ccweb: ") and "Traceback" not in run.stderr
    assert "idp.proxied.test" in run.stderr
    assert browser_runs(home) == 0


def test_login_through_a_proxy_that_cannot_be_reached_names_it(
    sandbox: Sandbox, certificate: tuple[Path, ssl.SSLContext], home: Path,
) -> None:
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}"
        run = helper(["login", "--browser"], behind(home, sandbox, certificate, url))
    assert run.code == 1 and "Traceback" not in run.stderr
    assert f"cannot reach the proxy {url} set by HTTPS_PROXY" in run.stderr, run.stderr
    assert browser_runs(home) == 0


def test_a_wrong_proxy_password_at_login_is_the_proxys_407(
    sandbox: Sandbox, certificate: tuple[Path, ssl.SSLContext], person_proxy: RunningProxy, home: Path,
) -> None:
    run = helper(["login", "--browser"], behind(home, sandbox, certificate, person_proxy.url_with("alice", "nope")))
    assert run.code == 1 and "Traceback" not in run.stderr
    assert f"the proxy {person_proxy.url} (HTTPS_PROXY) refused to connect to" in run.stderr, run.stderr
    assert "407" in run.stderr and "nope" not in run.stderr
    assert browser_runs(home) == 0
