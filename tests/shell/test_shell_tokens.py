"""Where the POSIX sh helper finds its token, and where a token never goes: not on any command line (``ps`` shows
those to every user), not into the environment of any program it starts, not to a service it was not made for,
and never asked of a CI platform for an audience AWS STS accepts or another service's address."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shell.shells import CREDENTIAL, ShellHelper, TextService, jwt
from support import Asked, serve_json

HOST = "git-codecommit.us-east-1.amazonaws.com"
REQUEST_TOKEN = "PLANTED-request-token-7c41"
SHELL_BOOKKEEPING = {"PWD", "OLDPWD", "SHLVL", "_"}
"""Variables a shell itself sets for the programs it starts; nothing the helper chose."""


def assert_nowhere_but_the_request(helper: ShellHelper, given: dict[str, str], *secrets: str,
                                   bookkeeping: frozenset[str] = frozenset()) -> None:
    """No secret on any tool's command line, and curl started with the environment it was given: nothing added
    or changed but the shell's own bookkeeping (and ``bookkeeping``), so no secret in it that was not there
    already."""
    lines = helper.command_lines()
    assert "curl -q --config -" in lines
    for secret in secrets:
        assert secret not in lines
    environments = helper.curl_environments()
    assert environments
    for environment in environments:
        changed = {k for k, v in environment.items() if given.get(k) != v} - SHELL_BOOKKEEPING - bookkeeping
        assert changed == set(), changed
        for secret in secrets:
            assert not any(secret in value for key, value in environment.items() if given.get(key) != value)


def test_a_planted_token_file_is_sent_and_shown_to_no_one(shell_helper: ShellHelper, tmp_path: Path) -> None:
    token = jwt({"aud": "ccweb", "sub": "PLANTED-subject"}, signature="PLANTEDsignature0")
    token_file = tmp_path / "token"
    token_file.write_text(token)  # no newline at the end, as Kubernetes writes it
    service = TextService()
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN_FILE=str(token_file))
        result = shell_helper.get(env, HOST)
    assert (result.returncode, result.stdout) == (0, CREDENTIAL), result.stderr
    assert service.asked[0].headers["Authorization"] == f"Bearer {token}"  # it was used...
    assert_nowhere_but_the_request(shell_helper, env, token)  # ...and seen nowhere else
    assert token not in result.stderr


@dataclass
class GitHub:
    """A stand-in of GitHub's ACTIONS_ID_TOKEN_REQUEST_URL: checks the request token, mints for the audience."""

    audiences: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    def answer(self, asked: Asked) -> tuple[int, dict[str, Any]]:
        if asked.headers.get("Authorization") != "bearer " + REQUEST_TOKEN:
            return 401, {"message": "Bad credentials"}
        audience = parse_qs(urlsplit(asked.path).query).get("audience", [""])[0]
        self.audiences.append(audience)
        self.issued.append(jwt({"aud": audience, "sub": "repo:acme/app"}, signature="PLANTEDminted"))
        return 200, {"count": 1, "value": self.issued[-1]}


@pytest.fixture
def github() -> GitHub:
    return GitHub()


def actions_env(helper: ShellHelper, home: Path, service_url: str, github_url: str) -> dict[str, str]:
    return helper.env(home, CCWEB_URL=service_url, CI="true", GITHUB_ACTIONS="true",
                      ACTIONS_ID_TOKEN_REQUEST_URL=f"{github_url}/_apis/idtoken?api-version=2.0",
                      ACTIONS_ID_TOKEN_REQUEST_TOKEN=REQUEST_TOKEN)


def test_github_actions_is_asked_for_the_service_s_own_url(shell_helper: ShellHelper, tmp_path: Path,
                                                            github: GitHub) -> None:
    service = TextService()
    with service.serving() as url, serve_json(github.answer) as github_url:
        service.discovery = f"audience={url}/\n"  # the service's own URL, as docs/ci.md recommends
        env = actions_env(shell_helper, tmp_path / "home", url, github_url)
        result = shell_helper.get(env, HOST)
    assert (result.returncode, result.stdout) == (0, CREDENTIAL), result.stderr
    assert github.audiences == [f"{url}/"]
    assert service.asked[-1].headers["Authorization"] == f"Bearer {github.issued[0]}"
    assert_nowhere_but_the_request(shell_helper, env, github.issued[0], REQUEST_TOKEN)


@pytest.mark.parametrize(("audience", "sentence"), [
    ("sts.amazonaws.com", "asks CI tokens to carry the audience 'sts.amazonaws.com', which AWS STS itself accepts"),
    ("https://STS.us-east-1.amazonaws.com/", "which AWS STS itself accepts"),
    ("https://ccweb.example.com", "asks for CI tokens meant for another address ('https://ccweb.example.com'), so "
     "none is requested"),
    ("", "did not say which audience CI tokens must carry"),
], ids=["sts", "sts-regional-url", "another-address", "none"])
def test_github_actions_is_not_asked_for_an_audience_that_could_be_replayed(
    shell_helper: ShellHelper, tmp_path: Path, github: GitHub, audience: str, sentence: str,
) -> None:
    service = TextService(discovery=f"audience={audience}\n")
    with service.serving() as url, serve_json(github.answer) as github_url:
        result = shell_helper.get(actions_env(shell_helper, tmp_path / "home", url, github_url), HOST)
    assert (result.returncode, result.stdout) == (1, "quit=1\n")
    assert sentence in result.stderr
    assert github.audiences == []  # GitHub was not asked
    assert "POST /v1/git-credential" not in service.paths()


@pytest.mark.parametrize("variable", ["CCWEB_TOKEN", "CIRCLE_OIDC_TOKEN_V2", "BITBUCKET_STEP_OIDC_TOKEN"])
def test_a_token_made_for_other_services_addresses_is_not_sent(shell_helper: ShellHelper, tmp_path: Path,
                                                               variable: str) -> None:
    token = jwt({"aud": ["https://a.example.com", "https://b.example.com/x"], "sub": "job"})
    service = TextService()
    with service.serving() as url:
        result = shell_helper.get(shell_helper.env(tmp_path / "home", CCWEB_URL=url, **{variable: token}), HOST)
    assert (result.returncode, result.stdout) == (1, "quit=1\n")
    assert (f"ccweb: {variable} holds a token issued for another service's address ('https://a.example.com', "
            f"'https://b.example.com/x'), not for the ccweb service at {url}, so it was not sent.") in result.stderr
    assert service.asked == []


@pytest.mark.parametrize("audience", ["ccweb", "{url}", "{url}/", "{upper}:{port}/"],
                         ids=["plain-name", "own-url", "trailing-slash", "case-and-port"])
def test_a_token_for_this_service_or_a_plain_name_is_sent(shell_helper: ShellHelper, tmp_path: Path,
                                                          audience: str) -> None:
    service = TextService()
    with service.serving() as url:
        port = url.rsplit(":", 1)[1]
        aud = audience.format(url=url, upper=url.rsplit(":", 1)[0].upper(), port=port)
        token = jwt({"aud": [aud, "https://other.example.com"], "sub": "job"})
        result = shell_helper.get(shell_helper.env(tmp_path / "home", CCWEB_URL=url, CIRCLE_OIDC_TOKEN_V2=token),
                                  HOST)
    assert (result.returncode, result.stdout) == (0, CREDENTIAL), result.stderr
    assert service.asked[0].headers["Authorization"] == f"Bearer {token}"
