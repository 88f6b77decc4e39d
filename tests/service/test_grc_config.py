"""The policy file's ``grc:`` (the console's GRC URLs): the region and per-region endpoints a service announces
in its discovery document, each endpoint a CodeCommit host of its region or one of its git endpoints of that
region, and every mistake refused naming its key, by ``ccweb check-config`` too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ccweb.cli import config_schema
from ccweb.config import ConfigError, parse_config
from ccweb.routes import discovery_document
from ccweb.sandbox.dev import sandbox_policy

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = {
    "issuers": [{"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]}],
    "git_endpoints": [{"host": "git.internal.example.com:8443", "region": "eu-west-1"},
                      {"host": "127.0.0.1:8123", "region": "us-east-1"}],
}
VPCE = "vpce-0123456789abcdef0-abcdefgh.git-codecommit-fips.us-gov-west-1.vpce.amazonaws.com"


def with_grc(grc: Any) -> dict[str, Any]:
    return {**BASE, "grc": grc}


@pytest.mark.parametrize(("grc", "announced"), [
    (None, {"region": None, "endpoints": {}}),
    ({}, {"region": None, "endpoints": {}}),
    ({"region": "eu-west-1"}, {"region": "eu-west-1", "endpoints": {}}),
    ({"endpoints": {"us-east-1": "git-codecommit-fips.us-east-1.amazonaws.com"}},
     {"region": None, "endpoints": {"us-east-1": "https://git-codecommit-fips.us-east-1.amazonaws.com/v1/repos/"}}),
    ({"endpoints": {"us-east-2": "GIT-CODECOMMIT.us-east-2.amazonaws.com:443"}},
     {"region": None, "endpoints": {"us-east-2": "https://git-codecommit.us-east-2.amazonaws.com/v1/repos/"}}),
    ({"endpoints": {"us-gov-west-1": VPCE}},
     {"region": None, "endpoints": {"us-gov-west-1": f"https://{VPCE}/v1/repos/"}}),
    ({"endpoints": {"cn-north-1": "git-codecommit.cn-north-1.amazonaws.com.cn"}},
     {"region": None, "endpoints": {"cn-north-1": "https://git-codecommit.cn-north-1.amazonaws.com.cn/v1/repos/"}}),
    ({"region": "eu-west-1",
      "endpoints": {"eu-west-1": "Git.Internal.Example.com:8443", "us-east-1": "127.0.0.1:8123"}},
     {"region": "eu-west-1", "endpoints": {"eu-west-1": "https://git.internal.example.com:8443/v1/repos/",
                                           "us-east-1": "http://127.0.0.1:8123/v1/repos/"}}),
], ids=["absent", "empty", "region", "fips", "standard-443", "vpc-endpoint", "china", "git-endpoints"])
def test_discovery_announces_url_prefixes(grc: Any, announced: dict[str, Any]) -> None:
    config = parse_config(BASE if grc is None else with_grc(grc))
    assert discovery_document(config).model_dump()["grc"] == announced


@pytest.mark.parametrize(("grc", "message"), [
    ({"region": "Ohio"}, "grc.region: 'Ohio' is not an AWS region (e.g. us-east-1)"),
    ({"regions": "us-east-1"}, "grc.regions: unknown key"),
    ({"endpoints": {"ohio": "git-codecommit.us-east-2.amazonaws.com"}},
     "grc.endpoints.ohio: 'ohio' is not an AWS region (e.g. us-east-1)"),
    ({"endpoints": {"us-east-1": "git-codecommit.us-east-2.amazonaws.com"}},
     "grc.endpoints.us-east-1: 'git-codecommit.us-east-2.amazonaws.com' is a CodeCommit host of us-east-2, not of "
     "us-east-1"),
    ({"endpoints": {"us-east-1": "git.attacker.example"}},
     "grc.endpoints.us-east-1: 'git.attacker.example' is neither a CodeCommit host of us-east-1 (standard, FIPS, VPC "
     "endpoint) nor one of git_endpoints"),
    ({"endpoints": {"us-east-1": "git.internal.example.com:8443"}},
     "grc.endpoints.us-east-1: 'git.internal.example.com:8443' is a git endpoint of eu-west-1 (git_endpoints), not "
     "of us-east-1"),
    ({"endpoints": {"us-east-1": "https://git-codecommit.us-east-1.amazonaws.com"}},
     "grc.endpoints.us-east-1: 'https://git-codecommit.us-east-1.amazonaws.com' is not host[:port]"),
    ({"endpoints": {"us-east-1": "git-codecommit.us-east-1.amazonaws.com.evil.example"}},
     "grc.endpoints.us-east-1: 'git-codecommit.us-east-1.amazonaws.com.evil.example' is neither a CodeCommit host"),
    ({"endpoints": {"us-east-1": None}}, "grc.endpoints.us-east-1: Input should be a valid string"),
], ids=["region", "unknown-key", "region-key", "other-region-host", "unknown-host", "git-endpoint-other-region",
        "url-not-host", "lookalike", "null"])
def test_mistakes_name_their_key(grc: Any, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(with_grc(grc))
    assert any(line.startswith(message) for line in raised.value.messages), raised.value.messages


def test_check_config_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(with_grc({"endpoints": {"us-east-1": "git.attacker.example"}})))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "service"), str(ROOT / "helper")])}
    checked = subprocess.run([sys.executable, "-m", "ccweb", "check-config", str(path)], capture_output=True,
                             text=True, env=env, timeout=60, check=False)
    assert checked.returncode != 0
    assert "grc.endpoints.us-east-1: 'git.attacker.example' is neither" in checked.stdout + checked.stderr
    assert "Traceback" not in checked.stderr


def test_the_sandbox_names_its_git_server_for_us_east_1() -> None:
    config = parse_config(sandbox_policy("http://127.0.0.1:9", "127.0.0.1:8123"))
    assert discovery_document(config).model_dump()["grc"] == {
        "region": "us-east-1", "endpoints": {"us-east-1": "http://127.0.0.1:8123/v1/repos/"}}


@pytest.mark.parametrize(("grc", "valid"), [
    ({"region": "us-east-1", "endpoints": {"us-east-1": "git-codecommit-fips.us-east-1.amazonaws.com"}}, True),
    ({"region": "Ohio"}, False),
    ({"endpoints": {"ohio": "git-codecommit.us-east-2.amazonaws.com"}}, False),
    ({"endpoint": {}}, False),
], ids=["valid", "region", "region-key", "unknown-key"])
def test_the_schema_knows_grc(grc: Any, valid: bool) -> None:
    schema = config_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert (list(validator.iter_errors(with_grc(grc))) == []) is valid
