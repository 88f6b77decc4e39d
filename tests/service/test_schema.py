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
    ],
)
def test_schema_refuses_what_the_service_refuses(path: str, value: Any) -> None:
    data = changed(path, value)
    assert list(validator().iter_errors(BASE)) == []
    assert list(validator().iter_errors(data)), "the schema accepted it"
    with pytest.raises(Exception, match=r"\S"):
        parse_config(data)
