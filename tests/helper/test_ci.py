"""CI platforms' own OIDC tokens: each platform emulated with real parts — loopback stand-ins for the GitHub
Actions and Azure Pipelines token services, a fake ``buildkite-agent`` first on PATH, the variables CircleCI
and Bitbucket set — and the helper run as git runs it, against the ccweb sandbox, which accepts tokens its
development issuer mints with the audience the stand-ins were asked for."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ccweb.sandbox.dev import Sandbox
from ccweb.sandbox.issuer import DEMO_USERS
from ccweb_helper import ci
from ccweb_helper.client import HelperError
from ccweb_helper.discovery import Discovery
from support import Asked, PartnerService, clean_env, serve_json
from support import serve as serve_app

ROOT = Path(__file__).resolve().parents[2]
COMPANY = "https://ccweb.example.com"  # the service a job asks on behalf of, where no service runs
CODECOMMIT = "git-codecommit.us-east-2.amazonaws.com"
ATTRS = f"protocol=https\nhost={CODECOMMIT}\npath=v1/repos/demo\n\n"

# Planted secrets: runners' request credentials, which must never be printed anywhere.
GH_REQUEST_TOKEN = "PLANTED-gh-request-4b1d9e7f"
AZURE_ACCESS_TOKEN = "PLANTED-azure-access-93c2a6d0"
AZURE_CONNECTION = "5f0c9b2e-1d3a-4c8e-9b7f-2a6e4d1c0b93"

# Variables CI platforms set; the runner of these tests may be one of them, so none is inherited.


class Run:
    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.code, self.stdout, self.stderr = result.returncode, result.stdout, result.stderr

    @property
    def answer(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.stdout.splitlines())

    def assert_answered(self) -> None:
        assert self.code == 0, self.stderr
        assert self.stderr == ""
        assert set(self.answer) == {"username", "password", "password_expiry_utc"}

    def assert_refused(self, sentence: str) -> None:
        assert (self.code, self.stdout) == (1, "quit=1\n"), (self.stdout, self.stderr)
        assert self.stderr.startswith("ccweb: ") and self.stderr.count("\n") == 1, self.stderr
        assert sentence in self.stderr, self.stderr
        assert "Traceback" not in self.stderr

    def assert_secret_free(self, *secrets: str) -> None:
        for secret in secrets:
            assert secret not in self.stdout and secret not in self.stderr


def helper(home: Path, stdin: str = ATTRS, **env: str) -> Run:
    base = clean_env()
    base.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "GIT_CONFIG_NOSYSTEM": "1",
                 "PYTHONPATH": str(ROOT / "helper")})
    base.update(env)
    result = subprocess.run([sys.executable, "-m", "ccweb_helper", "get"], input=stdin, env=base,
                            capture_output=True, text=True, timeout=60, check=False)
    return Run(result)


def mint(sandbox: Sandbox, aud: str, **claims: Any) -> str:
    """A token for alice (group engineering, so the sandbox grants her) with a CI platform's own claims."""
    return sandbox.issuer.mint({"sub": "dev|alice", **DEMO_USERS["alice"], **claims, "aud": aud})


# Stand-ins for the token services -------------------------------------------------------------------------

class TokenService:
    """A loopback token endpoint: records every request; answers as ``mode`` says."""

    def __init__(self, sandbox: Sandbox, mode: str = "ok", key: str = "value") -> None:
        self.sandbox, self.mode, self.key = sandbox, mode, key
        self.requests: list[dict[str, Any]] = []
        self.issued: list[str] = []

    def answer(self, asked: Asked) -> tuple[int, bytes]:
        parts = urlsplit(asked.path)
        self.requests.append({
            "method": asked.method, "path": parts.path, "query": parse_qs(parts.query, keep_blank_values=True),
            "headers": dict(asked.headers), "body": asked.body,
        })
        if self.mode in ("500", "404", "403"):
            return int(self.mode), b'{"message": "no"}'
        if self.mode == "html":
            return 200, b"<html>sign in</html>"
        if self.mode == "no-token":
            return 200, b'{"count": 1}'
        if self.mode == "not-jwt":
            return 200, json.dumps({self.key: "not a jwt " + GH_REQUEST_TOKEN}).encode()
        audience = parse_qs(parts.query).get("audience", ["ccweb"])[0]
        token = mint(self.sandbox, "someone-else" if self.mode == "wrong-aud" else audience,
                     repository="acme/app", ref="refs/heads/main")
        self.issued.append(token)
        return 200, json.dumps({self.key: token, "count": 1}).encode()


