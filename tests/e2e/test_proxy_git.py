"""The helper behind a proxy, end to end: real git → ccweb-helper → a real proxy (proxy.py, tests/proxies.py) →
TLS → the sandbox's ccweb as ``https://ccweb.proxied.test:<port>``, a name that resolves nowhere but in the
proxy → STS stand-in → the signature-checking git server. With and without proxy authentication, NO_PROXY as
curl reads it, loopback never proxied, TLS checked against the service's name, and each way a proxy can fail
as the one ``ccweb:`` sentence git shows."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ccweb.sandbox.dev import Sandbox, helper_command
from proxies import (
    PROXIED_NAMES,
    RunningProxy,
    closed_port,
    garbage_proxy,
    real_proxy,
    refusing_proxy,
    tls_front,
)
from support import home_env, self_signed

PLANTED = "PLANTED-PROXY-PASSWORD"
CREDENTIAL_CONFIG = ["-c", "credential.helper=", "-c", f"credential.helper={helper_command()}",
                     "-c", "credential.useHttpPath=true"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    return self_signed(tmp_path_factory.mktemp("tls"), *PROXIED_NAMES)


@pytest.fixture(scope="module")
def service(sandbox: Sandbox, certificate: tuple[Path, ssl.SSLContext]) -> Iterator[str]:
    """The sandbox's ccweb as ``https://ccweb.proxied.test:<port>``: TLS in front of its API on loopback."""
    with tls_front(port_of(sandbox.api_url), certificate[1]) as port:
        yield f"https://ccweb.proxied.test:{port}"


@pytest.fixture(scope="module")
def proxy() -> Iterator[RunningProxy]:
    with real_proxy() as running:
        yield running


@pytest.fixture(scope="module")
def guarded() -> Iterator[RunningProxy]:
    """A proxy that wants a user and password (an @, a colon and a space in it: percent-encoded in the URL)."""
    with real_proxy(user="ci", password="p@ss w:rd") as running:
        yield running


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def origin(url: str) -> str:
    return url.removeprefix("https://")


def git_env(home: Path, sandbox: Sandbox, service: str, certificate: Path, **extra: str) -> dict[str, str]:
    askpass = home / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho prompted >> {home}/prompted\nexit 1\n")
    askpass.chmod(0o700)
    return home_env(home, CCWEB_URL=service, CCWEB_TOKEN_FILE=str(sandbox.token_file("alice")),
                    SSL_CERT_FILE=str(certificate), GIT_ASKPASS=str(askpass),
                    GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="test@example.com",
                    GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="test@example.com", **extra)


def git(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *CREDENTIAL_CONFIG, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, check=False)


