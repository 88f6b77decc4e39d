"""The policy file: the contract's example loads; every mistake is refused with a message naming its key."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccweb.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]

CONTRACT_EXAMPLE = r"""
issuers:
  - name: corp
    issuer: https://login.example.com
    audiences: [ccweb]
rules:
  - name: developers
    issuer: corp
    claims:
      groups: engineering
      email: {pattern: '.+@example\.com'}
    role_arn: arn:aws:iam::111122223333:role/ccweb-developers
    repositories: ['*']
    access: write
git_endpoints:
  - host: git.internal.example.com:8443
    region: us-east-1
aws:
  session_duration: 3600
"""


def base() -> dict[str, Any]:
    return {
        "issuers": [{"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]}],
        "rules": [
            {"name": "developers", "issuer": "corp", "claims": {"groups": "engineering"},
             "role_arn": "arn:aws:iam::111122223333:role/dev", "repositories": ["*"], "access": "write"},
            {"name": "readers", "issuer": "corp", "claims": {"email": {"pattern": r".+@example\.com"}},
             "role_arn": "arn:aws:iam::111122223333:role/read", "repositories": ["us-east-1/app-*", "docs"]},
        ],
        "git_endpoints": [{"host": "git.internal.example.com:8443", "region": "us-east-1"}],
    }


def edited(change: str, value: Any) -> dict[str, Any]:
    """``base()`` with the dotted path ``change`` (``rules.1.claims.email``) set to ``value`` (``...`` deletes)."""
    data = base()
    *parents, last = change.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    elif isinstance(node, list) and key == len(node):
        node.append(copy.deepcopy(value))
    else:
        node[key] = copy.deepcopy(value)
    return data


INVALID = [
    pytest.param("unknown_top", 1, "unknown_top: unknown key", id="unknown-top-level-key"),
    pytest.param("issuers.0.audience", ["ccweb"], "issuers[0].audience: unknown key", id="unknown-issuer-key"),
    pytest.param("rules.0.role", "x", "rules[0].role: unknown key", id="unknown-rule-key"),
    pytest.param("git_endpoints.0.port", 1, "git_endpoints[0].port: unknown key", id="unknown-endpoint-key"),
    pytest.param("issuers.0.audiences", ..., "issuers[0].audiences: required key is missing", id="missing-audiences"),
    pytest.param("issuers.0.audiences", [], "issuers[0].audiences", id="empty-audiences"),
    pytest.param("rules.0.role_arn", ..., "rules[0].role_arn: required key is missing", id="missing-role"),
    pytest.param("issuers.0.issuer", "http://login.example.com", "issuers[0].issuer: must be https",
                 id="plain-http-issuer"),
    pytest.param("issuers.0.issuer", "ftp://login.example.com", "issuers[0].issuer: must be an https URL",
                 id="ftp-issuer"),
    pytest.param("issuers.0.issuer", "https://u:p@login.example.com", "issuers[0].issuer: must not carry",
                 id="issuer-with-credentials"),
    pytest.param("issuers.0.issuer", "https://login.example.com/\x1b[2J\u202e", "issuers[0].issuer: must be a URL of "
                 "printable ASCII", id="issuer-with-control-characters"),
    pytest.param("issuers.0.jwks_uri", "https://keys.example.com/j wks", "issuers[0].jwks_uri: must be a URL of "
                 "printable ASCII", id="jwks-with-a-space"),
    pytest.param("issuers.0.jwks_uri", "http://keys.example.com/jwks", "issuers[0].jwks_uri: must be https",
                 id="plain-http-jwks"),
    pytest.param("issuers.1", {"name": "corp", "issuer": "https://other.example.com", "audiences": ["a"]},
                 "issuers[1].name: 'corp' is used twice", id="duplicate-issuer-name"),
    pytest.param("rules.1.issuer", "nobody", "rules[1].issuer: no issuer is named 'nobody'", id="unknown-issuer"),
    pytest.param("rules.1.name", "developers", "rules[1].name: 'developers' is used twice", id="duplicate-rule"),
    pytest.param("rules.0.role_arn", "arn:aws:iam::1234:role/x", "rules[0].role_arn: not an IAM role ARN",
                 id="short-account"),
    pytest.param("rules.0.role_arn", "arn:aws:iam::111122223333:user/x", "rules[0].role_arn: not an IAM role ARN",
                 id="user-not-role"),
    pytest.param("rules.1.claims.email.pattern", "(unclosed", "rules[1].claims.email.pattern: not a valid regular",
                 id="bad-pattern"),
    pytest.param("rules.1.claims.email", ["a", "b"], "rules[1].claims.email: must be a string, a boolean",
                 id="list-condition"),
    pytest.param("rules.1.claims.email", {"regex": "x"}, "rules[1].claims.email.regex: unknown key",
                 id="pattern-misspelt"),
    pytest.param("rules.0.claims", {"bad claim!": "x"}, "rules[0].claims: 'bad claim!' is not a claim name",
                 id="bad-claim-name"),
    pytest.param("rules.0.claims", {"/a~2": "admin"}, "rules[0].claims./a~2: '/a~2' is not a JSON Pointer (RFC "
                 "6901): '~' at character 3 must be followed by 0 (for '~') or 1 (for '/')", id="pointer-bad-escape"),
    pytest.param("rules.0.claims", {"//roles": "admin"}, "rules[0].claims.//roles: '//roles' starts with an empty "
                 "claim name", id="pointer-empty-top"),
    pytest.param("rules.0.claims", {"/": "admin"}, "rules[0].claims./: '/' starts with an empty claim name",
                 id="pointer-alone"),
    pytest.param("rules.0.claims", {"/roles\u200b": "admin"}, "rules[0].claims./roles\u200b: '/roles\\u200b' "
                 "holds a control or invisible character", id="pointer-invisible"),
    pytest.param("rules.0.source_identity", "/user~", "rules[0].source_identity: '/user~' is not a JSON Pointer",
                 id="pointer-source-identity"),
    pytest.param("rules.0.session_tags", {"team": "/org~x/team"}, "rules[0].session_tags.team: '/org~x/team' is not "
                 "a JSON Pointer", id="pointer-session-tag"),
    pytest.param("rules.0.name", "denied", "rules[0].name: 'denied' is reserved for an outcome", id="rule-denied"),
    pytest.param("rules.1.name", "suspended", "rules[1].name: 'suspended' is reserved", id="rule-suspended"),
    pytest.param("rules.0.repositories", [], "rules[0].repositories", id="no-repositories"),
    pytest.param("rules.0.repositories", ["repo/with/slashes"], "rules[0].repositories[0]: 'repo/with/slashes'",
                 id="bad-glob"),
    pytest.param("rules.0.repositories", ["mars-north-1x/app"], "is not an AWS region", id="bad-glob-region"),
    pytest.param("rules.0.repositories", ["has space"], "rules[0].repositories[0]", id="glob-with-space"),
    pytest.param("rules.0.access", "admin", "rules[0].access", id="bad-access"),
    pytest.param("rules.0.session_duration", 60, "rules[0].session_duration", id="session-too-short"),
    pytest.param("rules.0.session_duration", 50000, "rules[0].session_duration", id="session-too-long"),
    pytest.param("rules.0.source_identity", "not a claim", "rules[0].source_identity: not a claim name",
                 id="bad-source-identity"),
    pytest.param("rules.0.repositories", [f"repository-number-{i:03d}" for i in range(40)],
                 "rules[0].repositories: the session policy would be", id="session-policy-too-large"),
    pytest.param("git_endpoints.0.host", "https://git.example.com/", "git_endpoints[0].host: not host[:port]",
                 id="endpoint-is-a-url"),
    pytest.param("git_endpoints.0.host", "git.example.com:99999", "git_endpoints[0].host", id="endpoint-bad-port"),
    pytest.param("git_endpoints.0.host", "*.com", "git_endpoints[0].host: not host[:port]: not a host name",
                 id="endpoint-wildcard"),
    pytest.param("git_endpoints.0.host", "git\x1b]0;owned\x07.example.com",
                 "git_endpoints[0].host: not host[:port]: not a host name", id="endpoint-escape-sequence"),
    pytest.param("git_endpoints.0.host", "[fe80::1%eth0]", "git_endpoints[0].host: not host[:port]: not an IPv6",
                 id="endpoint-ipv6-zone"),
    pytest.param("git_endpoints.0.region", "Mars", "git_endpoints[0].region", id="endpoint-bad-region"),
    pytest.param("git_endpoints.1", {"host": "GIT.internal.example.com:8443", "region": "us-east-1"},
                 "git_endpoints[1].host: 'git.internal.example.com:8443' is listed twice", id="duplicate-endpoint"),
    pytest.param("aws", {"session_duration": 100}, "aws.session_duration", id="aws-session-too-short"),
    pytest.param("aws", {"region": "nowhere"}, "aws.region", id="aws-bad-region"),
    pytest.param("issuers", [], "issuers", id="no-issuers"),
    pytest.param("issuers.0.login", {"client_id": "cli"}, "issuers[0].login.client_id: 'cli' must also be one of "
                 "audiences", id="login-client-not-an-audience"),
    pytest.param("issuers.0.login", {"client_id": "ccweb", "scopes": ["email"]},
                 "issuers[0].login.scopes: must include 'openid'", id="login-without-openid"),
    pytest.param("issuers.0.login", {"client_id": "ccweb", "scopes": ["openid", "bad scope"]},
                 "issuers[0].login.scopes: 'bad scope' is not an OAuth scope", id="login-bad-scope"),
    pytest.param("issuers.0.login", {"client_id": "ccweb", "secret": "x"}, "issuers[0].login.secret: unknown key",
                 id="login-client-secret"),
    pytest.param("ci_audience", "sts.amazonaws.com", "ci_audience: 'sts.amazonaws.com' is not among any issuer's",
                 id="ci-audience-unknown"),
]


def test_ci_audience_defaults_to_the_first_issuer_without_interactive_login() -> None:
    data = base()
    data["issuers"] = [
        {"name": "corp", "issuer": "https://login.example.com", "audiences": ["cli-app"],
         "login": {"client_id": "cli-app"}},
        {"name": "github", "issuer": "https://token.actions.githubusercontent.com", "audiences": ["ccweb"]},
    ]
    config = parse_config(data)
    assert config.audience_for_ci == "ccweb"
    assert config.issuers[0].login is not None
    assert config.issuers[0].login.scopes == ["openid", "email", "profile", "offline_access"]
    assert parse_config({**data, "ci_audience": "cli-app"}).audience_for_ci == "cli-app"
    people_only = {**data, "issuers": [{**data["issuers"][0], "audiences": ["cli-app", "ccweb"]}]}
    assert parse_config(people_only).audience_for_ci == "ccweb"  # never a login client's own id if avoidable


@pytest.mark.parametrize(("change", "value", "message"), INVALID)
def test_invalid_configuration_names_the_key(change: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(edited(change, value))
    assert any(message in line for line in raised.value.messages), raised.value.messages


@pytest.mark.parametrize("document", [None, [], "issuers: x"], ids=["empty", "list", "string"])
def test_a_file_that_is_not_a_mapping_is_refused(document: Any) -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config(document)


def test_the_contract_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "ccweb.yaml"
    path.write_text(CONTRACT_EXAMPLE)
    config = load_config(path)
    rule = config.rules[0]
    assert (rule.name, rule.access, rule.account) == ("developers", "write", "111122223333")
    assert config.session_duration(rule) == 3600
    assert config.git_endpoint("GIT.internal.example.com:8443") is not None
    assert config.git_endpoint("git.internal.example.com") is None  # the port is part of the endpoint


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:8080", "http://localhost:9000/realms/x", "http://[::1]:80"])
def test_plain_http_issuers_are_allowed_on_loopback(issuer: str) -> None:
    data = base()
    data["issuers"][0]["issuer"] = issuer
    assert parse_config(data).issuers[0].issuer == issuer


def test_a_file_nested_too_deeply_to_read_is_refused_in_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("issuers: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert raised.value.messages == [f"{path}: the configuration file nests lists or mappings too deeply to read"]


def test_yaml_syntax_errors_give_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("issuers:\n  - name: corp\n    issuer: [unclosed\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(path) in raised.value.messages[0]
    assert "line " in raised.value.messages[0]


@pytest.mark.parametrize("text", [
    "issuers: []\nrules: []\nissuers: []\n",
    "issuers:\n  - name: corp\n    name: other\n",
    "deny:\n  - issuer: corp\nissuers: []\ndeny: []\n",
], ids=["top-level", "nested", "a-second-deny-list"])
def test_a_key_written_twice_is_refused_not_overwritten(tmp_path: Path, text: str) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert "is written twice in one mapping" in raised.value.messages[0]
    assert "(line " in raised.value.messages[0]


def test_a_deny_entry_on_a_malformed_pointer_is_refused_naming_its_key() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({**base(), "deny": [{"claims": {"/realm_access/roles~": "suspended"}}]})
    assert raised.value.messages == ["deny[0].claims./realm_access/roles~: '/realm_access/roles~' is not a JSON "
                                     "Pointer (RFC 6901): '~' at character 20 must be followed by 0 (for '~') or 1 "
                                     "(for '/')"]


WELL_FORMED = {
    "keycloak realm roles": "/realm_access/roles",
    "keycloak client roles": "/resource_access/ccweb/roles",
    "escapes": "/a~1b/c~0d",
    "list index": "/roles/0",
    "auth0 namespaced name": "https://example.com/groups",
    "dotted name": "a.b",
}


@pytest.mark.parametrize("key", WELL_FORMED.values(), ids=WELL_FORMED.keys())
def test_well_formed_claim_keys_load_everywhere_a_claim_is_named(key: str) -> None:
    data = base()
    data["rules"][0] |= {"claims": {key: "x"}, "source_identity": key, "session_tags": {"team": key}}
    data["deny"] = [{"claims": {key: "y"}}]
    config = parse_config(data)
    assert list(config.rules[0].claims) == [key] and config.rules[0].source_identity == key
    assert config.rules[0].session_tags == {"team": key} and list(config.deny[0].claims) == [key]


def test_missing_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(tmp_path / "nope.yaml")


def test_several_mistakes_are_all_reported() -> None:
    data = edited("rules.0.role_arn", "nope")
    data["rules"][1]["access"] = "everything"
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    text = "\n".join(raised.value.messages)
    assert "rules[0].role_arn" in text and "rules[1].access" in text


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "service"), str(ROOT / "helper")])}
    return subprocess.run([sys.executable, "-m", "ccweb", "check-config", str(path)], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def test_check_config_command(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(CONTRACT_EXAMPLE)
    bad.write_text(yaml.safe_dump(edited("rules.1.claims.email.pattern", "(unclosed")))
    ok = check_config(good)
    assert ok.returncode == 0, ok.stderr
    refused = check_config(bad)
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "rules[1].claims.email.pattern: not a valid regular expression" in output
    assert "Traceback" not in output
    missing = check_config(tmp_path / "absent.yaml")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr


REFERENCE_ADDITIONS = CONTRACT_EXAMPLE + r"""
deny:
  - name: offboarded-eve
    issuer: corp
    claims:
      email: eve@example.com
    reason: account under review
  - name: quarantined
    claims:
      groups: {pattern: 'quarantine-.*'}
rate_limit:
  requests_per_minute: 120
  burst: 60
"""


def test_the_reference_deny_list_and_rate_limit_load(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(REFERENCE_ADDITIONS)
    config = load_config(path)
    assert [d.name for d in config.deny] == ["offboarded-eve", "quarantined"]
    assert (config.rate_limit.requests_per_minute, config.rate_limit.burst) == (120, 60)
    assert parse_config(yaml.safe_load(CONTRACT_EXAMPLE)).rate_limit == config.rate_limit  # the defaults
    ok = check_config(path)
    assert ok.returncode == 0, ok.stderr
    assert "2 deny entry(ies); 120 requests a minute per identity, bursts of 60" in ok.stdout
