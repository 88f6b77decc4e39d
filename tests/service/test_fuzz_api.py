"""The API fuzzed from its own OpenAPI document: no 5xx, and every answer is one the document describes.

Schemathesis generates the requests from ``/openapi.json`` of a real uvicorn server on loopback and sends
them over HTTP. Some cases carry real tokens from a development issuer — an identity a rule grants, one no
rule grants, an expired one, one for another audience — and some bodies name real CodeCommit hosts and
repository paths, so issuing, denying and refusing are all reached, not only 401. About 1,450 cases in
all, derandomized: the same cases on every run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.config import SchemathesisConfig

from ccweb.app import create_app
from ccweb.config import parse_config
from support import RecordingSTS, serve, serve_issuer

ACCOUNT = "111122223333"
# Not positive_data_acceptance: the schema cannot say which hosts and paths name a CodeCommit repository.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, ignored_auth, unsupported_method]


def policy(issuer_url: str) -> dict[str, Any]:
    return {
        "issuers": [{"name": "corp", "issuer": issuer_url, "audiences": ["ccweb"]}],
        "rules": [
            {"name": "admins", "issuer": "corp", "claims": {"groups": "admins"},
             "role_arn": f"arn:aws:iam::{ACCOUNT}:role/admins", "repositories": ["*"], "access": "write"},
            {"name": "readers", "issuer": "corp", "claims": {"email": {"pattern": r".+@example\.com"}},
             "role_arn": f"arn:aws:iam::{ACCOUNT}:role/readers", "repositories": ["us-east-2/app-*"],
             "access": "read"},
        ],
        "git_endpoints": [{"host": "git.internal.example.com:8443", "region": "eu-west-1"}],
        "rate_limit": {"requests_per_minute": 0},  # the fuzzer is one identity sending a thousand requests
    }


@dataclass
class Api:
    url: str
    schema: Any
    tokens: dict[str, str]

    def operation(self, method: str, path: str) -> Any:
        return self.schema[path][method]


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    sts = RecordingSTS()
    with serve_issuer() as issuer, serve(create_app(parse_config(policy(issuer.issuer_url)), sts=sts)) as url:
        tokens = {
            "admin": issuer.mint({"sub": "a-1", "email": "ann@example.org", "groups": ["admins"]}),
            "reader": issuer.mint({"sub": "r-1", "email": "rex@example.com", "groups": []}),
            "nobody": issuer.mint({"sub": "n-1", "email": "nat@example.net"}),
            "expired": issuer.mint({"sub": "a-1", "groups": ["admins"]}, now=time.time() - 7200),
            "other-audience": issuer.mint({"sub": "a-1", "groups": ["admins"]}, audience="elsewhere"),
            "garbage": "not.a.jwt",
        }
        yield Api(url, schemathesis.openapi.from_url(f"{url}/openapi.json", config=CONFIG), tokens)


# Invalid data must be refused with a 4xx: the defaults, plus the refusals of ccweb.limits (an invalid body
# may also be an oversized one: 413, or come with an oversized head: 431).
CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": [
    "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "431",
]}}})


def fuzz(max_examples: int) -> Callable[[Any], Any]:
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def send(api: Api, case: Any, token: str | None, checks: list[Any] = CHECKS) -> int:
    """Send ``case`` (with ``token``'s Authorization, else the generated one), check the answer, return its status."""
    headers = {"Authorization": f"Bearer {api.tokens[token]}"} if token else None
    response = case.call(base_url=api.url, headers=headers, timeout=10)
    case.validate_response(response, checks=checks, headers=headers)
    assert b"Traceback" not in response.content
    return int(response.status_code)


TOKENS = st.sampled_from([None, "admin", "reader", "nobody", "expired", "other-audience", "garbage"])

GOOD_HOSTS = st.sampled_from([
    "git-codecommit.us-east-2.amazonaws.com", "git-codecommit.eu-west-1.amazonaws.com:443",
    "git-codecommit-fips.us-gov-west-1.amazonaws.com", "git-codecommit.cn-north-1.amazonaws.com.cn",
    "vpce-0123456789abcdef0-abcdefgh.git-codecommit.us-east-2.vpce.amazonaws.com", "git.internal.example.com:8443",
])
BAD_HOSTS = st.one_of(st.sampled_from([
    "git-codecommit.us-east-2.amazonaws.com.evil.example", "evil-git-codecommit.us-east-2.amazonaws.com",
    "git-codecommit.us-east-2.amazonaws.com.", "user@git-codecommit.us-east-2.amazonaws.com", "127.0.0.1:9",
    "[::1]:8443", "git-codecommit.us-east-2.amazonaws.com:99999", "git.internal.example.com",
]), st.text(max_size=40))
GOOD_PATHS = st.builds(lambda lead, name, trail: f"{lead}v1/repos/{name}{trail}", st.sampled_from(["", "/"]),
                       st.one_of(st.sampled_from(["app-web", "app-api", "docs", "secret"]),
                                 st.from_regex(r"[A-Za-z0-9._-]{1,100}", fullmatch=True)),
                       st.sampled_from(["", "/"]))
BAD_PATHS = st.one_of(
    st.builds(lambda name, trail: f"v1/repos/{name}{trail}",
              st.one_of(st.sampled_from([".", "..", "a" * 101, "a b", ""]), st.text(max_size=20)),
              st.sampled_from(["", "/info/refs", "?x=1", "#x"])),
    st.text(max_size=60),
)
BODIES = st.one_of(
    st.fixed_dictionaries({"protocol": st.just("https"), "host": GOOD_HOSTS, "path": GOOD_PATHS}),
    st.fixed_dictionaries(
        {"protocol": st.sampled_from(["https", "http", "ssh", "HTTPS", ""]), "host": st.one_of(GOOD_HOSTS, BAD_HOSTS)},
        optional={"path": st.one_of(GOOD_PATHS, BAD_PATHS), "extra": st.integers()},
    ),
)


def test_credentials_from_the_schema(api: Api) -> None:
    count = 0

    @fuzz(350)
    @given(case=api.operation("POST", "/v1/credentials").as_strategy(), token=TOKENS)
    def run(case: Any, token: str | None) -> None:
        nonlocal count
        count += 1
        send(api, case, token)

    run()
    assert count >= 300


def test_credentials_negative_bodies_are_refused(api: Api) -> None:
    count = 0

    operation = api.operation("POST", "/v1/credentials")
    # With a real token fixed, only the body is made invalid; without one, the header may be too.
    cases = st.one_of(operation.as_strategy(GenerationMode.NEGATIVE), *(
        operation.as_strategy(GenerationMode.NEGATIVE, headers={"Authorization": f"Bearer {api.tokens[name]}"})
        for name in ("admin", "reader", "nobody")
    ))

    @fuzz(250)
    @given(case=cases)
    def run(case: Any) -> None:
        nonlocal count
        count += 1
        status = send(api, case, None, [*CHECKS, negative_data_rejection])
        assert 400 <= status < 500

    run()
    assert count >= 200


def test_credentials_with_real_tokens_and_plausible_targets(api: Api) -> None:
    count = 0
    seen: set[int] = set()

    @fuzz(350)
    @given(case=api.operation("POST", "/v1/credentials").as_strategy(), token=TOKENS, body=BODIES)
    def run(case: Any, token: str | None, body: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        case.body = body
        seen.add(send(api, case, token))

    run()
    assert count >= 300
    assert {200, 400, 401, 403} <= seen, seen  # issued, refused target, refused token, denied


def test_git_credential_from_the_schema_and_with_plausible_targets(api: Api) -> None:
    """``POST /v1/git-credential``: generated text, and the bodies above as git's ``key=value`` lines."""
    count = 0
    seen: set[int] = set()

    @fuzz(250)
    @given(case=api.operation("POST", "/v1/git-credential").as_strategy(), token=TOKENS,
           body=st.one_of(st.none(), BODIES))
    def run(case: Any, token: str | None, body: dict[str, Any] | None) -> None:
        nonlocal count
        count += 1
        if body is not None:
            case.body = "".join(f"{key}={value}\n" for key, value in body.items())
        seen.add(send(api, case, token))

    run()
    assert count >= 200
    assert {200, 400, 401, 403} <= seen, seen


def test_whoami(api: Api) -> None:
    count = 0
    seen: set[int] = set()

    @fuzz(120)
    @given(case=api.operation("GET", "/v1/whoami").as_strategy(), token=TOKENS)
    def run(case: Any, token: str | None) -> None:
        nonlocal count
        count += 1
        seen.add(send(api, case, token))

    run()
    assert count >= 50
    assert {200, 401} <= seen, seen


@pytest.mark.parametrize(
    "path", ["/.well-known/ccweb", "/.well-known/ccweb.txt", "/helper/ccweb-helper", "/helper/ccweb-helper.sh",
             "/helper/ccweb-helper.sha256", "/helper/ccweb-helper.sh.sha256", "/healthz", "/readyz", "/metrics"]
)
def test_public_operations(api: Api, path: str) -> None:
    @fuzz(20)
    @given(case=api.operation("GET", path).as_strategy(), token=TOKENS)
    def run(case: Any, token: str | None) -> None:
        assert send(api, case, token) in (200, 304)

    run()


def test_every_operation_was_fuzzed(api: Api) -> None:
    documented = {f"{method.upper()} {path}" for path, item in api.schema.raw_schema["paths"].items()
                  for method in item}
    assert documented == {
        "POST /v1/credentials", "GET /v1/whoami", "GET /.well-known/ccweb", "GET /helper/ccweb-helper",
        "GET /healthz", "GET /readyz", "GET /metrics",
        "POST /v1/git-credential", "GET /.well-known/ccweb.txt", "GET /helper/ccweb-helper.sh",
        "GET /helper/ccweb-helper.sha256", "GET /helper/ccweb-helper.sh.sha256",
    }
