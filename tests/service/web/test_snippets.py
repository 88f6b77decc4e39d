"""The page's set-up and CI snippets: the same facts as docs/ci.md, this service's URL and CI audience where each
belongs (quoted so a shell or YAML reads them back exactly), and a first ``git clone`` of a repository the person
can reach."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccweb.config import parse_config
from ccweb.policy import Policy, compile_policy
from ccweb.routes import HELPER_PATH
from ccweb.shell_dist import SHELL_HELPER_PATH
from ccweb.web.snippets import (
    MAX_CLONE_DECISIONS,
    Clone,
    ci_platforms,
    first_clone,
    ps_word,
    setup_platforms,
    sh_word,
    without_python,
    yaml_scalar,
)
from webpage import ISSUER_URL, PEOPLE, ROLE, policy

DOCS = (Path(__file__).resolve().parents[3] / "docs" / "ci.md").read_text(encoding="utf-8")
EXAMPLE = "https://ccweb.example.com"
EXAMPLE_CLONE = "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/app"
PLATFORMS = ["github-actions", "gitlab", "circleci", "buildkite", "bitbucket", "azure-pipelines", "kubernetes"]


def test_every_platform_of_the_issue_has_its_snippet() -> None:
    assert [p.id for p in ci_platforms(EXAMPLE, EXAMPLE, EXAMPLE_CLONE)] == PLATFORMS


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_ci_snippets_and_claims_are_what_docs_ci_md_says(platform: str) -> None:
    [found] = [p for p in ci_platforms(EXAMPLE, EXAMPLE, EXAMPLE_CLONE) if p.id == platform]
    for block in found.blocks:
        assert block.code in DOCS, f"{block.id} is not in docs/ci.md:\n{block.code}"
    assert found.claims, "the claims to write a rule on"
    assert [claim for claim, _ in found.claims][:3] == ["`iss`", "`aud`", "`sub`"]
    for claim, example in found.claims:
        assert f"| {claim} | {example} |" in DOCS, f"{platform}: {claim} differs from docs/ci.md"


def test_the_no_python_line_is_docs_ci_md_s() -> None:
    assert without_python(EXAMPLE) in DOCS


URL = "https://git.corp.example:8443/tools/ccweb"
AUDIENCES = ["https://ccweb.corp.example", "ccweb", "it's: #odd, {aud}", 'a "quoted" one', "two\nlines", "a\x85b",
             "a\u2028b", "tab\tand  spaces "]


def yaml_blocks(audience: str) -> dict[str, Any]:
    return {block.id: yaml.safe_load(block.code) for p in ci_platforms(URL, audience, EXAMPLE_CLONE)
            for block in p.blocks if block.code.split(":", 1)[0].isidentifier()}


@pytest.mark.parametrize("audience", AUDIENCES)
def test_the_audience_and_url_land_where_each_belongs_read_back_exactly(audience: str) -> None:
    blocks = yaml_blocks(audience)
    assert blocks["ci-gitlab"]["clone"]["id_tokens"]["CCWEB_TOKEN"]["aud"] == audience
    pod = blocks["ci-kubernetes"]["spec"]
    assert pod["containers"][0]["env"][0] == {"name": "CCWEB_URL", "value": URL}
    assert pod["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"] == audience
    script = blocks["ci-gitlab"]["clone"]["script"]
    assert shlex.split(script[0])[2] == f"{URL}{HELPER_PATH}"
    assert shlex.split(script[3]) == ["ccweb-helper", "setup", "--url", URL]
    [circleci] = [p for p in ci_platforms(URL, audience, EXAMPLE_CLONE) if p.id == "circleci"]
    [mint] = [b.code for b in circleci.blocks if b.id == "ci-circleci-audience"]
    assert yaml.safe_load(shlex.split(mint.split("--claims ", 1)[1].removesuffix(')"'))[0]) == {"aud": audience}


def test_every_ci_snippet_installs_from_this_service_and_sets_it_up() -> None:
    for platform in ci_platforms(URL, "ccweb", EXAMPLE_CLONE):
        if platform.id == "kubernetes":
            continue  # the pod's image brings the helper; it names the service in CCWEB_URL
        code = "\n".join(b.code for b in platform.blocks)
        assert f"curl -fsSL {URL}{HELPER_PATH} -o ccweb-helper" in code, platform.id
        assert f"ccweb-helper setup --url {URL}" in code, platform.id
        assert f"git clone {EXAMPLE_CLONE}" in code, platform.id
    for platform in ci_platforms(URL, "the-audience", EXAMPLE_CLONE):
        code = "\n".join(b.code for b in platform.blocks)
        # GitHub and Buildkite: the helper asks for the audience itself; Azure's is fixed.
        assert ("the-audience" in code) == (platform.id not in ("github-actions", "buildkite", "azure-pipelines",
                                                                "bitbucket")), platform.id


@pytest.mark.parametrize(("value", "sh", "ps", "yml"), [
    ("https://ccweb.example.com", "https://ccweb.example.com", "https://ccweb.example.com",
     "https://ccweb.example.com"),
    ("http://[::1]:8700", "'http://[::1]:8700'", "'http://[::1]:8700'", '"http://[::1]:8700"'),
    ("https://x.example/a b", "'https://x.example/a b'", "'https://x.example/a b'", '"https://x.example/a b"'),
    ("https://x.example/it's", "'https://x.example/it'\"'\"'s'", "'https://x.example/it''s'",
     '"https://x.example/it\'s"'),
    ("https://x.example/$(id)", "'https://x.example/$(id)'", "'https://x.example/$(id)'",
     '"https://x.example/$(id)"'),
], ids=["plain", "ipv6", "space", "quote", "command"])
def test_values_are_quoted_for_the_shell_and_yaml_they_land_in(value: str, sh: str, ps: str, yml: str) -> None:
    assert (sh_word(value), ps_word(value), yaml_scalar(value)) == (sh, ps, yml)
    assert shlex.split(sh_word(value)) == [value]
    assert yaml.safe_load(f"key: {yaml_scalar(value)}") == {"key": value}


def compiled(**extra: Any) -> Policy:
    return compile_policy(parse_config(policy(**extra)))


def claims(user: str) -> dict[str, Any]:
    return {"iss": ISSUER_URL, **PEOPLE[user]}


@pytest.mark.parametrize(("extra", "user", "url", "placeholder"), [
    ({}, "alice", "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/demo", False),
    ({}, "bob", "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/demo", False),
    ({}, "mallory", "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/MyRepo", True),
    ({}, None, "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/MyRepo", True),
    ({"git_endpoints": [{"host": "127.0.0.1:8702", "region": "us-east-1"}]}, "bob",
     "http://127.0.0.1:8702/v1/repos/demo", False),
    ({"git_endpoints": [{"host": "git.example.com", "region": "eu-west-1"}]}, "bob",
     "https://git.example.com/v1/repos/demo", False),
    ({"grc": {"region": "us-west-2"}, "git_endpoints": [{"host": "git.example.com", "region": "eu-west-1"}]}, "bob",
     "https://git-codecommit.us-west-2.amazonaws.com/v1/repos/demo", False),
    ({"grc": {"region": "cn-north-1"}}, "alice", "https://git-codecommit.cn-north-1.amazonaws.com.cn/v1/repos/demo",
     False),
], ids=["alice", "bob", "mallory", "signed-out", "loopback-endpoint", "git-endpoint-region",
        "grc-region-first", "china"])
def test_the_first_clone_is_a_repository_the_person_can_reach(extra: dict[str, Any], user: str | None, url: str,
                                                              placeholder: bool) -> None:
    clone = first_clone(compiled(**extra), None if user is None else "corp", None if user is None else claims(user))
    assert (clone.url, clone.placeholder) == (url, placeholder)


def test_the_first_clone_takes_a_region_the_rule_names_and_skips_globs() -> None:
    rules = [{"name": "eu", "issuer": "corp", "claims": {"groups": "engineering"}, "role_arn": ROLE + "x",
              "repositories": ["app-*", "eu-west-1/app", "*/lib"], "access": "read"}]
    clone = first_clone(compile_policy(parse_config({**policy(), "rules": rules})), "corp", claims("alice"))
    assert clone == Clone("https://git-codecommit.eu-west-1.amazonaws.com/v1/repos/app", "app", "eu-west-1", False)


def test_a_suspended_person_is_offered_no_repository() -> None:
    deny = [{"claims": {"email": "alice@example.com"}}]
    assert first_clone(compiled(deny=deny), "corp", claims("alice")).placeholder


@pytest.mark.parametrize("login", [True, False])
def test_setup_installs_from_this_service_sets_it_up_and_clones(login: bool) -> None:
    clone = Clone("https://git-codecommit.us-east-1.amazonaws.com/v1/repos/demo", "demo", "us-east-1", False)
    unix, windows = setup_platforms(URL, clone, login=login)
    code = {b.id: b.code.splitlines() for p in (unix, windows) for b in p.blocks}
    assert shlex.split(code["setup-unix-download"][1])[2] == f"{URL}{HELPER_PATH}"
    assert code["setup-unix-download"][2] == f"python3 ~/.local/bin/ccweb-helper setup --url {URL}"
    assert shlex.split(code["setup-unix-sh"][1])[2] == f"{URL}{SHELL_HELPER_PATH}"
    assert code["setup-windows-download"][:2] == [
        f'curl.exe -fsSL {URL}{HELPER_PATH} -o "$HOME\\ccweb-helper"', f'py "$HOME\\ccweb-helper" setup --url {URL}']
    for lines in code.values():
        assert lines[-1] == f"git clone {clone.url}"
        assert any(f"setup --url {URL}" in line for line in lines)
    assert ("opens your browser to sign in" in unix.intro) == login
    assert ("`demo` (us-east-1) is a repository you can reach" in unix.intro)


TEAMS, NAMES_PER_TEAM = 200, 20


def large_policy() -> Policy:
    """The sandbox's rules after 200 teams' own: each team's group reads its 20 repositories, in three regions."""
    base = policy(git_endpoints=[{"host": "git1.example.com", "region": "eu-west-1"},
                                 {"host": "git2.example.com", "region": "eu-central-1"}])
    teams = [{"name": f"team-{i}", "issuer": "corp", "claims": {"groups": f"team-{i}"}, "role_arn": ROLE + "readers",
              "repositories": [f"team{i}-repo{j}" for j in range(NAMES_PER_TEAM)], "access": "read"}
             for i in range(TEAMS)]
    apps = {"name": "app-team", "issuer": "corp", "claims": {"groups": "app"}, "role_arn": ROLE + "app",
            "repositories": ["app-*"], "access": "write"}
    return compile_policy(parse_config({**base, "rules": [*teams, apps, *base["rules"]]}))