@contextlib.contextmanager
def silent() -> Iterator[str]:
    """A port that accepts connections (backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def github_env(url: str) -> dict[str, str]:
    return {"GITHUB_ACTIONS": "true", "CI": "true", "ACTIONS_ID_TOKEN_REQUEST_URL": url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": GH_REQUEST_TOKEN}


def discovered(sandbox: Sandbox, home: Path) -> None:
    """Have a first ``get`` in ``home`` (default timeout) keep the service's discovery document in its cache, so
    that the next one asks only its CI platform: a short CCWEB_TIMEOUT then times that alone, not the service."""
    with silent() as url:
        pass  # closed again: the first get learns the audience, then cannot reach the token service
    helper(home, CCWEB_URL=sandbox.api_url, **github_env(url + "/idtoken")).assert_refused("cannot reach")


def azure_env(url: str, **extra: str) -> dict[str, str]:
    env = {"TF_BUILD": "True", "SYSTEM_OIDCREQUESTURI": url, "SYSTEM_ACCESSTOKEN": AZURE_ACCESS_TOKEN,
           "CCWEB_AZURE_SERVICE_CONNECTION_ID": AZURE_CONNECTION}
    env.update(extra)
    return env


# GitHub Actions -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/idtoken?api-version=2.0", "/idtoken"], ids=["url-with-query", "url-without"])
def test_github_actions_token_is_requested_for_the_services_audience(sandbox: Sandbox, home: Path, path: str) -> None:
    service = TokenService(sandbox)
    with serve_json(service.answer) as base:
        run = helper(home, CCWEB_URL=sandbox.api_url, **github_env(base + path))
    run.assert_answered()
    [request] = service.requests
    assert request["method"] == "GET" and request["path"] == "/idtoken"
    assert request["query"]["audience"] == ["ccweb"]  # from the sandbox's /.well-known/ccweb
    if "?" in path:
        assert request["query"]["api-version"] == ["2.0"]
    assert request["headers"]["Authorization"] == "bearer " + GH_REQUEST_TOKEN
    run.assert_secret_free(GH_REQUEST_TOKEN, *service.issued)


@pytest.mark.parametrize(("platform", "variable", "secret"), [
    ("github", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", GH_REQUEST_TOKEN),
    ("azure", "SYSTEM_ACCESSTOKEN", AZURE_ACCESS_TOKEN),
], ids=["github", "azure"])
def test_a_request_token_with_a_line_break_is_refused_without_echo(
    sandbox: Sandbox, home: Path, platform: str, variable: str, secret: str,
) -> None:
    """A header injection attempt, or a pasted value with a newline, never reaches an error message."""
    service = TokenService(sandbox)
    with serve_json(service.answer) as base:
        env = github_env(base + "/idtoken") if platform == "github" else azure_env(base + "/oidc")
        env[variable] = f"{secret}\r\nX-Injected: 1"
        run = helper(home, CCWEB_URL=sandbox.api_url, **env)
    run.assert_refused("holds characters an HTTP header cannot carry")
    run.assert_secret_free(secret, "X-Injected")
    assert service.requests == []


def test_github_actions_token_with_a_wrong_audience_shows_the_services_refusal(sandbox: Sandbox, home: Path) -> None:
    with serve_json(TokenService(sandbox, "wrong-aud").answer) as base:
        run = helper(home, CCWEB_URL=sandbox.api_url, **github_env(base + "/idtoken"))
    run.assert_refused("The OIDC token was refused")
    assert "is not meant for this service" in run.stderr
    run.assert_secret_free(GH_REQUEST_TOKEN)


@pytest.mark.parametrize(("mode", "sentence"), [
    ("500", "the GitHub Actions token service is failing (HTTP 500)"),
    ("404", "the GitHub Actions token service refused to give an OIDC token (HTTP 404)"),
    ("403", '"permissions: id-token: write"'),
    ("html", 'the GitHub Actions token service answered without an OIDC token (no "value"'),
    ("no-token", 'answered without an OIDC token (no "value"'),
    ("not-jwt", "is not an OIDC token (a JWT of three base64url parts)"),
], ids=["500", "404", "403", "not-json", "no-value", "not-a-jwt"])
def test_github_actions_token_service_failures_are_one_line(sandbox: Sandbox, home: Path, mode: str,
                                                            sentence: str) -> None:
    with serve_json(TokenService(sandbox, mode).answer) as base:
        run = helper(home, CCWEB_URL=sandbox.api_url, **github_env(base + "/idtoken?api-version=2.0"))
    run.assert_refused(sentence)
    run.assert_secret_free(GH_REQUEST_TOKEN)


def test_a_hanging_github_actions_token_service_is_cut_by_the_timeout(sandbox: Sandbox, home: Path) -> None:
    discovered(sandbox, home)
    with silent() as url:
        started = time.monotonic()
        run = helper(home, CCWEB_URL=sandbox.api_url, CCWEB_TIMEOUT="1", **github_env(url + "/idtoken"))
        elapsed = time.monotonic() - started
    run.assert_refused(f"the GitHub Actions token service at {url} did not answer within 1 seconds")
    run.assert_secret_free(GH_REQUEST_TOKEN)
    assert elapsed < 30


def test_an_unreachable_github_actions_token_service_is_named(sandbox: Sandbox, home: Path) -> None:
    with silent() as url:
        pass  # closed again: nothing listens there now
    run = helper(home, CCWEB_URL=sandbox.api_url, **github_env(url + "/idtoken"))
    run.assert_refused(f"cannot reach the GitHub Actions token service at {url}")
    run.assert_secret_free(GH_REQUEST_TOKEN)


def test_a_plain_http_token_service_elsewhere_is_never_sent_the_request_token(sandbox: Sandbox, home: Path) -> None:
    run = helper(home, CCWEB_URL=sandbox.api_url, **github_env("http://token.example.invalid/idtoken"))
    run.assert_refused("the GitHub Actions token service is at a plain http:// address")
    run.assert_secret_free(GH_REQUEST_TOKEN)


def test_ccweb_token_wins_over_the_platform(sandbox: Sandbox, home: Path) -> None:
    service = TokenService(sandbox)
    with serve_json(service.answer) as base:
        run = helper(home, CCWEB_URL=sandbox.api_url, CCWEB_TOKEN=sandbox.issuer.mint_user("mallory"),
                     **github_env(base + "/idtoken"))
    run.assert_refused("mallory@example.net")  # CCWEB_TOKEN's identity, not the platform's
    assert service.requests == []


def test_ccweb_token_file_wins_over_the_platform(sandbox: Sandbox, home: Path) -> None:
    service = TokenService(sandbox)
    with serve_json(service.answer) as base:
        run = helper(home, CCWEB_URL=sandbox.api_url, CCWEB_TOKEN_FILE=str(sandbox.token_file("alice")),
                     **github_env(base + "/idtoken"))
    run.assert_answered()
    assert service.requests == []


# Azure Pipelines ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("connection_variable", ["CCWEB_AZURE_SERVICE_CONNECTION_ID",
                                                 "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"])
def test_azure_pipelines_token_is_requested_for_the_service_connection(sandbox: Sandbox, home: Path,
                                                                       connection_variable: str) -> None:
    service = TokenService(sandbox, key="oidcToken")
    with serve_json(service.answer) as base:
        env = azure_env(base + "/org/_apis/distributedtask/hubs/build/plans/p/jobs/j/oidctoken")
        del env["CCWEB_AZURE_SERVICE_CONNECTION_ID"]
        env[connection_variable] = AZURE_CONNECTION
        run = helper(home, CCWEB_URL=sandbox.api_url, **env)
    run.assert_answered()
    [request] = service.requests
    assert request["method"] == "POST" and request["path"].endswith("/oidctoken")
    assert request["query"] == {"api-version": ["7.1"], "serviceConnectionId": [AZURE_CONNECTION]}
    assert request["headers"]["Authorization"] == "Bearer " + AZURE_ACCESS_TOKEN
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == {}
    run.assert_secret_free(AZURE_ACCESS_TOKEN, *service.issued)


def test_azure_connection_of_ccweb_wins_over_the_tasks(sandbox: Sandbox, home: Path) -> None:
    service = TokenService(sandbox, key="oidcToken")
    with serve_json(service.answer) as base:
        run = helper(home, CCWEB_URL=sandbox.api_url,
                     **azure_env(base + "/oidctoken", AZURESUBSCRIPTION_SERVICE_CONNECTION_ID="other"))
    run.assert_answered()
    assert service.requests[0]["query"]["serviceConnectionId"] == [AZURE_CONNECTION]


@pytest.mark.parametrize(("mode", "sentence"), [
    ("500", "the Azure Pipelines token service is failing (HTTP 500)"),
    ("403", f"check that service connection {AZURE_CONNECTION} exists"),
    ("html", 'answered without an OIDC token (no "oidcToken"'),
    ("not-jwt", "is not an OIDC token"),
], ids=["500", "403", "not-json", "not-a-jwt"])
def test_azure_pipelines_token_service_failures_are_one_line(sandbox: Sandbox, home: Path, mode: str,
                                                             sentence: str) -> None:
    with serve_json(TokenService(sandbox, mode, key="oidcToken").answer) as base:
        run = helper(home, CCWEB_URL=sandbox.api_url, **azure_env(base + "/oidctoken"))
    run.assert_refused(sentence)
    run.assert_secret_free(AZURE_ACCESS_TOKEN, GH_REQUEST_TOKEN)


def test_a_hanging_azure_token_service_is_cut_by_the_timeout(sandbox: Sandbox, home: Path) -> None:
    with silent() as url:
        run = helper(home, CCWEB_URL=sandbox.api_url, CCWEB_TIMEOUT="1", **azure_env(url + "/oidctoken"))
    run.assert_refused(f"the Azure Pipelines token service at {url} did not answer within 1 seconds")
    run.assert_secret_free(AZURE_ACCESS_TOKEN)


# Buildkite ------------------------------------------------------------------------------------------------

FAKE_AGENT = """#!/bin/sh
# stands in for buildkite-agent: records its argv, then behaves as $MODE says
dir=$(dirname "$0")
printf '%s\\n' "$@" > "$dir/argv"
case "$(cat "$dir/mode")" in
  ok) cat "$dir/token" ;;
  fail) echo "error: {PLANTED} job token rejected" >&2; echo "{PLANTED}"; exit 3 ;;
  hang) exec sleep 30 ;;
  garbage) echo "Request OIDC token: {PLANTED}" ;;
