"""The STS region: ``aws.region``, else boto3's (AWS_DEFAULT_REGION, the profile's region), else AWS_REGION — which
boto3 never reads, but other AWS SDKs, Lambda and many platforms set. EKS Pod Identity sets neither (IRSA's
webhook does): a service told none calls us-east-1's STS and says so once, when it is made, with the fix; a region
from anywhere else is used without a word. ``/readyz`` shows the endpoint and the signing region in use."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.sts import BotoSTS, STSClient, target_of
from support import RecordingSTS, isolate_aws, serve, serve_issuer

LOGGER = "ccweb.sessions"
EU_WEST_1 = ("https://sts.eu-west-1.amazonaws.com", "eu-west-1")
US_EAST_1 = ("https://sts.us-east-1.amazonaws.com", "us-east-1")


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def made(caplog: pytest.LogCaptureFixture, **options: Any) -> tuple[tuple[str, str], list[str]]:
    """A BotoSTS made with ``options``: its (endpoint, signing region), and the warnings it logged."""
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        sts = BotoSTS(session=boto3.session.Session(), **options)
    return (sts.endpoint_url, sts.region), warnings(caplog)


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
    used, (message,) = made(caplog)
    assert used == US_EAST_1
    assert "no AWS region configured" in message
    assert "AWS_DEFAULT_REGION, the profile's region or AWS_REGION" in message, "where it looked"
    assert "us-east-1" in message and "https://sts.us-east-1.amazonaws.com" in message, "the fallback, named"
    assert "set aws.region or AWS_REGION to the cluster's region" in message, "the fix"


@pytest.mark.parametrize("given", ["environment", "injected"])
def test_aws_region_alone_gives_its_regional_endpoint_without_a_warning(
    no_region: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, given: str
) -> None:
    """What other SDKs, Lambda and many platforms set, and what an operator used to them sets."""
    if given == "environment":
        no_region.setenv("AWS_REGION", "eu-west-1")
        used, logged = made(caplog)
    else:
        used, logged = made(caplog, environ={"AWS_REGION": "eu-west-1"})
    assert used == EU_WEST_1
    assert logged == []


def test_an_empty_aws_region_is_no_region(no_region: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    used, logged = made(caplog, environ={"AWS_REGION": ""})
    assert used == US_EAST_1
    assert len(logged) == 1


@pytest.mark.parametrize("source", ["aws.region", "AWS_DEFAULT_REGION", "profile"])
def test_a_region_from_anywhere_is_used_silently_and_wins_over_aws_region(
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
    no_region.setenv("AWS_REGION", "ap-southeast-2")
    assert made(caplog, region=region) == (EU_WEST_1, [])


def test_us_east_1_chosen_on_purpose_is_no_warning(
    no_region: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert made(caplog, region="us-east-1") == (US_EAST_1, [])


# -- what /readyz shows ---------------------------------------------------------------------------------------


def readyz_sts(sts: STSClient) -> dict[str, object]:
    """The ``sts`` block of ``/readyz`` of a service running with ``sts``."""
    with serve_issuer() as issuer:
        policy = {"issuers": [{"name": "corp", "issuer": issuer.issuer_url, "audiences": ["ccweb"]}],
                  "rules": [{"name": "all", "issuer": "corp", "role_arn": "arn:aws:iam::111122223333:role/ccweb/read",
                             "repositories": ["*"]}]}
        with serve(create_app(parse_config(policy), sts=sts)) as url:
            block: dict[str, object] = httpx.get(f"{url}/readyz", timeout=30).json()["sts"]
    return block


def test_readyz_shows_the_endpoint_and_signing_region_in_use(no_region: pytest.MonkeyPatch) -> None:
    sts = BotoSTS(session=boto3.session.Session(), environ={"AWS_REGION": "eu-west-1"})
    assert readyz_sts(sts) == {"state": "ok", "last_error": None, "endpoint": "https://sts.eu-west-1.amazonaws.com",
                               "region": "eu-west-1"}


def test_readyz_shows_a_configured_endpoint_without_its_user_password_or_query(
    no_region: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``AWS_ENDPOINT_URL_STS`` may name a gateway with a password in its URL: never shown, nor logged."""
    no_region.setenv("AWS_ENDPOINT_URL_STS", "https://ops:hunter2-secret@sts-gw.example.internal:8443/sts?key=k-secret")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        sts = BotoSTS(session=boto3.session.Session())
    block = readyz_sts(sts)
    assert block["endpoint"] == "https://sts-gw.example.internal:8443/sts"
    assert block["region"] == "us-east-1"
    assert "secret" not in caplog.text
    assert "https://sts-gw.example.internal:8443/sts" in caplog.text, "the defaulted region's warning names it"


def test_an_sts_stand_in_names_no_endpoint() -> None:
    assert target_of(RecordingSTS()) is None
    assert readyz_sts(RecordingSTS())["endpoint"] is None
