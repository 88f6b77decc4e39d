"""Which hosts get a credential: CodeCommit's own forms by anchored patterns, configured endpoints, nothing else."""

from __future__ import annotations

import pytest

from ccweb.config import parse_config
from ccweb.errors import InvalidRequest
from ccweb.targets import resolve
from ccweb_helper.hosts import is_loopback, parse_codecommit_host, parse_repository_path, split_host

ACCEPTED = [
    ("git-codecommit.us-east-2.amazonaws.com", "us-east-2", "standard", None),
    ("git-codecommit.us-east-2.amazonaws.com:443", "us-east-2", "standard", 443),
    ("GIT-CODECOMMIT.EU-WEST-1.AMAZONAWS.COM", "eu-west-1", "standard", None),
    ("git-codecommit.ap-southeast-3.amazonaws.com", "ap-southeast-3", "standard", None),
    ("git-codecommit.us-gov-west-1.amazonaws.com", "us-gov-west-1", "standard", None),
    ("git-codecommit-fips.us-east-1.amazonaws.com", "us-east-1", "fips", None),
    ("git-codecommit-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1", "fips", None),
    ("git-codecommit.cn-north-1.amazonaws.com.cn", "cn-north-1", "china", None),
    ("git-codecommit.cn-northwest-1.amazonaws.com.cn", "cn-northwest-1", "china", None),
    ("vpce-0123456789abcdef0-abcdefgh.git-codecommit.us-east-1.vpce.amazonaws.com", "us-east-1", "vpce", None),
    ("vpce-0123456789abcdef0-abcdefgh-us-east-1a.git-codecommit.us-east-1.vpce.amazonaws.com", "us-east-1", "vpce",
     None),
    ("vpce-0123456789abcdef0-abcdefgh.git-codecommit-fips.us-east-1.vpce.amazonaws.com", "us-east-1", "vpce-fips",
     None),
    ("vpce-0123456789abcdef0-abcdefgh-us-gov-west-1a.git-codecommit-fips.us-gov-west-1.vpce.amazonaws.com",
     "us-gov-west-1", "vpce-fips", None),
    ("vpce-0123456789abcdef0-abcdefgh.git-codecommit.cn-north-1.vpce.amazonaws.com.cn", "cn-north-1", "vpce-china",
     None),
    ("vpce-0123456789abcdef0-abcdefgh-cn-northwest-1a.git-codecommit.cn-northwest-1.vpce.amazonaws.com.cn",
     "cn-northwest-1", "vpce-china", None),
    ("vpce-01234567-abcdefgh.git-codecommit.eu-west-1.vpce.amazonaws.com:443", "eu-west-1", "vpce", 443),
]


