"""The sandbox's stand-ins hold the line the real services hold: the git server refuses every password
CodeCommit would refuse, and the STS stand-in validates what STS validates."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from ccweb.sandbox.gitserver import create_demo_repository, create_git_app, policy_allows
from ccweb.sandbox.sts import DevSession, DevSTSStore, StsFault, create_sts_app
from ccweb.signing import AwsCredentials, git_password, git_username
from ccweb.sts import AssumeRoleRequest, BotoSTS, StsError
from support import serve

ROLE = "arn:aws:iam::111122223333:role/ccweb-developers"
REGION = "us-east-1"


def session_policy(*actions: str, resource: str = "arn:aws:codecommit:us-east-1:111122223333:demo") -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": list(actions), "Resource": [resource]}]})


@pytest.fixture(scope="module")
def store() -> DevSTSStore:
    return DevSTSStore()


@pytest.fixture(scope="module")
def git_url(store: DevSTSStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    repos = tmp_path_factory.mktemp("repos")
    create_demo_repository(repos, "demo")
    with serve(create_git_app(store, repos, region=REGION)) as url:
        yield url


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def fetch_refs(url: str, username: str, password: str, service: str = "git-upload-pack") -> httpx.Response:
    return httpx.get(f"{url}/v1/repos/demo/info/refs?service={service}", headers=basic(username, password))


def signed(session: DevSession, url: str, *, path: str = "/v1/repos/demo", region: str = REGION,
           hostname: str = "127.0.0.1", now: datetime | None = None, secret: str | None = None) -> str:
    return git_password(secret or session.credentials.secret_access_key, hostname=hostname, path=path,
                        region=region, now=now or datetime.now(UTC))


@pytest.fixture(scope="module")
def reader(store: DevSTSStore) -> DevSession:
    return store.assume_role(ROLE, "reader@example.com", "reader@example.com",
                             session_policy("codecommit:GitPull"), 3600)


def test_a_correct_password_lists_refs(git_url: str, reader: DevSession) -> None:
    response = fetch_refs(git_url, git_username(reader.credentials), signed(reader, git_url))
    assert response.status_code == 200
    assert b"refs/heads/main" in response.content


@pytest.mark.parametrize(("change", "message"), [
    ({"path": "/v1/repos/other"}, "signature we calculated does not match"),
    ({"region": "us-west-2"}, "signature we calculated does not match"),
    ({"hostname": "git-codecommit.us-east-1.amazonaws.com"}, "signature we calculated does not match"),
    ({"secret": "not-the-secret"}, "signature we calculated does not match"),
    ({"now": datetime(2020, 1, 1, tzinfo=UTC)}, "expired"),
], ids=["other-repository", "other-region", "other-host", "other-key", "stale"])
def test_passwords_codecommit_would_refuse_are_refused(git_url: str, reader: DevSession, change: dict[str, object],
                                                      message: str) -> None:
    password = signed(reader, git_url, **change)  # type: ignore[arg-type]
    response = fetch_refs(git_url, git_username(reader.credentials), password)
    assert response.status_code == 403
    assert message in response.text


@pytest.mark.parametrize("username", ["ASIAUNKNOWN%token", "{akid}%wrong-token", "{akid}"],
                         ids=["unknown-key", "wrong-session-token", "no-session-token"])
def test_usernames_that_name_no_live_session_are_refused(git_url: str, reader: DevSession, username: str) -> None:
    response = fetch_refs(git_url, username.format(akid=reader.access_key_id), signed(reader, git_url))
    assert response.status_code == 403
    assert "security token included in the request is invalid" in response.text


def test_no_credentials_asks_for_basic_auth(git_url: str) -> None:
    response = httpx.get(f"{git_url}/v1/repos/demo/info/refs?service=git-upload-pack")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")


def test_push_needs_git_push_in_the_session_policy(git_url: str, reader: DevSession) -> None:
    response = fetch_refs(git_url, git_username(reader.credentials), signed(reader, git_url), "git-receive-pack")
    assert response.status_code == 403
    assert "is not authorized to perform: codecommit:GitPush" in response.text
    assert reader.assumed_role_arn in response.text


def test_an_expired_session_is_refused(store: DevSTSStore, git_url: str) -> None:
    clocked = DevSTSStore(clock=lambda: 1_000_000.0)
    old = clocked.assume_role(ROLE, "old-session", "old", None, 900)
    store._sessions[old.access_key_id] = old  # the git server consults the shared store
    response = fetch_refs(git_url, git_username(old.credentials), signed(old, git_url))
    assert response.status_code == 403
    assert "expired" in response.text


@pytest.mark.parametrize(("policy", "action", "resource", "allowed"), [
    (session_policy("codecommit:GitPull"), "codecommit:GitPull", "arn:aws:codecommit:us-east-1:111122223333:demo",
     True),
    (session_policy("codecommit:GitPull"), "codecommit:GitPush", "arn:aws:codecommit:us-east-1:111122223333:demo",
     False),
    (session_policy("codecommit:Git*"), "codecommit:GitPush", "arn:aws:codecommit:us-east-1:111122223333:demo", True),
    (session_policy("CodeCommit:gitpull"), "codecommit:GitPull", "arn:aws:codecommit:us-east-1:111122223333:demo",
     True),
    (session_policy("codecommit:GitPull", resource="arn:aws:codecommit:*:111122223333:app-*"), "codecommit:GitPull",
     "arn:aws:codecommit:eu-west-1:111122223333:app-web", True),
    (session_policy("codecommit:GitPull", resource="arn:aws:codecommit:*:111122223333:app-*"), "codecommit:GitPull",
     "arn:aws:codecommit:eu-west-1:999999999999:app-web", False),
    (json.dumps({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"},
                               {"Effect": "Deny", "Action": "codecommit:GitPush", "Resource": "*"}]}),
     "codecommit:GitPush", "arn:aws:codecommit:us-east-1:111122223333:demo", False),
    ("not json", "codecommit:GitPull", "arn:aws:codecommit:us-east-1:111122223333:demo", False),
], ids=["pull", "push-not-granted", "wildcard-action", "case-insensitive-action", "wildcard-resource",
        "other-account", "explicit-deny-wins", "malformed"])
def test_session_policy_evaluation(policy: str, action: str, resource: str, allowed: bool) -> None:
    assert policy_allows(policy, action, resource) is allowed


@pytest.mark.parametrize(("args", "code"), [
    (("arn:aws:iam::1:role/x", "name-ok", "id-ok", None, 3600), "ValidationError"),
    ((ROLE, "bad name!", "id-ok", None, 3600), "ValidationError"),
    ((ROLE, "name-ok", "x" * 65, None, 3600), "ValidationError"),
    ((ROLE, "name-ok", "aws:me", None, 3600), "ValidationError"),
    ((ROLE, "name-ok", "id-ok", "{" * 3000, 3600), "PackedPolicyTooLarge"),
    ((ROLE, "name-ok", "id-ok", "{not json", 3600), "MalformedPolicyDocument"),
    ((ROLE, "name-ok", "id-ok", None, 60), "ValidationError"),
], ids=["role-arn", "session-name", "source-identity-length", "source-identity-aws-prefix", "policy-size",
        "policy-json", "duration"])
def test_sts_stand_in_validates_like_sts(args: tuple[str, str, str, str | None, int], code: str) -> None:
    with pytest.raises(StsFault) as raised:
        DevSTSStore().assume_role(*args)
    assert raised.value.code == code


def test_boto_sts_speaks_to_the_sts_stand_in(store: DevSTSStore) -> None:
    import asyncio

    import boto3

    with serve(create_sts_app(store)) as url:
        boto = boto3.session.Session(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="x", region_name=REGION)
        sts = BotoSTS(session=boto, region=REGION, endpoint_url=url)

        async def scenario() -> tuple[AwsCredentials, StsError]:
            try:
                creds = await sts.assume_role(AssumeRoleRequest(ROLE, "dana", "dana@example.com",
                                                                session_policy("codecommit:GitPull"), 900))
                with pytest.raises(StsError) as raised:
                    await sts.assume_role(AssumeRoleRequest(ROLE, "dana", "dana", "{", 900))
                return creds, raised.value
            finally:
                await sts.aclose()

        creds, error = asyncio.run(scenario())
        issued = store.lookup(creds.access_key_id)
        assert issued is not None
        assert issued.source_identity == "dana@example.com"
        assert issued.credentials.secret_access_key == creds.secret_access_key
        assert issued.credentials.session_token == creds.session_token
        assert creds.expiration is not None and creds.expiration > datetime.now(UTC)
        assert creds.expiration == issued.credentials.expiration
        assert error.code == "MalformedPolicyDocument"
        assert not error.retryable
        unsigned = httpx.post(url, data={"Action": "AssumeRole", "RoleArn": ROLE})
        assert unsigned.status_code == 403
        assert "MissingAuthenticationToken" in unsigned.text


def assume_role_form(name: str) -> dict[str, str]:
    return {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": ROLE, "RoleSessionName": name,
            "SourceIdentity": name, "DurationSeconds": "900"}


def test_the_sts_stand_in_answers_after_its_latency_without_holding_up_other_calls() -> None:
    """Five calls wait out the latency side by side (a blocking wait would let only one in at a time). The
    latency is waited out on a sleep that lasts until the test ends it, so no call can finish early."""
    import asyncio

    slept: list[float] = []
    over = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await over.wait()

    store = DevSTSStore(latency=0.2, sleep=sleep)
    transport = httpx.ASGITransport(app=create_sts_app(store))
    signed_header = {"Authorization": "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/x"}

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url="http://sts") as client:
            calls = [asyncio.create_task(client.post("/", data=assume_role_form(f"user-{n}"), headers=signed_header))
                     for n in range(5)]

            async def all_waiting() -> None:
                while store.in_flight < 5:
                    await asyncio.sleep(0)

            await asyncio.wait_for(all_waiting(), 30)  # a guard against a hang, not a measurement
            assert not store.calls, "no call is answered before its latency"
            over.set()
            return await asyncio.gather(*calls)

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * 5
    assert slept == [0.2] * 5
    assert (store.requests, store.max_in_flight, store.in_flight, len(store.calls)) == (5, 5, 0, 5)
    assert {session.caller for session in store.calls} == {"127.0.0.1:123"}  # httpx's ASGI client address


def test_the_sts_stand_in_answers_at_once_by_default() -> None:
    assert DevSTSStore().latency == 0
    with pytest.raises(ValueError, match="latency"):
        DevSTSStore(latency=-1)


@pytest.mark.parametrize("chars", [None, 200])
def test_the_sts_stand_in_mints_session_tokens_as_long_as_real_ones(chars: int | None) -> None:
    from ccweb.sandbox.sts import SESSION_TOKEN_CHARS

    store = DevSTSStore() if chars is None else DevSTSStore(session_token_chars=chars)
    tokens = [store.assume_role(ROLE, f"user-{n}", None, None, 900).credentials.session_token for n in range(3)]
    assert SESSION_TOKEN_CHARS >= 800
    assert all(t is not None and t.startswith("DEVSESSIONTOKEN") for t in tokens)
    assert {len(t or "") for t in tokens} == {chars or SESSION_TOKEN_CHARS}
    assert len(set(tokens)) == 3


def test_demo_repository_has_a_readme_on_main(tmp_path: Path) -> None:
    bare = create_demo_repository(tmp_path, "demo")
    assert (bare / "HEAD").read_text().strip() == "ref: refs/heads/main"
