"""An audience AWS STS honours is refused at load: a service configured with one would have CI jobs ask their
platform for tokens that could be replayed to AWS, and would itself accept tokens meant for STS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ccweb.config import ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[2]


def policy(*audiences: str) -> dict[str, object]:
    return {"issuers": [
        {"name": "corp", "issuer": "https://login.example.com", "audiences": ["ccweb"]},
        {"name": "github", "issuer": "https://token.actions.githubusercontent.com", "audiences": list(audiences)},
    ]}


@pytest.mark.parametrize("audience", ["sts.amazonaws.com", "https://sts.amazonaws.com/", "sts.us-east-1.amazonaws.com",
                                      "sts.cn-north-1.amazonaws.com.cn", "STS.AMAZONAWS.COM"])
def test_an_audience_aws_sts_honours_is_refused_by_its_key(audience: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(policy("ccweb-ci", audience))
    assert raised.value.messages == [
        f"issuers[1].audiences[1]: {audience!r} is an audience AWS STS accepts: a token for it, sent to ccweb, could "
        "be replayed to AWS (AssumeRoleWithWebIdentity); give ccweb an audience of its own"
    ]


def test_audiences_of_ccweb_s_own_are_taken() -> None:
    config = parse_config(policy("ccweb-ci", "sts.amazonaws.com.example.org"))
    assert config.audience_for_ci == "ccweb"


def test_check_config_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy("sts.amazonaws.com")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "service"), str(ROOT / "helper")])}
    run = subprocess.run([sys.executable, "-m", "ccweb", "check-config", str(path)], capture_output=True, text=True,
                         env=env, timeout=60, check=False)
    assert run.returncode != 0
    assert "issuers[1].audiences[0]: 'sts.amazonaws.com' is an audience AWS STS accepts" in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