def clone(sandbox: Sandbox, home: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    target = home / "clone"
    result = git(["clone", sandbox.repo_url("demo"), str(target)], env)
    assert not (home / "prompted").exists(), "git prompted for a username/password"
    assert "Traceback" not in result.stderr
    return result


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The helper's one ``ccweb:`` line in what git printed, for a clone that failed."""
    assert result.returncode != 0
    [line] = [line for line in result.stderr.splitlines() if line.startswith("ccweb: ")]
    return line


@pytest.mark.parametrize(("variable", "extra"), [
    ("HTTPS_PROXY", {}), ("https_proxy", {}),
    ("ALL_PROXY", {"NO_PROXY": "localhost,127.0.0.1"}),  # git's own requests to the loopback git server go direct
])
def test_clone_and_push_through_the_proxy(  # noqa: PLR0917 (fixtures and one row of the table)
    sandbox: Sandbox, service: str, certificate: tuple[Path, ssl.SSLContext], proxy: RunningProxy, home: Path,
    variable: str, extra: dict[str, str],
) -> None:
    proxy.forget()
    env = git_env(home, sandbox, service, certificate[0], **{variable: proxy.url}, **extra)
    result = clone(sandbox, home, env)
    assert result.returncode == 0, result.stderr
    work = home / "clone"
    subprocess.run(["git", "commit", "--allow-empty", "-m", f"through {variable}"], cwd=work, env=env, check=True,
                   capture_output=True)
    pushed = git(["push", "origin", "HEAD"], env, cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    assert proxy.tunnels() == {origin(service)}


def test_without_the_proxy_the_service_is_out_of_reach(
    sandbox: Sandbox, service: str, certificate: tuple[Path, ssl.SSLContext], home: Path,
) -> None:
    line = refused(clone(sandbox, home, git_env(home, sandbox, service, certificate[0])))
    assert service in line  # ccweb.proxied.test resolves nowhere but in the proxy


def test_proxy_authentication_comes_from_the_proxy_url(
    sandbox: Sandbox, service: str, certificate: tuple[Path, ssl.SSLContext], guarded: RunningProxy, home: Path,
) -> None:
    guarded.forget()
    result = clone(sandbox, home, git_env(home, sandbox, service, certificate[0], HTTPS_PROXY=guarded.auth_url))
    assert result.returncode == 0, result.stderr
    assert guarded.tunnels() == {origin(service)}


@pytest.mark.parametrize("password", [PLANTED, None], ids=["wrong-password", "no-password"])
def test_a_proxy_that_wants_a_password_is_named_with_the_variable(  # noqa: PLR0917
    sandbox: Sandbox, service: str, certificate: tuple[Path, ssl.SSLContext], guarded: RunningProxy, home: Path,
    password: str | None,
) -> None:
    guarded.forget()
    url = guarded.url if password is None else guarded.url_with("ci", password)
    result = clone(sandbox, home, git_env(home, sandbox, service, certificate[0], HTTPS_PROXY=url))
    line = refused(result)
    assert f"the proxy {guarded.url} (HTTPS_PROXY) refused to connect to {origin(service)}" in line, line
    assert "HTTP 407" in line and "HTTPS_PROXY" in line.split("HTTP 407", 1)[1]  # what to fix, and where
    assert PLANTED not in result.stderr and "ci:" not in result.stderr
    assert guarded.tunnels() == set()


@pytest.mark.parametrize("no_proxy", ["ccweb.proxied.test", ".proxied.test", "proxied.test", "test", "*",
                                      "example.com ccweb.proxied.test", "CCWEB.PROXIED.TEST."])
def test_no_proxy_sends_the_helper_directly(  # noqa: PLR0917
    sandbox: Sandbox, service: str, certificate: tuple[Path, ssl.SSLContext], proxy: RunningProxy, home: Path,
    no_proxy: str,
) -> None:
    proxy.forget()
    env = git_env(home, sandbox, service, certificate[0], HTTPS_PROXY=proxy.url, no_proxy=no_proxy)
    line = refused(clone(sandbox, home, env))
    assert service in line and proxy.url not in line  # directly: the name resolves nowhere
    assert proxy.seen() == []


@pytest.mark.parametrize("no_proxy", ["example.com,127.0.0.1", "other.proxied.test", "xccweb.proxied.test",
                                      "10.0.0.0/8"])
def test_no_proxy_for_other_hosts_keeps_the_proxy(  # noqa: PLR0917
    sandbox: Sandbox, service: str, certificate: tuple[Path, ssl.SSLContext], proxy: RunningProxy, home: Path,
    no_proxy: str,
) -> None:
    proxy.forget()
    env = git_env(home, sandbox, service, certificate[0], HTTPS_PROXY=proxy.url, NO_PROXY=no_proxy)
    result = clone(sandbox, home, env)
    assert result.returncode == 0, result.stderr
    assert proxy.tunnels() == {origin(service)}


def test_an_unreachable_proxy_is_named_with_the_variable(
    sandbox: Sandbox, service: str, certificate: tuple[Path, ssl.SSLContext], home: Path,
) -> None:
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}"
        line = refused(clone(sandbox, home, git_env(home, sandbox, service, certificate[0], HTTPS_PROXY=url)))
    assert f"cannot reach the proxy {url} set by HTTPS_PROXY" in line, line


@pytest.mark.parametrize("status", [403, 407])
def test_a_proxy_that_refuses_is_named_with_the_variable(
    sandbox: Sandbox, service: str, certificate: tuple[Path, ssl.SSLContext], home: Path, status: int,
) -> None:
    with refusing_proxy(status) as url:
        line = refused(clone(sandbox, home, git_env(home, sandbox, service, certificate[0], ALL_PROXY=url,
                                                    NO_PROXY="127.0.0.1")))
    assert f"the proxy {url} (ALL_PROXY) refused to connect to {origin(service)}" in line, line
    assert f"HTTP {status}" in line


def test_the_real_proxy_refusing_a_host_is_named(
    sandbox: Sandbox, certificate: tuple[Path, ssl.SSLContext], proxy: RunningProxy, home: Path,
) -> None:
    elsewhere = "https://ccweb.elsewhere.test:4443"  # not a name the proxy lets through: it answers 403
    line = refused(clone(sandbox, home, git_env(home, sandbox, elsewhere, certificate[0], HTTPS_PROXY=proxy.url)))
    assert f"the proxy {proxy.url} (HTTPS_PROXY) refused to connect to ccweb.elsewhere.test:4443" in line, line
    assert "HTTP 403" in line


def test_a_proxy_that_answers_garbage_is_named_with_the_variable(
    sandbox: Sandbox, service: str, certificate: tuple[Path, ssl.SSLContext], home: Path,
) -> None:
    with garbage_proxy() as url:
        line = refused(clone(sandbox, home, git_env(home, sandbox, service, certificate[0], HTTPS_PROXY=url)))
    assert f"the proxy {url} (HTTPS_PROXY) did not answer like an HTTP proxy" in line, line


def test_tls_is_checked_against_the_service_not_the_proxy(
    sandbox: Sandbox, proxy: RunningProxy, home: Path, tmp_path: Path,
) -> None:
    """The certificate names 127.0.0.1 (where the proxy is) and idp.proxied.test, not ccweb.proxied.test."""
    cert, context = self_signed(tmp_path, "idp.proxied.test")
    with tls_front(port_of(sandbox.api_url), context) as port:
        service = f"https://ccweb.proxied.test:{port}"
        line = refused(clone(sandbox, home, git_env(home, sandbox, service, cert, HTTPS_PROXY=proxy.url)))
    assert "certificate" in line and service in line, line


def test_loopback_is_never_proxied(sandbox: Sandbox, home: Path) -> None:
    """The helper's own requests to a loopback service (git's own are not the helper's: asked directly)."""
    with closed_port() as port:
        dead = f"http://127.0.0.1:{port}"
        env = home_env(home, CCWEB_URL=sandbox.api_url, CCWEB_TOKEN_FILE=str(sandbox.token_file("alice")),
                       HTTPS_PROXY=dead, ALL_PROXY=dead, HTTP_PROXY=dead, http_proxy=dead)
        got = subprocess.run([sys.executable, "-m", "ccweb_helper", "get"], env=env, capture_output=True, text=True,
                             input=f"protocol=http\nhost={sandbox.git_host}\npath=v1/repos/demo\n\n", timeout=60,
                             check=False)
    assert got.returncode == 0, got.stderr
    assert [line.split("=", 1)[0] for line in got.stdout.splitlines()] == ["username", "password",
                                                                          "password_expiry_utc"]