@pytest.mark.parametrize(("groups", "clone"), [
    ([], None),
    (["team-150"], "https://git1.example.com/v1/repos/team150-repo0"),
    (["engineering"], "https://git1.example.com/v1/repos/team0-repo0"),
    (["app"], None),
], ids=["granted-nothing", "a-team-member", "granted-everything", "granted-only-a-glob"])
def test_the_first_clone_asks_a_large_policy_a_bounded_number_of_questions(
        monkeypatch: pytest.MonkeyPatch, groups: list[str], clone: str | None) -> None:
    """A policy of hundreds of rules: a page render asks ``decide`` a handful of times (a few rules' names, then
    ``MyRepo``), never once per repository, region and rule; a person granted nothing costs one question."""
    large = large_policy()
    asked: list[object] = []
    decide = Policy.decide

    def counted(self: Policy, *args: Any) -> Any:
        asked.append(args[2])
        return decide(self, *args)

    monkeypatch.setattr(Policy, "decide", counted)
    found = first_clone(large, "corp", {**claims("mallory"), "groups": groups})
    assert (None if found.placeholder else found.url) == clone
    assert len(asked) <= 1 + MAX_CLONE_DECISIONS, f"{len(asked)} decisions for one page"
    assert asked[0] is None, "first what the person is granted at all"
    if not groups:
        assert len(asked) == 1, "granted nothing: no repository is tried"