esac
"""
BUILDKITE_PLANTED = "PLANTED-buildkite-agent-token-51e0"


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "buildkite-agent"
    script.write_text(FAKE_AGENT.replace("{PLANTED}", BUILDKITE_PLANTED))
    script.chmod(0o755)
    return bin_dir


def buildkite_env(bin_dir: Path, mode: str) -> dict[str, str]:
    (bin_dir / "mode").write_text(mode)
    return {"BUILDKITE": "true", "CI": "true", "BUILDKITE_AGENT_ACCESS_TOKEN": BUILDKITE_PLANTED,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_buildkite_token_comes_from_the_agent_for_the_services_audience(sandbox: Sandbox, home: Path,
                                                                        agent: Path) -> None:
    token = mint(sandbox, "ccweb", organization_slug="acme", pipeline_slug="app")
    (agent / "token").write_text(token + "\n")
    run = helper(home, CCWEB_URL=sandbox.api_url, **buildkite_env(agent, "ok"))
    run.assert_answered()
    assert (agent / "argv").read_text().splitlines() == ["oidc", "request-token", "--audience", "ccweb"]
    run.assert_secret_free(token, BUILDKITE_PLANTED)


@pytest.mark.parametrize(("mode", "sentence"), [
    ("fail", "`buildkite-agent oidc request-token` failed (exit status 3)"),
    ("garbage", "what `buildkite-agent oidc request-token` printed is not an OIDC token"),
    ("hang", "`buildkite-agent oidc request-token` did not answer within 1 seconds"),
])
def test_buildkite_agent_failures_never_echo_its_output(sandbox: Sandbox, home: Path, agent: Path, mode: str,
                                                        sentence: str) -> None:
    if mode == "hang":
        discovered(sandbox, home)
    seconds = "1" if mode == "hang" else "60"  # an agent that answers is never cut short, however busy the machine
    run = helper(home, CCWEB_URL=sandbox.api_url, CCWEB_TIMEOUT=seconds, **buildkite_env(agent, mode))
    run.assert_refused(sentence)
    run.assert_secret_free(BUILDKITE_PLANTED)


def test_buildkite_without_the_agent_on_path_says_so(sandbox: Sandbox, home: Path, tmp_path: Path) -> None:
    run = helper(home, CCWEB_URL=sandbox.api_url, BUILDKITE="true", CI="true", PATH=str(tmp_path))
    run.assert_refused("buildkite-agent is not on PATH")


# Variables: CircleCI, Bitbucket Pipelines, GitLab CI (its id_tokens: CCWEB_TOKEN) --------------------------

@pytest.mark.parametrize(("platform", "variable"), [
    ({"CIRCLECI": "true"}, "CIRCLE_OIDC_TOKEN_V2"),
    ({"BITBUCKET_BUILD_NUMBER": "42"}, "BITBUCKET_STEP_OIDC_TOKEN"),
    ({"GITLAB_CI": "true"}, "CCWEB_TOKEN"),
], ids=["circleci", "bitbucket", "gitlab"])
def test_platform_variables_are_used(sandbox: Sandbox, home: Path, platform: dict[str, str], variable: str) -> None:
    token = mint(sandbox, "ccweb")
    run = helper(home, CCWEB_URL=sandbox.api_url, CI="true", **platform, **{variable: token})
    run.assert_answered()
    run.assert_secret_free(token)


@pytest.mark.parametrize(("platform", "variable", "aud"), [
    ({"CIRCLECI": "true"}, "CIRCLE_OIDC_TOKEN_V2", "c2f0a3d4-7b1e-4a6f-9d2c-0e8b5a4f3c21"),
    ({"BITBUCKET_BUILD_NUMBER": "42"}, "BITBUCKET_STEP_OIDC_TOKEN", "ari:cloud:bitbucket::workspace/{a1b2}"),
], ids=["circleci-org-id", "bitbucket-workspace"])
def test_a_platform_token_for_another_audience_shows_the_services_refusal(
        sandbox: Sandbox, home: Path, platform: dict[str, str], variable: str, aud: str) -> None:
    token = mint(sandbox, aud)
    run = helper(home, CCWEB_URL=sandbox.api_url, **platform, **{variable: token})
    run.assert_refused("The OIDC token was refused")
    run.assert_secret_free(token)


@pytest.mark.parametrize("variable", ["CIRCLE_OIDC_TOKEN_V2", "BITBUCKET_STEP_OIDC_TOKEN"])
def test_a_malformed_platform_variable_is_named_not_echoed(sandbox: Sandbox, home: Path, variable: str) -> None:
    run = helper(home, CCWEB_URL=sandbox.api_url, **{variable: f"Bearer {GH_REQUEST_TOKEN}"})
    run.assert_refused(f"{variable} is not an OIDC token")
    run.assert_secret_free(GH_REQUEST_TOKEN)


# Kubernetes: a projected service-account token through CCWEB_TOKEN_FILE --------------------------------------

def test_projected_service_account_token_is_reread_on_every_call(sandbox: Sandbox, home: Path, tmp_path: Path) -> None:
    """The kubelet rotates the file in place (a symlink swap); each git call reads the current token."""
    mounted = tmp_path / "ccweb-token"
    mounted.mkdir()
    link = mounted / "token"

    def rotate(token: str, generation: int) -> None:
        data = mounted / f"..data{generation}"
        data.mkdir()
        (data / "token").write_text(token)
        tmp = mounted / "token.tmp"
        tmp.symlink_to(data / "token")
        tmp.replace(link)

    claims = {"kubernetes.io": {"namespace": "ci", "serviceaccount": {"name": "builder"}}}
    rotate(sandbox.issuer.mint({"sub": "system:serviceaccount:ci:builder", "groups": [], **claims}), 1)
    first = helper(home, CCWEB_URL=sandbox.api_url, CCWEB_TOKEN_FILE=str(link))
    first.assert_refused("No ccweb rule grants")
    rotate(mint(sandbox, "ccweb", **claims), 2)
    second = helper(home, CCWEB_URL=sandbox.api_url, CCWEB_TOKEN_FILE=str(link))
    second.assert_answered()


# No token: what to configure ------------------------------------------------------------------------------

@pytest.mark.parametrize(("env", "sentence"), [
    ({"GITHUB_ACTIONS": "true"}, 'no OIDC token found: GitHub Actions gives this job no OIDC token: add '
                                 '"permissions: id-token: write" to the job'),
    ({"GITHUB_ACTIONS": "true", "ACTIONS_ID_TOKEN_REQUEST_URL": "http://127.0.0.1:9/x"},
     '"permissions: id-token: write"'),
    ({"GITLAB_CI": "true"}, "GitLab CI gives jobs an OIDC token only when asked: add `id_tokens: {CCWEB_TOKEN: "
                            "{aud: "),
    ({"CIRCLECI": "true"}, "CircleCI injects it only into jobs that use a context"),
    ({"BITBUCKET_BUILD_NUMBER": "7"}, "only with `oidc: true`: add it to the step"),
    ({"TF_BUILD": "True"}, "no SYSTEM_OIDCREQUESTURI"),
    ({"TF_BUILD": "True", "SYSTEM_OIDCREQUESTURI": "https://dev.azure.com/x",
      "CCWEB_AZURE_SERVICE_CONNECTION_ID": AZURE_CONNECTION}, "`env: {SYSTEM_ACCESSTOKEN: $(System.AccessToken)}`"),
    ({"TF_BUILD": "True", "SYSTEM_OIDCREQUESTURI": "https://dev.azure.com/x", "SYSTEM_ACCESSTOKEN": AZURE_ACCESS_TOKEN},
     "set CCWEB_AZURE_SERVICE_CONNECTION_ID to the id of the service connection"),
    ({}, "CI=true, so no interactive login is started"),
], ids=["github", "github-no-request-token", "gitlab", "circleci", "bitbucket", "azure-old-agent",
        "azure-no-access-token", "azure-no-connection", "other-ci"])
def test_on_a_platform_without_its_token_the_sentence_names_what_to_configure(
        sandbox: Sandbox, home: Path, env: dict[str, str], sentence: str) -> None:
    run = helper(home, CCWEB_URL=sandbox.api_url, CI="true", **env)
    run.assert_refused(sentence)
    run.assert_secret_free(AZURE_ACCESS_TOKEN)


def test_gitlab_hint_names_the_audience_when_the_service_was_already_asked(sandbox: Sandbox, home: Path) -> None:
    """For one of the service's own git endpoints the helper has its discovery at hand: the hint is exact."""
    run = helper(home, f"protocol=http\nhost={sandbox.git_host}\npath=v1/repos/demo\n\n", CCWEB_URL=sandbox.api_url,
                 GITLAB_CI="true", CI="true")
    run.assert_refused("add `id_tokens: {CCWEB_TOKEN: {aud: ccweb}}` to the job in .gitlab-ci.yml")