@pytest.mark.parametrize(("host", "region", "form", "port"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_codecommit_hosts(host: str, region: str, form: str, port: int | None) -> None:
    parsed = parse_codecommit_host(host)
    assert parsed is not None
    assert (parsed.region, parsed.form, parsed.port) == (region, form, port)
    assert parsed.hostname == host.lower().split(":")[0]


LOOKALIKES = [
    "git-codecommit.us-east-1.amazonaws.com.evil.example",
    "git-codecommit.us-east-1.amazonaws.com.",
    "evil-git-codecommit.us-east-1.amazonaws.com",
    "evil.git-codecommit.us-east-1.amazonaws.com",
    "git-codecommit.us-east-1.amazonaws.co",
    "git-codecommit.us-east-1.amazonaws.com.cn.evil.example",
    "git-codecommit.us-east-1.evil-amazonaws.com",
    "git-codecommit.us-east-1-amazonaws.com",
    "git-codecommit.amazonaws.com",
    "git-codecommit..amazonaws.com",
    "git-codecommit.us-east-1.amazonaws.com@evil.example",
    "evil.example@git-codecommit.us-east-1.amazonaws.com",
    "git-codecommit.us-east-1.amazonaws.com/evil",
    "git-codecommit.us-east-1.amazonaws.com:99999",
    "git-codecommit.us-east-1.amazonaws.com:",
    "git-codecommit.us-east-1.amazonaws.com:http",
    "git-codecommit.us-east-1.amazonaws.com evil.example",
    "git-codecommit.us-east-1.amazonaws.com\nevil.example",
    "git-codecommit.us-ea\u017ft-1.amazonaws.com",
    "git-codecommit.us-east-1.amazonaws.com\u3002evil.example",
    "git-codecommit.us-east-1.amazonaws.com.cn",
    "vpce-0123456789abcdef0-abcdefgh.git-codecommit.us-east-1.vpce.amazonaws.com.evil.example",
    "vpce-x.git-codecommit.us-east-1.vpce.amazonaws.com",
    "git-codecommit-fips.us-east-1.amazonaws.com.evil.example",
    "",
    "169.254.169.254",
]
NOT_AWS = {  # well-formed names of endpoints AWS does not have
    "fips-in-china": "git-codecommit-fips.cn-north-1.amazonaws.com.cn",
    "fips-vpce-in-china": "vpce-0123456789abcdef0-abcdefgh.git-codecommit-fips.cn-north-1.vpce.amazonaws.com.cn",
    "china-region-outside-china": "git-codecommit.cn-north-1.amazonaws.com",
    "china-region-fips": "git-codecommit-fips.cn-north-1.amazonaws.com",
    "china-region-vpce-outside-china": "vpce-0123456789abcdef0-abcdefgh.git-codecommit.cn-north-1.vpce.amazonaws.com",
    "other-region-in-china": "git-codecommit.us-east-1.amazonaws.com.cn",
    "other-region-vpce-in-china": "vpce-0123456789abcdef0-abcdefgh.git-codecommit.us-east-1.vpce.amazonaws.com.cn",
    "zone-of-another-region": "vpce-0123456789abcdef0-abcdefgh-us-west-2a.git-codecommit.us-east-1.vpce.amazonaws.com",
    "china-zone-outside-china":
        "vpce-0123456789abcdef0-abcdefgh-cn-north-1a.git-codecommit.cn-north-1.vpce.amazonaws.com",
    "port-8443": "git-codecommit.us-east-1.amazonaws.com:8443",
    "port-80": "git-codecommit.us-east-1.amazonaws.com:80",
    "port-0443": "git-codecommit.us-east-1.amazonaws.com:0443",
    "vpce-port-8443": "vpce-0123456789abcdef0-abcdefgh.git-codecommit.us-east-1.vpce.amazonaws.com:8443",
}


@pytest.mark.parametrize("host", LOOKALIKES)
def test_lookalikes_are_not_codecommit(host: str) -> None:
    assert parse_codecommit_host(host) is None


@pytest.mark.parametrize("host", list(NOT_AWS.values()), ids=list(NOT_AWS))
def test_endpoints_aws_does_not_have_are_not_codecommit(host: str) -> None:
    """FIPS in China, a region in the other partition, a zone of another region, a port CodeCommit does not
    listen on (and git would not route to ccweb-helper: tests/helper/test_host_table.py)."""
    assert parse_codecommit_host(host) is None


@pytest.mark.parametrize(("path", "name"), [
    ("v1/repos/MyDemoRepo", "MyDemoRepo"),
    ("/v1/repos/MyDemoRepo", "MyDemoRepo"),
    ("v1/repos/repo.with-dots_1/", "repo.with-dots_1"),
    ("v1/repos/" + "a" * 100, "a" * 100),
    ("v1/repos/" + "a" * 101, None),
    ("v1/repos/", None),
    ("v1/repos/a/b", None),
    ("v1/repos/..", None),
    ("v1/repos/.", None),
    ("v2/repos/a", None),
    ("v1/repos/a%2Fb", None),
    ("v1/repos/a b", None),
    ("v1/repos/ä", None),
    ("x/v1/repos/a", None),
    ("v1/repos/a?x=1", None),
], ids=["plain", "leading-slash", "trailing-slash", "100-chars", "101-chars", "empty-name", "extra-segment",
        "dot-dot", "dot", "other-version", "encoded-slash", "space", "non-ascii", "prefix", "query"])
def test_repository_paths(path: str, name: str | None) -> None:
    assert parse_repository_path(path) == name


@pytest.mark.parametrize(("host", "expected"), [
    ("Example.COM:8443", ("example.com", 8443)),
    ("[::1]:8080", ("[::1]", 8080)),
    ("127.0.0.1", ("127.0.0.1", None)),
])
def test_split_host(host: str, expected: tuple[str, int | None]) -> None:
    assert split_host(host) == expected


@pytest.mark.parametrize("host", ["", "a/b", "u@h", "h:0", "h:65536", "h:-1", "[::1", "h:1:2"])
def test_split_host_refuses(host: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the message is internal; the refusal is the point)
        split_host(host)


@pytest.mark.parametrize(("name", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("128.0.0.1", False), ("127.0.0.1.evil.example", False), ("localhost.evil.example", False), ("127.0.0.256", False),
    ("0.0.0.0", False),  # noqa: S104
])
def test_is_loopback(name: str, loopback: bool) -> None:
    assert is_loopback(name) is loopback


CONFIG = parse_config({
    "issuers": [{"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]}],
    "git_endpoints": [{"host": "git.internal.example.com:8443", "region": "eu-west-1"},
                      {"host": "127.0.0.1:9418", "region": "us-east-1"}],
})


@pytest.mark.parametrize(("protocol", "host", "path", "target"), [
    ("https", "git-codecommit.us-east-2.amazonaws.com", "v1/repos/r", ("git-codecommit.us-east-2.amazonaws.com",
                                                                       "us-east-2", "r")),
    ("https", "git-codecommit.us-east-2.amazonaws.com:443", "/v1/repos/r", ("git-codecommit.us-east-2.amazonaws.com",
                                                                            "us-east-2", "r")),
    ("https", "GIT.internal.example.com:8443", "v1/repos/r", ("git.internal.example.com", "eu-west-1", "r")),
    ("http", "127.0.0.1:9418", "v1/repos/r", ("127.0.0.1", "us-east-1", "r")),
], ids=["codecommit", "codecommit-port", "endpoint", "loopback-http"])
def test_resolve(protocol: str, host: str, path: str, target: tuple[str, str, str]) -> None:
    resolved = resolve(CONFIG, protocol, host, path)
    assert (resolved.hostname, resolved.region, resolved.repository) == target
    assert resolved.path == f"/v1/repos/{target[2]}"


@pytest.mark.parametrize(("protocol", "host", "path", "sentence"), [
    ("https", "git-codecommit.us-east-1.amazonaws.com.evil.example", "v1/repos/r", "neither an AWS CodeCommit host"),
    ("https", "git.internal.example.com", "v1/repos/r", "neither an AWS CodeCommit host"),
    ("http", "git-codecommit.us-east-1.amazonaws.com", "v1/repos/r", "plain http"),
    ("ssh", "git-codecommit.us-east-1.amazonaws.com", "v1/repos/r", "not supported"),
    ("https", "git-codecommit.us-east-1.amazonaws.com", None, "useHttpPath"),
    ("https", "git-codecommit.us-east-1.amazonaws.com", "v1/repos/../x", "not a CodeCommit repository path"),
], ids=["lookalike", "endpoint-without-port", "plain-http-remote", "ssh", "no-path", "traversal"])
def test_resolve_refuses(protocol: str, host: str, path: str | None, sentence: str) -> None:
    with pytest.raises(InvalidRequest, match=sentence):
        resolve(CONFIG, protocol, host, path)
