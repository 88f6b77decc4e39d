"""CodeCommit passwords byte for byte as the AWS CLI prints them (vectors from the real CLI)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ccweb.signing import AwsCredentials, git_password, git_username, parse_password_time
from ccweb_helper.hosts import parse_codecommit_host

VECTORS: dict[str, Any] = json.loads((Path(__file__).parents[1] / "data" / "codecommit-sigv4.json").read_text())
CREDS = AwsCredentials(VECTORS["credentials"]["access_key_id"], VECTORS["credentials"]["secret_access_key"],
                       VECTORS["credentials"]["session_token"])
SIGNED_AT = datetime.strptime(VECTORS["timestamp"], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[f"{c['host']}/{c['path']}" for c in VECTORS["cases"]])
def test_every_cli_vector(case: dict[str, str]) -> None:
    host = parse_codecommit_host(case["host"])
    assert host is not None and host.region == case["region"]
    password = git_password(CREDS.secret_access_key, hostname=host.hostname, path=case["path"],
                            region=host.region, now=SIGNED_AT)
    assert password == case["password"]


def test_username_is_key_id_percent_session_token() -> None:
    assert git_username(CREDS) == VECTORS["username"]


def test_long_term_key_vector() -> None:
    case = VECTORS["long_term_key_case"]
    now = datetime.strptime(case["timestamp"], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    assert git_password(case["secret_access_key"], hostname=case["host"], path=case["path"], region=case["region"],
                        now=now) == case["password"]
    assert git_username(AwsCredentials(case["access_key_id"], case["secret_access_key"], None)) == "access"


def test_the_clock_may_be_in_any_time_zone() -> None:
    case = VECTORS["cases"][0]
    local = SIGNED_AT.astimezone(timezone(timedelta(hours=-7)))
    assert git_password(CREDS.secret_access_key, hostname=case["host"], path="/" + case["path"],
                        region=case["region"], now=local) == case["password"]


def test_a_password_is_bound_to_repository_region_host_and_second() -> None:
    case = VECTORS["cases"][0]
    base = {"hostname": case["host"], "path": case["path"], "region": case["region"], "now": SIGNED_AT}
    variants: list[dict[str, Any]] = [{"path": "v1/repos/Other"}, {"region": "us-east-1"},
                                      {"hostname": "git-codecommit-fips.us-east-2.amazonaws.com"},
                                      {"now": SIGNED_AT + timedelta(seconds=1)}]
    for change in variants:
        assert git_password(CREDS.secret_access_key, **{**base, **change}) != case["password"]


def test_password_time_round_trip() -> None:
    password = VECTORS["cases"][0]["password"]
    assert parse_password_time(password) == SIGNED_AT
    for bad in ("", "nonsense", "20261122T101500Zshort", "2026112XT101500Z" + "0" * 64):
        assert parse_password_time(bad) is None


def test_credentials_never_show_secrets_in_repr() -> None:
    text = repr(CREDS) + str(CREDS)
    assert CREDS.secret_access_key not in text
    assert CREDS.session_token is not None and CREDS.session_token not in text
    assert CREDS.access_key_id in text