# The module itself: detection, token shape, URLs, and when the audience is asked for ------------------------

@pytest.mark.parametrize(("env", "platform"), [
    ({}, None),
    ({"CI": "true"}, None),
    ({"GITHUB_ACTIONS": "true"}, "GitHub Actions"),
    ({"GITLAB_CI": "true"}, "GitLab CI"),
    ({"CIRCLECI": "true"}, "CircleCI"),
    ({"BUILDKITE": "true"}, "Buildkite"),
    ({"BITBUCKET_BUILD_NUMBER": "12"}, "Bitbucket Pipelines"),
    ({"TF_BUILD": "True"}, "Azure Pipelines"),
    ({"GITHUB_ACTIONS": "false"}, None),
], ids=["nothing", "generic-ci", "github", "gitlab", "circleci", "buildkite", "bitbucket", "azure", "github-false"])
def test_detect(env: dict[str, str], platform: str | None) -> None:
    assert ci.detect(env) == platform


@pytest.mark.parametrize(("token", "ok"), [
    ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", True),
    ("a.b.c", True),
    ("a.b.", False),
    ("a.b", False),
    ("a.b.c.d.e", False),
    ("a.b.c\n", False),
    ("a .b.c", False),
    ("a.b+/.c", False),
    ("a.b.c==", False),
    ("a." + "b" * 70_000 + ".c", False),
], ids=["jwt", "minimal", "no-signature", "two-parts", "jwe", "newline", "space", "not-base64url", "padding",
        "oversized"])
