"""``ccweb-helper grc``: the console's GRC URLs parsed, their region and endpoint chosen (pure, tables of named
cases), and the command's edges: one ``ccweb:`` sentence and exit 128 on failure, ``git remote-https`` else,
with the service's discovery document read from a loopback stand-in and kept as ``get`` keeps it."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ccweb_helper import discovery, grc, programs
from ccweb_helper.client import HelperError, ServiceURL, parse_service_url
from ccweb_helper.discovery import Discovery, Grc
from ccweb_helper.hosts import parse_codecommit_host
from support import Asked, home_env, serve_json

SERVICE = parse_service_url("https://ccweb.example.com", "CCWEB_URL")
FIPS = "git-codecommit-fips.us-east-1.amazonaws.com"
VPCE = "vpce-0123456789abcdef0-abcdefgh.git-codecommit.eu-west-1.vpce.amazonaws.com"
PRIVATE = "git.internal.example.com:8443"  # one of the service's git endpoints


@pytest.mark.parametrize(("address", "region", "repository"), [
    ("us-east-2://MyRepo", "us-east-2", "MyRepo"),
    ("us-east-2://profile@MyRepo", "us-east-2", "MyRepo"),
    ("us-gov-west-1://my.repo_1-x", "us-gov-west-1", "my.repo_1-x"),
    ("cn-north-1://demo/", "cn-north-1", "demo"),
    ("codecommit://MyRepo", None, "MyRepo"),
    ("codecommit://demo-profile@MyRepo", None, "MyRepo"),
    ("codecommit://a@b@MyRepo", None, "MyRepo"),
    ("codecommit://" + "r" * 100, None, "r" * 100),
], ids=["region", "region-profile", "gov", "china-slash", "no-region", "no-region-profile", "two-ats", "longest"])
def test_addresses_git_hands_over(address: str, region: str | None, repository: str) -> None:
    parsed = grc.parse_address(address)
    assert (parsed.region, parsed.repository) == (region, repository)


@pytest.mark.parametrize(("address", "sentence"), [
    ("nowhere://demo", "'nowhere' in codecommit::nowhere://demo is not an AWS region"),
    ("US-EAST-1://demo", "'US-EAST-1' in codecommit::US-EAST-1://demo is not an AWS region"),
    ("us-east-1:/demo", "codecommit::us-east-1:/demo is not a GRC URL"),
    ("us-east-1://", "does not end in a CodeCommit repository name"),
    ("us-east-1://profile@", "does not end in a CodeCommit repository name"),
    ("us-east-1://a/b", "codecommit::us-east-1://a/b does not end in a CodeCommit repository name"),
    ("codecommit://..", "codecommit://.. does not end in a CodeCommit repository name"),
    ("codecommit://my repo", "does not end in a CodeCommit repository name"),
    ("codecommit://" + "r" * 101, "does not end in a CodeCommit repository name"),
    ("codecommit://demo\x1b[31m", "codecommit://demo\\x1b[31m does not end"),
], ids=["region", "upper-case", "one-slash", "empty", "profile-only", "path", "dot-dot", "space", "too-long",
        "escape-shown-escaped"])
def test_what_is_not_a_grc_url_is_one_sentence(address: str, sentence: str) -> None:
    with pytest.raises(HelperError) as caught:
        grc.parse_address(address)
    assert sentence in caught.value.message
    assert "\x1b" not in caught.value.message and "\n" not in caught.value.message


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-2", "us-gov-west-1", "cn-north-1", "cn-northwest-1"])
def test_the_standard_host_is_the_codecommit_host_of_its_region(region: str) -> None:
    host = grc.standard_host(region)
    found = parse_codecommit_host(host)
    assert found is not None and found.region == region
    assert found.form == ("china" if region.startswith("cn-") else "standard")


class Services:
    """The ``service`` of ``resolve``: ``document`` (or None: none configured), and the URLs it was asked for."""

    def __init__(self, document: Discovery | None, error: str = "") -> None:
        self.document = document
        self.error = error
        self.asked: list[str] = []

    def __call__(self, url: str) -> tuple[ServiceURL, Discovery] | None:
        self.asked.append(url)
        if self.error:
            raise HelperError(self.error)
        return None if self.document is None else (SERVICE, self.document)


def announcing(region: str | None = None, **endpoints: str) -> Services:
    """A service announcing ``region`` and ``endpoints`` (region with ``_`` for ``-`` → URL prefix)."""
    pairs = tuple((name.replace("_", "-"), prefix) for name, prefix in endpoints.items())
    return Services(Discovery("ccweb", ("git.internal.example.com:8443", "127.0.0.1:8123"), (), Grc(region, pairs)))


NO_SERVICE = Services(None)

RESOLVED: list[Any] = [
    pytest.param("us-east-2://demo", {}, {}, lambda: NO_SERVICE,
                 "https://git-codecommit.us-east-2.amazonaws.com/v1/repos/demo", "the standard CodeCommit host",
                 id="standard"),
    pytest.param("cn-north-1://demo", {}, {}, lambda: NO_SERVICE,
                 "https://git-codecommit.cn-north-1.amazonaws.com.cn/v1/repos/demo", "the standard CodeCommit host",
                 id="china"),
    pytest.param("us-east-1://p@demo", {}, {}, lambda: announcing(us_east_1=f"https://{FIPS}/v1/repos/"),
                 f"https://{FIPS}/v1/repos/demo", "grc.endpoints", id="service-fips"),
    pytest.param("eu-west-1://demo", {}, {}, lambda: announcing(eu_west_1=f"https://{VPCE}/v1/repos/"),
                 f"https://{VPCE}/v1/repos/demo", "grc.endpoints", id="service-vpc-endpoint"),
    pytest.param("us-east-1://demo", {}, {}, lambda: announcing(us_east_1=f"https://{PRIVATE}/v1/repos/"),
                 f"https://{PRIVATE}/v1/repos/demo", "grc.endpoints", id="service-git-endpoint"),
    pytest.param("us-east-1://demo", {}, {}, lambda: announcing(us_east_1="http://127.0.0.1:8123/v1/repos/"),
                 "http://127.0.0.1:8123/v1/repos/demo", "grc.endpoints", id="service-loopback-http"),
    pytest.param("us-west-2://demo", {}, {}, lambda: announcing(us_east_1=f"https://{FIPS}/v1/repos/"),
                 "https://git-codecommit.us-west-2.amazonaws.com/v1/repos/demo", "the standard CodeCommit host",
                 id="service-other-region"),
    pytest.param("us-east-1://demo", {"ccweb.us-east-1.endpoint": "git-codecommit-fips.us-east-1.amazonaws.com"}, {},
                 lambda: announcing(us_east_1="http://127.0.0.1:8123/v1/repos/"),
                 f"https://{FIPS}/v1/repos/demo", "git config ccweb.us-east-1.endpoint", id="git-config-wins"),
    pytest.param("us-east-1://demo", {"ccweb.us-east-1.endpoint": "127.0.0.1:8123"}, {}, lambda: NO_SERVICE,
                 "http://127.0.0.1:8123/v1/repos/demo", "git config", id="git-config-loopback-http"),
    pytest.param("us-east-1://demo", {"ccweb.us-east-1.endpoint": "Git.Example.com:8443"}, {}, lambda: NO_SERVICE,
                 "https://git.example.com:8443/v1/repos/demo", "git config", id="git-config-any-host"),
    pytest.param("codecommit://demo", {"ccweb.region": "eu-west-3"}, {"AWS_REGION": "ap-south-1"},
                 lambda: announcing("us-east-1"),
                 "https://git-codecommit.eu-west-3.amazonaws.com/v1/repos/demo", "standard", id="region-git-config"),
    pytest.param("codecommit://demo", {}, {"AWS_REGION": "ap-south-1"}, lambda: announcing("us-east-1"),
                 "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/demo", "standard", id="region-service"),
    pytest.param("codecommit://demo", {}, {"AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "eu-north-1"},
                 lambda: announcing(None), "https://git-codecommit.ap-south-1.amazonaws.com/v1/repos/demo",
                 "standard", id="region-aws-region"),
    pytest.param("codecommit://demo", {}, {"AWS_DEFAULT_REGION": "eu-north-1"}, lambda: NO_SERVICE,
                 "https://git-codecommit.eu-north-1.amazonaws.com/v1/repos/demo", "standard",
                 id="region-aws-default-region"),
    pytest.param("codecommit://demo", {}, {}, lambda: announcing("us-east-1", us_east_1=f"https://{FIPS}/v1/repos/"),
                 f"https://{FIPS}/v1/repos/demo", "grc.endpoints", id="region-and-endpoint-service"),
]


@pytest.mark.parametrize(("address", "config", "env", "service", "url", "source"), RESOLVED)
def test_region_and_endpoint(  # noqa: PLR0917 (one row of the table)
    address: str, config: dict[str, str], env: dict[str, str], service: Callable[[], Services], url: str, source: str,
) -> None:
    target = grc.resolve(grc.parse_address(address), config, env, service())
    assert target.url == url
    assert source in target.source


def test_git_config_alone_spares_the_service_its_question() -> None:
    services = announcing("us-east-1")
    config = {"ccweb.region": "us-east-1", "ccweb.us-east-1.endpoint": FIPS}
    assert grc.resolve(grc.parse_address("codecommit://demo"), config, {}, services).url.startswith(f"https://{FIPS}/")
    assert services.asked == []


def test_the_service_is_asked_once_per_remote_url_for_the_service_of_that_url() -> None:
    services = announcing("us-east-1")
    grc.resolve(grc.parse_address("codecommit://demo"), {}, {}, services)
    # First for the region (no URL yet: CCWEB_URL or ccweb.url), then for the endpoint of the repository's URL
    # (credential.<url>.ccwebUrl may name another service for it).
    assert services.asked == ["", "https://git-codecommit.us-east-1.amazonaws.com/v1/repos/demo"]


@pytest.mark.parametrize(("address", "config", "env", "service", "sentence"), [
    ("codecommit://demo", {}, {}, NO_SERVICE,
     "codecommit://demo names no region and none is configured: write codecommit::<region>://demo, or run "
     "`git config --global ccweb.region <region>`"),
    ("codecommit://demo", {"ccweb.region": "Ohio"}, {}, NO_SERVICE,
     "git config ccweb.region is 'Ohio', which is not an AWS region"),
    ("codecommit://demo", {}, {"AWS_REGION": "us east 1"}, NO_SERVICE, "AWS_REGION is 'us east 1', which is not"),
    ("codecommit://demo", {}, {}, announcing("mars-1"), "the ccweb service https://ccweb.example.com (grc.region) "
     "is 'mars-1', which is not an AWS region"),
    ("us-east-1://demo", {"ccweb.us-east-1.endpoint": "https://git.example.com"}, {}, NO_SERVICE,
     "git config ccweb.us-east-1.endpoint must be host[:port]"),
    ("us-east-1://demo", {"ccweb.us-east-1.endpoint": "*.example.com"}, {}, NO_SERVICE,
     "git config ccweb.us-east-1.endpoint must be host[:port]"),
    ("us-east-1://demo", {}, {}, announcing(us_east_1="https://git-codecommit.us-west-2.amazonaws.com/v1/repos/"),
     "names 'https://git-codecommit.us-west-2.amazonaws.com/v1/repos/' for the GRC URLs of us-east-1, which is a "
     "CodeCommit host of us-west-2; tell its operators, or set `git config --global ccweb.us-east-1.endpoint"),
    ("us-east-1://demo", {}, {}, announcing(us_east_1="https://git.attacker.example/v1/repos/"),
     "which is neither a CodeCommit host of us-east-1 nor one of the service's git endpoints"),
    ("us-east-1://demo", {}, {}, announcing(us_east_1="http://git.internal.example.com:8443/v1/repos/"),
     "which is plain http:// to a host other than loopback"),
    ("us-east-1://demo", {}, {}, announcing(us_east_1=f"https://{FIPS}/v1/repos/other/"),
     "which is not https://<host>/v1/repos/"),
    ("us-east-1://demo", {}, {}, announcing(us_east_1=f"https://user@{FIPS}/v1/repos/"), "does not name a host"),
    ("us-east-1://demo", {}, {}, Services(None, "cannot reach the ccweb service at https://ccweb.example.com."),
     "cannot reach the ccweb service"),
], ids=["no-region", "bad-git-config-region", "bad-aws-region", "bad-service-region", "git-config-url",
        "git-config-wildcard", "service-other-region", "service-other-host", "service-plain-http", "service-path",
        "service-userinfo", "service-unreachable"])
def test_what_cannot_be_resolved_is_one_sentence(address: str, config: dict[str, str], env: dict[str, str],
                                                  service: Services, sentence: str) -> None:
    with pytest.raises(HelperError) as caught:
        grc.resolve(grc.parse_address(address), config, env, service)
    assert sentence in caught.value.message


# --- the command -----------------------------------------------------------------------------------------


def record(commands: list[list[str]]) -> Callable[[list[str]], int]:
    """A ``become`` that notes the command instead of running it."""

    def become(command: list[str]) -> int:
        commands.append(command)
        return 0

    return become


@pytest.fixture
def person(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a person with an empty HOME; this process's too, for the git config reads that take
    it from there (the service URL, as ``get`` finds it)."""
    env = home_env(tmp_path)
    for name in ("HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_NOSYSTEM"):
        monkeypatch.setenv(name, env[name])
    for name in ("CCWEB_URL", "GIT_DIR", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    return env


def test_the_command_becomes_git_remote_https_for_the_service_endpoint(
    person: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Real git config and a loopback service; the discovery document is kept in the cache as ``get`` keeps it,
    and the next process (a new memory) finds ``grc`` there."""
    asked: list[str] = []
    document = {"audience": "ccweb", "git_endpoints": [], "login": [],
                "grc": {"region": "eu-west-1", "endpoints": {"eu-west-1": f"https://{VPCE}/v1/repos/"}}}

    def answer(request: Asked) -> tuple[int, dict[str, Any]]:
        asked.append(request.path)
        return 200, document

    became: list[list[str]] = []
    with serve_json(answer) as url:
        env = {**person, "CCWEB_URL": url, "CCWEB_CACHE_DIR": str(tmp_path / "cache")}
        for _ in range(2):
            monkeypatch.setattr(discovery, "_fetched", {})  # a new helper process
            err = io.StringIO()
            code = grc.run(["origin", "codecommit://profile@demo"], env, err, record(became))
            assert (code, err.getvalue()) == (0, "")
    assert became == [[programs.git(env), "remote-https", "origin", f"https://{VPCE}/v1/repos/demo"]] * 2
    assert asked == ["/.well-known/ccweb"]  # the second process read it from the cache
    kept = json.loads((tmp_path / "cache" / discovery.FILE_NAME).read_text())
    assert kept["version"] == discovery.FILE_VERSION == 2
    assert kept["services"][url]["document"]["grc"] == document["grc"]


def test_git_config_region_and_endpoint(person: dict[str, str], tmp_path: Path) -> None:
    """``ccweb.*`` read with git, no service configured."""
    env = person
    (tmp_path / ".gitconfig").write_text("[ccweb]\n\tregion = eu-west-1\n[ccweb \"eu-west-1\"]\n"
                                         "\tendpoint = git.internal.example.com:8443\n")
    became: list[list[str]] = []
    code = grc.run(["codecommit://demo", "codecommit://demo"], env, io.StringIO(), record(became))
    assert code == 0
    assert became == [[programs.git(env), "remote-https", "codecommit://demo",
                        "https://git.internal.example.com:8443/v1/repos/demo"]]


@pytest.mark.parametrize(("argv", "code", "first_line"), [
    (["origin", "nowhere://demo"], 128, "ccweb: 'nowhere' in codecommit::nowhere://demo is not an AWS region"),
    (["origin", "codecommit://demo"], 128, "ccweb: codecommit://demo names no region"),
    (["origin"], 2, "usage: ccweb-helper grc <remote> <address>"),
    (["--help"], 2, "usage: ccweb-helper grc <remote> <address>"),
], ids=["bad-region", "no-region", "one-argument", "help"])
def test_failures_are_one_sentence_and_git_is_not_run(person: dict[str, str], argv: list[str], code: int,
                                                      first_line: str) -> None:
    err = io.StringIO()
    became: list[list[str]] = []
    assert grc.run(argv, person, err, record(became)) == code
    assert err.getvalue().splitlines()[0].startswith(first_line)
    if code == 128:
        assert err.getvalue().count("\n") == 1
    assert became == []
