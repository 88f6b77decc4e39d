"""``GET /.well-known/ccweb.txt``: the discovery document the JSON route answers, one ``key=value`` a line, and a
value that holds a line break stays on its line."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.sandbox.dev import Sandbox
from support import RecordingSTS, serve

TEXT = "text/plain; charset=utf-8"
ISSUER = {"name": "corp", "issuer": "http://127.0.0.1:9", "audiences": ["ccweb"]}  # nothing listens there


def from_json(document: dict[str, Any]) -> list[str]:
    """The lines the text discovery must have for the JSON ``document``, in their order."""
    lines = [f"audience={document['audience']}", *(f"git_endpoint={e['host']}" for e in document["git_endpoints"])]
    if document["grc"]["region"] is not None:
        lines.append(f"grc_region={document['grc']['region']}")
    lines += [f"grc_endpoint={region} {prefix}" for region, prefix in document["grc"]["endpoints"].items()]
    return lines


def both(url: str) -> tuple[httpx.Response, dict[str, Any]]:
    text = httpx.get(f"{url}/.well-known/ccweb.txt", timeout=30)
    assert text.status_code == 200
    assert text.headers["content-type"] == TEXT
    return text, httpx.get(f"{url}/.well-known/ccweb", timeout=30).json()


def test_the_sandbox_s_discovery_in_lines(company: Sandbox) -> None:
    text, document = both(company.api_url)
    assert text.text.split("\n") == [*from_json(document), ""]
    assert f"audience={company.api_url}" in text.text.split("\n")
    assert f"git_endpoint={company.git_host}" in text.text.split("\n")


CONFIGS = {
    "bare": ({"issuers": [ISSUER]}, ["audience=ccweb"]),
    "endpoints-and-grc": ({
        "issuers": [ISSUER],
        "git_endpoints": [{"host": "git.internal.example.com:8443", "region": "eu-west-1"},
                          {"host": "127.0.0.1:8123", "region": "us-east-1"}],
        "grc": {"region": "eu-west-1", "endpoints": {
            "eu-west-1": "git.internal.example.com:8443", "us-east-1": "127.0.0.1:8123",
            "us-east-2": "git-codecommit-fips.us-east-2.amazonaws.com"}},
    }, ["audience=ccweb", "git_endpoint=git.internal.example.com:8443", "git_endpoint=127.0.0.1:8123",
        "grc_region=eu-west-1", "grc_endpoint=eu-west-1 https://git.internal.example.com:8443/v1/repos/",
        "grc_endpoint=us-east-1 http://127.0.0.1:8123/v1/repos/",
        "grc_endpoint=us-east-2 https://git-codecommit-fips.us-east-2.amazonaws.com/v1/repos/"]),
    "a-line-break-in-the-audience": ({
        "issuers": [{**ISSUER, "audiences": ["ccweb\ngit_endpoint=evil.example\u2028x"]}],
    }, ["audience=ccweb\\ngit_endpoint=evil.example\\u2028x"]),
}


@pytest.mark.parametrize(("config", "lines"), CONFIGS.values(), ids=CONFIGS.keys())
def test_each_policy_s_discovery_in_lines(config: dict[str, Any], lines: list[str]) -> None:
    with serve(create_app(parse_config(config), sts=RecordingSTS())) as url:
        text, document = both(url)
    assert text.text.split("\n") == [*lines, ""]
    if "\\n" not in lines[0]:
        assert lines == from_json(document)
    else:
        assert document["audience"] == config["issuers"][0]["audiences"][0], "JSON has the value itself"