def test_is_jwt(token: str, ok: bool) -> None:
    assert ci.is_jwt(token) is ok


def test_audience_is_asked_for_only_by_platforms_that_mint_for_it(sandbox: Sandbox) -> None:
    asked: list[int] = []

    def audience() -> str:
        asked.append(1)
        return "ccweb"

    token = mint(sandbox, "ccweb")
    for env in ({"CIRCLECI": "true", "CIRCLE_OIDC_TOKEN_V2": token},
                {"BITBUCKET_BUILD_NUMBER": "1", "BITBUCKET_STEP_OIDC_TOKEN": token},
                {"GITHUB_ACTIONS": "true"}, {"TF_BUILD": "True"}, {}):
        ci.platform_token(env, audience, 1.0, service=COMPANY)
    assert asked == []


@pytest.mark.parametrize("aud", ["", " ", "-x", "a b", "a\nb"], ids=["empty", "blank", "option", "space", "newline"])
def test_an_audience_no_platform_can_be_asked_for_is_refused_before_any_request(aud: str) -> None:
    env = {"ACTIONS_ID_TOKEN_REQUEST_URL": "http://127.0.0.1:9/x", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "t"}
    with pytest.raises(HelperError, match="audience"):
        ci.platform_token(env, lambda: aud, 1.0, service=COMPANY)


