"""End to end in an emulated GitHub Actions job: the real git binary → ccweb-helper → a loopback stand-in for
GitHub's OIDC token service (asked for the audience the service's discovery names) → ccweb → the sandbox's
signature-checking git server. Nothing is configured but the service URL, as in a real workflow. A service that
names its own URL as its CI audience (as docs/ci.md recommends) gets the job's token; a partner's service that
names the company's URL as its own gets none, and GitHub is not even asked."""

from __future__ import annotations

import contextlib
import http.server
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ccweb.sandbox.dev import Sandbox, helper_command
from ccweb.sandbox.issuer import DEMO_USERS
from support import Asked, PartnerService, clean_env, serve_http, serve_json
from support import serve as serve_app

ROOT = Path(__file__).resolve().parents[2]
REQUEST_TOKEN = "PLANTED-actions-request-token-0c7e2b94"


class GitHubTokenService:
    """GitHub's ``ACTIONS_ID_TOKEN_REQUEST_URL``: checks the request token, mints for the asked audience."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.audiences: list[str] = []
        self.issued: list[str] = []

    def answer(self, asked: Asked) -> tuple[int, dict[str, Any]]:
        if asked.headers.get("Authorization") != "bearer " + REQUEST_TOKEN:
            return 401, {"message": "Bad credentials"}
        audience = parse_qs(urlsplit(asked.path).query).get("audience", [""])[0]
        self.audiences.append(audience)
        token = self.sandbox.issuer.mint({
            **DEMO_USERS["alice"], "aud": audience or "https://github.com/acme",
            "sub": "repo:acme/app:ref:refs/heads/main", "repository": "acme/app", "ref": "refs/heads/main",
            "job_workflow_ref": "acme/app/.github/workflows/ci.yml@refs/heads/main",
        }, ttl=300)
        self.issued.append(token)
        return 200, {"count": 1, "value": token}


@contextlib.contextmanager
def serve(service: GitHubTokenService) -> Iterator[str]:
    with serve_json(service.answer) as url:
        yield f"{url}/_apis/idtoken?api-version=2.0"


def job_env(home: Path, sandbox: Sandbox, **actions: str) -> dict[str, str]:
    env = clean_env()
    askpass = home / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho prompted >> {home}/prompted\nexit 1\n")
    askpass.chmod(0o700)
    env.update({
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_ASKPASS": str(askpass), "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "CI", "GIT_AUTHOR_EMAIL": "ci@example.com",
        "GIT_COMMITTER_NAME": "CI", "GIT_COMMITTER_EMAIL": "ci@example.com",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "helper"), str(ROOT / "service")]),
        "CI": "true", "GITHUB_ACTIONS": "true", "RUNNER_OS": "Linux",
        **actions,
    })
    for args in (["credential.helper", ""], ["--add", "credential.helper", helper_command()],
                 ["credential.useHttpPath", "true"], ["ccweb.url", sandbox.api_url]):
        subprocess.run(["git", "config", "--global", *args], env=env, check=True)
    return env


def git(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, check=False)


def test_clone_and_push_from_an_actions_job_with_id_token_write(sandbox: Sandbox, tmp_path: Path) -> None:
    service = GitHubTokenService(sandbox)
    with serve(service) as url:
        env = job_env(tmp_path, sandbox, ACTIONS_ID_TOKEN_REQUEST_URL=url, ACTIONS_ID_TOKEN_REQUEST_TOKEN=REQUEST_TOKEN)
        work = tmp_path / "app"
        cloned = git(["clone", sandbox.repo_url("demo"), str(work)], env)
        assert cloned.returncode == 0, cloned.stderr
        assert (work / "README.md").exists()
        git(["commit", "--allow-empty", "-m", "built by CI"], env, cwd=work)
        pushed = git(["push", "origin", "HEAD"], env, cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    assert service.audiences and set(service.audiences) == {"ccweb"}  # the audience from /.well-known/ccweb
    session = next(call for call in reversed(sandbox.sts.calls) if "alice" in call.source_identity)
    assert "codecommit:GitPush" in (session.policy or "")
    assert not (tmp_path / "prompted").exists()
    for output in (cloned.stdout + cloned.stderr, pushed.stdout + pushed.stderr):
        assert REQUEST_TOKEN not in output
        assert not any(token in output for token in service.issued)


def test_a_job_without_id_token_permission_stops_with_what_to_add(sandbox: Sandbox, tmp_path: Path) -> None:
    env = job_env(tmp_path, sandbox)  # GitHub sets no ACTIONS_ID_TOKEN_REQUEST_* without `id-token: write`
    cloned = git(["clone", sandbox.repo_url("demo"), str(tmp_path / "app")], env)
    assert cloned.returncode != 0
    assert 'ccweb: no OIDC token found: GitHub Actions gives this job no OIDC token: add "permissions: id-token: ' \
           'write" to the job' in cloned.stderr
    assert not (tmp_path / "prompted").exists()
    assert "Username for" not in cloned.stderr


@contextlib.contextmanager
def partner_git_host() -> Iterator[str]:
    """The partner's git server, as git first meets it: every request needs a password."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="partner"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    with serve_http(Handler) as url:
        yield url.removeprefix("http://")


def test_a_job_s_token_goes_to_the_service_whose_url_it_names_and_no_partner_naming_it(
    company: Sandbox, tmp_path: Path,
) -> None:
    service = GitHubTokenService(company)
    with serve(service) as url, partner_git_host() as git_host:
        partner = PartnerService(company, git_host)
        with serve_app(partner) as partner_url:
            env = job_env(tmp_path, company, ACTIONS_ID_TOKEN_REQUEST_URL=url,
                          ACTIONS_ID_TOKEN_REQUEST_TOKEN=REQUEST_TOKEN)
            subprocess.run(["git", "config", "--global", f"credential.http://{git_host}.ccwebUrl", partner_url],
                           env=env, check=True)
            cloned = git(["clone", company.repo_url("demo"), str(tmp_path / "app")], env)
            asked = list(service.audiences)
            fetched = git(["ls-remote", f"http://{git_host}/v1/repos/partner-app"], env)
    assert cloned.returncode == 0, cloned.stderr
    assert asked and set(asked) == {company.api_url}, "the company's own URL is the audience it asked for"
    assert fetched.returncode != 0
    assert (f"ccweb: the ccweb service at {partner_url} asks for CI tokens meant for another address "
            f"({company.api_url!r}), so none is requested") in fetched.stderr
    assert service.audiences == asked, "GitHub was not asked on the partner's behalf"
    assert partner.authorizations == [], "the partner received no token"
    assert not (tmp_path / "prompted").exists()
