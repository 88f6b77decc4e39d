"""The STS region a service was told none of: EKS Pod Identity sets no AWS_REGION (IRSA's webhook does), and boto3
reads AWS_DEFAULT_REGION or the profile's region, never AWS_REGION. BotoSTS then calls us-east-1's STS, and says so
once, when it is made, with the fix; a region from anywhere else is used without a word."""

from __future__ import annotations

import logging
from pathlib import Path

import boto3
import pytest

from ccweb.sts import BotoSTS
from support import isolate_aws

LOGGER = "ccweb.sessions"


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


@pytest.fixture
def no_region(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment of a pod on EKS Pod Identity without a region set: keys, no region anywhere."""
    isolate_aws(monkeypatch)
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_STS_REGIONAL_ENDPOINTS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_defaulted_region_is_named_with_its_endpoint_and_the_fix(
    no_region: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        sts = BotoSTS(session=boto3.session.Session())
    assert (sts.endpoint_url, sts.region) == ("https://sts.us-east-1.amazonaws.com", "us-east-1")
    (message,) = warnings(caplog)
    assert "no AWS region configured" in message
    assert "us-east-1" in message and "https://sts.us-east-1.amazonaws.com" in message, "the fallback, named"
    assert "set aws.region or AWS_DEFAULT_REGION to the cluster's region" in message, "the fix"


def test_aws_region_alone_is_not_read_by_boto3_and_the_warning_says_so(
    no_region: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """What an operator following other SDKs' habit would set: boto3 ignores it, so the warning stays."""
    no_region.setenv("AWS_REGION", "eu-west-1")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        sts = BotoSTS(session=boto3.session.Session())
    assert sts.endpoint_url == "https://sts.us-east-1.amazonaws.com"
    (message,) = warnings(caplog)
    assert "does not read AWS_REGION" in message


@pytest.mark.parametrize("source", ["aws.region", "AWS_DEFAULT_REGION", "profile"])
def test_a_region_from_anywhere_is_used_silently(
    no_region: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path, source: str
) -> None:
    region = None
    if source == "aws.region":
        region = "eu-west-1"
    elif source == "AWS_DEFAULT_REGION":
        no_region.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    else:
        config = tmp_path / "config"
        config.write_text("[default]\nregion = eu-west-1\n", encoding="utf-8")
        no_region.setenv("AWS_CONFIG_FILE", str(config))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        sts = BotoSTS(session=boto3.session.Session(), region=region)
    assert (sts.endpoint_url, sts.region) == ("https://sts.eu-west-1.amazonaws.com", "eu-west-1")
    assert warnings(caplog) == []


def test_us_east_1_chosen_on_purpose_is_no_warning(
    no_region: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        BotoSTS(session=boto3.session.Session(), region="us-east-1")
    assert warnings(caplog) == []