STS_AUDIENCES = ["sts.amazonaws.com", "STS.AmazonAWS.com", "https://sts.amazonaws.com", "https://sts.amazonaws.com/",
                 "sts.us-east-1.amazonaws.com", "sts-fips.us-gov-west-1.amazonaws.com", "sts.amazonaws.com.cn",
                 "sts.cn-north-1.amazonaws.com.cn", "sts.us-east-1.api.aws", "sts.eusc-de-east-1.amazonaws.eu",
                 "sts.amazonaws.com.", "https://sts.us-east-1.amazonaws.com./"]
NOT_STS = ["ccweb", "https://ccweb.example.com", "sts.amazonaws.com.evil.example", "evil-sts.amazonaws.com",
           "sts.example.com", "my.sts.amazonaws.com", "https://sts.amazonaws.com/ccweb", "sts.amazonaws.com:443",
           "sts.amazonaws.com.."]


@pytest.mark.parametrize(("aud", "sts"), [(a, True) for a in STS_AUDIENCES] + [(a, False) for a in NOT_STS],
                         ids=STS_AUDIENCES + NOT_STS)
def test_audiences_aws_sts_honours_are_known_by_their_whole_name(aud: str, sts: bool) -> None:
    assert ci.is_sts_audience(aud) is sts


@pytest.mark.parametrize("aud", ["sts.amazonaws.com", "sts.eu-west-1.amazonaws.com", "https://sts.amazonaws.com.cn"])
def test_an_audience_aws_sts_honours_is_never_asked_of_a_platform(sandbox: Sandbox, aud: str) -> None:
    """What a service (a partner's, or one whose discovery another user planted) could do with such a token:
    AssumeRoleWithWebIdentity at AWS for any role that trusts the platform. So the platform is not asked."""
    stand_in = TokenService(sandbox)
    with serve_json(stand_in.answer) as url, pytest.raises(HelperError) as raised:
        ci.platform_token(github_env(url + "/idtoken"), lambda: aud, 5.0, service=COMPANY)
    assert raised.value.message == (
        f"the ccweb service asks CI tokens to carry the audience {aud!r}, which AWS STS itself accepts: such a token "
        "could be replayed to AWS, so none is requested; its operators must give ccweb an audience of its own."
    )
    assert stand_in.requests == []


def test_the_gitlab_hint_never_proposes_an_audience_aws_sts_honours() -> None:
    hint = ci.missing_hint({"GITLAB_CI": "true", "CCWEB_URL": "https://ccweb.example.com"},
                           known=[Discovery("sts.amazonaws.com", (), ())])
    assert hint is not None and "sts.amazonaws.com" not in hint and WHERE_TO_READ in hint


WHERE_TO_READ = "<the audience from https://ccweb.example.com/.well-known/ccweb>"


