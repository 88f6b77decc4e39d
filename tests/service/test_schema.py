"""`ccweb schema`: a JSON Schema that editors can use, which accepts the documented policies and refuses typos."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ccweb.cli import config_schema, main
from ccweb.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def documented_policies() -> list[Any]:
    """Every ```yaml block with a top-level ``issuers:`` in the README and docs/, with its file and index."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        blocks = [m.group(1) for m in BLOCK.finditer(text) if re.search(r"^issuers:", m.group(1), re.MULTILINE)]
        found += [pytest.param(block, id=f"{path.name}[{i}]") for i, block in enumerate(blocks)]
    found.append(pytest.param((ROOT / "deploy/kubernetes/base/policy.yaml").read_text(encoding="utf-8"),
                              id="kubernetes-base-configmap"))
    return found


def validator() -> jsonschema.protocols.Validator:
    schema = config_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def policy_of(text: str) -> Any:
    data = yaml.safe_load(text)
    if isinstance(data, dict) and data.get("kind") == "ConfigMap":  # the Kubernetes base ships it in one
        data = yaml.safe_load(next(iter(data["data"].values())))
    return data


def test_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == config_schema()
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert printed["title"] == "ccweb policy"
    assert "check-config" in printed["description"]


@pytest.mark.parametrize("text", documented_policies())
def test_documented_policies_validate(text: str) -> None:
    data = policy_of(text)
    parse_config(data)  # the service accepts it …
    errors = [e.message for e in validator().iter_errors(data)]
    assert errors == []  # … and so does the schema


BASE: dict[str, Any] = {
    "issuers": [{"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]}],
    "rules": [{"name": "dev", "issuer": "corp", "claims": {"groups": "eng", "email": {"pattern": ".+"}},
               "role_arn": "arn:aws:iam::111122223333:role/ccweb-dev", "repositories": ["us-east-1/app-*"]}],
}


def changed(path: str, value: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(BASE))
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param("issuers.0.audience", ["ccweb"], id="unknown-issuer-key"),
        pytest.param("rules.0.repos", ["x"], id="unknown-rule-key"),
        pytest.param("aws", {"session_duraton": 3600}, id="unknown-nested-key"),
        pytest.param("rulez", [], id="unknown-top-level-key"),
        pytest.param("rules.0.access", "admin", id="access-not-read-or-write"),
        pytest.param("rules.0.role_arn", "arn:aws:iam::111122223333:user/x", id="not-a-role-arn"),
        pytest.param("rules.0.repositories", ["a/b/c"], id="not-a-repository-glob"),
        pytest.param("rules.0.claims", {"groups": ["a", "b"]}, id="list-condition"),
        pytest.param("rules.0.claims", {"bad claim": "x"}, id="bad-claim-name"),
        pytest.param("rules.0.session_duration", 60, id="session-too-short"),
        pytest.param("rate_limit", {"requests_per_minute": -1}, id="negative-rate"),
        pytest.param("rules.0.claims", {"/realm_access~2/roles": "x"}, id="pointer-bad-escape"),
        pytest.param("rules.0.claims", {"//roles": "x"}, id="pointer-empty-claim-name"),
        pytest.param("rules.0.claims", {"/": "x"}, id="pointer-alone"),
        pytest.param("rules.0.source_identity", "/~", id="source-identity-bad-pointer"),
        pytest.param("rules.0.session_tags", {f"k{n}": "sub" for n in range(51)}, id="fifty-one-session-tags"),
        pytest.param("rules.0.session_tags", {"k" * 129: "sub"}, id="session-tag-key-too-long"),
        pytest.param("rules.0.session_tags", {"": "sub"}, id="session-tag-key-empty"),
        pytest.param("rules.0.session_tags", {"aws:team": "sub"}, id="session-tag-key-aws-prefix"),
        pytest.param("rules.0.session_tags", {"team": "/org~/team"}, id="session-tag-claim-bad-pointer"),
        pytest.param("rules.0.session_tags", {"team": ["/org/team"]}, id="session-tag-claim-not-a-string"),
        pytest.param("rules.0.transitive_session_tags", "team", id="transitive-not-a-list"),
    ],
)
def test_schema_refuses_what_the_service_refuses(path: str, value: Any) -> None:
    data = changed(path, value)
    assert list(validator().iter_errors(BASE)) == []
    assert list(validator().iter_errors(data)), "the schema accepted it"
    with pytest.raises(Exception, match=r"\S"):
        parse_config(data)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param("rules.0.claims", {"/realm_access/roles": "developer", "/resource_access/ccweb/roles": "dev"},
                     id="pointers"),
        pytest.param("rules.0.claims", {"/a~1b/c~0d": "x", "/groups/0": "eng"}, id="pointer-escapes-and-index"),
        pytest.param("rules.0.claims", {"https://example.com/groups": "eng", "a.b": "x"}, id="verbatim-names"),
        pytest.param("rules.0.source_identity", "/employee/id", id="source-identity-pointer"),
        pytest.param("rules.0.session_tags", {"team": "/org/team", "cost-center": "cost_center",
                                              "Abteilung Straße": "/org/unit"}, id="session-tags"),
        pytest.param("rules.0.session_tags", {f"k{n}": "sub" for n in range(50)}, id="fifty-session-tags"),
    ],
)
def test_schema_accepts_what_the_service_accepts(path: str, value: Any) -> None:
    data = changed(path, value)
    parse_config(data)
    assert [e.message for e in validator().iter_errors(data)] == []


def test_transitive_session_tags_are_keys_of_session_tags_for_both() -> None:
    data = changed("rules.0.session_tags", {"team": "/org/team", "cost-center": "cost_center"})
    data["rules"][0]["transitive_session_tags"] = ["team", "cost-center"]
    parse_config(data)
    assert list(validator().iter_errors(data)) == []
    data["rules"][0]["transitive_session_tags"] = ["team", "team"]
    assert list(validator().iter_errors(data)), "the schema accepted a key named twice"
    with pytest.raises(Exception, match="transitive_session_tags"):
        parse_config(data)
    data["rules"][0]["transitive_session_tags"] = ["org"]  # what only check-config can say: not a tag's key
    with pytest.raises(Exception, match="transitive_session_tags"):
        parse_config(data)


def test_the_schema_describes_session_tags_with_sts_s_limits() -> None:
    rule = config_schema()["$defs"]["Rule"]["properties"]
    assert rule["session_tags"]["maxProperties"] == 50
    assert rule["session_tags"]["propertyNames"]["maxLength"] == 128
    assert rule["transitive_session_tags"]["maxItems"] == 50