@pytest.mark.parametrize(("audiences", "shown"), [
    ((), WHERE_TO_READ),
    (("ccweb-ci",), "ccweb-ci"),
    (("ccweb-ci", "ccweb-ci"), "ccweb-ci"),
    (("ccweb-ci", "other"), WHERE_TO_READ),
    (("",), WHERE_TO_READ),
], ids=["nothing-fetched", "one-service", "same-audience-twice", "two-audiences", "no-audience"])
def test_gitlab_hint_names_the_audience_only_when_one_is_known(audiences: tuple[str, ...], shown: str) -> None:
    known = [Discovery(audience, (), ()) for audience in audiences]
    assert ci.missing_hint({"GITLAB_CI": "true", "CCWEB_URL": "https://ccweb.example.com/"}, known=known) == (
        f"GitLab CI gives jobs an OIDC token only when asked: add `id_tokens: {{CCWEB_TOKEN: {{aud: {shown}}}}}` "
        "to the job in .gitlab-ci.yml."
    )


def test_no_hint_off_ci_platforms() -> None:
    assert ci.missing_hint({}) is None
    assert ci.missing_hint({"CI": "true"}) is None
    assert ci.missing_hint({"TF_BUILD": "True", "SYSTEM_OIDCREQUESTURI": "u", "SYSTEM_ACCESSTOKEN": "t",
                            "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID": "c"}) is None


# The audience is bound to the service: a partner's service that names the company's ----------------------

PARTNER_GIT = "git.partner.test"


@contextlib.contextmanager
def partner_of(company: Sandbox, home: Path, ci_audience: str | None = None) -> Iterator[PartnerService]:
    """The partner's service, and git configured in ``home`` for the company (``ccweb.url``) and for the
    partner's host (``credential.<url>.ccwebUrl``), as a job that works with both is."""
    partner = PartnerService(company, PARTNER_GIT, ci_audience)
    with serve_app(partner) as url:
        partner.url = url
        (home / ".gitconfig").write_text(f"[ccweb]\n\turl = {company.api_url}\n"
                                         f'[credential "https://{PARTNER_GIT}"]\n\tccwebUrl = {url}\n')
        yield partner


def partner_attrs() -> str:
    return f"protocol=https\nhost={PARTNER_GIT}\npath=v1/repos/app\n\n"


def company_attrs(company: Sandbox) -> str:
    return f"protocol=http\nhost={company.git_host}\npath=v1/repos/demo\n\n"


def test_a_partner_naming_the_company_s_address_as_its_ci_audience_gets_no_job_token(company: Sandbox,
                                                                                     home: Path) -> None:
    stand_in = TokenService(company)
    with partner_of(company, home) as partner, serve_json(stand_in.answer) as base:
        env = github_env(base + "/idtoken")
        refused = helper(home, partner_attrs(), **env)
        answered = helper(home, company_attrs(company), **env)
    refused.assert_refused(
        f"the ccweb service at {partner.url} asks for CI tokens meant for another address ({company.api_url!r}), so "
        "none is requested: a token whose audience is a service's URL is given to that service only."
    )
    assert partner.authorizations == [], "the partner received no token"
    answered.assert_answered()  # the company's own address is its own audience
    [request] = stand_in.requests
    assert request["query"]["audience"] == [company.api_url], "GitHub was asked on behalf of the company only"
    run_outputs = refused.stdout + refused.stderr + answered.stdout + answered.stderr
    assert not any(token in run_outputs for token in stand_in.issued)


def test_a_plain_name_ci_audience_still_binds_to_no_service(company: Sandbox, home: Path) -> None:
    """Legacy: a plain name is asked for on behalf of any service that publishes it (the residual risk that
    docs/ci.md's recommendation of the service's URL removes). The partner grants nothing here."""
    stand_in = TokenService(company)
    with partner_of(company, home, ci_audience="ccweb") as partner, serve_json(stand_in.answer) as base:
        run = helper(home, partner_attrs(), **github_env(base + "/idtoken"))
    run.assert_refused("No ccweb rule grants")
    assert [r["query"]["audience"] for r in stand_in.requests] == [["ccweb"]]
    assert partner.authorizations == ["Bearer " + t for t in stand_in.issued]


SERVICE = "https://ccweb.example.com/team"
SAME_ADDRESS = ["https://ccweb.example.com/team", "HTTPS://CCWEB.Example.com/team/", "https://ccweb.example.com:443/team"]
OTHER_ADDRESSES = ["https://ccweb.acme.example/team", "api://AzureADTokenExchange", "http://ccweb.example.com/team",
                   "https://ccweb.example.com:8443/team", "https://ccweb.example.com/Team", "https://ccweb.example.com",
                   "https://ccweb.example.com/team/more", "https://ccweb.example.com.evil.example/team",
                   "https://u@ccweb.example.com/team", "https://ccweb.example.com/team?x",
                   "https://ccweb.example.com/team#x", "https://ccweb.example.com:x/team"]


@pytest.mark.parametrize("aud", SAME_ADDRESS, ids=["same", "case-and-slash", "default-port"])
def test_a_url_ci_audience_naming_the_service_is_asked_for_as_written(company: Sandbox, aud: str) -> None:
    stand_in = TokenService(company)
    with serve_json(stand_in.answer) as url:
        found = ci.platform_token(github_env(url + "/idtoken"), lambda: aud, 30.0, service=SERVICE)
    assert found is not None and found.token == stand_in.issued[0]
    assert [r["query"]["audience"] for r in stand_in.requests] == [[aud]]


@pytest.mark.parametrize("aud", OTHER_ADDRESSES, ids=["other-host", "azure", "scheme", "port", "path-case", "no-path",
                                                      "longer-path", "suffix-host", "userinfo", "query", "fragment",
                                                      "bad-port"])
def test_a_url_ci_audience_of_another_address_is_never_asked_for(company: Sandbox, home: Path, aud: str) -> None:
    stand_in = TokenService(company)
    agent = home / "bin"
    agent.mkdir()
    (agent / "buildkite-agent").write_text(f"#!/bin/sh\necho called > {agent}/called\nexit 3\n")
    (agent / "buildkite-agent").chmod(0o755)
    with serve_json(stand_in.answer) as url:
        for env in (github_env(url + "/idtoken"), {"BUILDKITE": "true", "PATH": str(agent)}):
            with pytest.raises(HelperError) as raised:
                ci.platform_token(env, lambda: aud, 30.0, service=SERVICE)
            assert raised.value.message == ci.ELSEWHERE.format(service=SERVICE, audience=aud)
    assert stand_in.requests == [] and not (agent / "called").exists(), "no platform was asked"


# Tokens given to the helper: a token made for one service's address is sent to that service only ------------

def job_token(company: Sandbox, aud: str | list[str]) -> str:
    return company.issuer.mint({"sub": "project_path:acme/app:ref_type:branch:ref:main", **DEMO_USERS["alice"],
                                "aud": aud}, ttl=600)


@pytest.mark.parametrize("given", ["CCWEB_TOKEN", "CCWEB_TOKEN_FILE", "gitlab-id_tokens", "BITBUCKET_STEP_OIDC_TOKEN"])
def test_a_token_for_the_company_s_address_is_not_sent_to_the_partner(company: Sandbox, home: Path,
                                                                      given: str) -> None:
    token = job_token(company, [company.api_url, "https://ccweb.acme.example"])
    path = home / "token"
    path.write_text(token + "\n")
    env = {
        "CCWEB_TOKEN": {"CCWEB_TOKEN": token},
        "CCWEB_TOKEN_FILE": {"CCWEB_TOKEN_FILE": str(path)},
        "gitlab-id_tokens": {"GITLAB_CI": "true", "CI": "true", "CCWEB_TOKEN": token},
        "BITBUCKET_STEP_OIDC_TOKEN": {"BITBUCKET_BUILD_NUMBER": "7", "CI": "true", "BITBUCKET_STEP_OIDC_TOKEN": token},
    }[given]
    with partner_of(company, home) as partner:
        refused = helper(home, partner_attrs(), **env)
        answered = helper(home, company_attrs(company), **env)
    source = f"the token file {path} named by CCWEB_TOKEN_FILE" if given == "CCWEB_TOKEN_FILE" else (
        "BITBUCKET_STEP_OIDC_TOKEN" if given.startswith("BITBUCKET") else "CCWEB_TOKEN")
    refused.assert_refused(
        f"{source} holds a token issued for another service's address ({company.api_url!r}, "
        f"'https://ccweb.acme.example'), not for the ccweb service at {partner.url}, so it was not sent."
    )
    assert partner.authorizations == [], "the partner received no Authorization header"
    refused.assert_secret_free(token, token.split(".")[1])
    answered.assert_answered()


@pytest.mark.parametrize("aud", [["ccweb"], ["https://ccweb.acme.example", "ccweb"], "partner-address"],
                         ids=["plain-name", "a-plain-name-among-urls", "the-partner-s-own-address"])
def test_a_token_a_service_may_be_sent_is_sent(company: Sandbox, home: Path, aud: list[str] | str) -> None:
    with partner_of(company, home) as partner:
        token = job_token(company, partner.url + "/" if aud == "partner-address" else aud)
        run = helper(home, partner_attrs(), CCWEB_TOKEN=token)
    run.assert_refused("The OIDC token was refused")  # the partner trusts none of these: it judged the token
    assert partner.authorizations == ["Bearer " + token]


@pytest.mark.parametrize("token", ["opaque-token", "a.bm90LWpzb24.c", "a." + "eyJhdWQiOjF9" + ".c", "a.W10.c"],
                         ids=["not-a-jwt", "payload-not-json", "aud-not-a-string", "payload-a-list"])
def test_a_token_whose_audience_cannot_be_read_is_left_to_the_service(company: Sandbox, home: Path,
                                                                      token: str) -> None:
    with partner_of(company, home) as partner:
        run = helper(home, partner_attrs(), CCWEB_TOKEN=token)
    run.assert_refused("The OIDC token was refused")
    assert partner.authorizations == ["Bearer " + token]
