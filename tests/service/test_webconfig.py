"""The policy file's ``web:`` (the service's page and its sign-in): what is accepted, each refusal naming its key
(by ``ccweb check-config`` and ``ccweb schema`` too), and the secrets read from a file or the environment with
sentences that name the key and where the secret is, never the secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ccweb.cli import config_schema, main
from ccweb.config import ConfigError, parse_config
from ccweb.webconfig import (
    MAX_SECRET_BYTES,
    MIN_SESSION_SECRET_BYTES,
    SecretSource,
    WebSettings,
    read_secret,
    redirect_uri,
)

ROOT = Path(__file__).resolve().parents[2]
ISSUERS: list[dict[str, Any]] = [
    {"name": "corp", "issuer": "https://login.example.com", "audiences": ["https://ccweb.example.com", "ccweb-web"]},
    {"name": "other", "issuer": "https://other.example.com", "audiences": ["other-web"]},
]
SIGN_IN: dict[str, Any] = {
    "issuer": "corp",
    "client_id": "ccweb-web",
    "public_url": "https://ccweb.example.com",
    "session_secret": {"file": "/var/run/secrets/ccweb/session-secret"},
}
PLANTED = "planted-Secret-value-7f3a9c1e5b"  # shorter than a session secret may be


def policy(web: Any) -> dict[str, Any]:
    return {"issuers": ISSUERS, "web": web}


def web_of(web: Any) -> WebSettings:
    return parse_config(policy(web)).web


# -- accepted -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("web", "sign_in", "public_url"), [
    pytest.param({}, False, None, id="empty"),
    pytest.param({"public_url": "https://ccweb.example.com/"}, False, "https://ccweb.example.com", id="url-only"),
    pytest.param(SIGN_IN, True, "https://ccweb.example.com", id="public-client"),
    pytest.param({**SIGN_IN, "client_secret": {"env": "CCWEB_WEB_CLIENT_SECRET"}}, True, "https://ccweb.example.com",
                 id="confidential-client"),
    pytest.param({**SIGN_IN, "public_url": "https://tools.example.com/ccweb/"}, True,
                 "https://tools.example.com/ccweb", id="path-prefix"),
    pytest.param({**SIGN_IN, "public_url": "http://127.0.0.1:8700"}, True, "http://127.0.0.1:8700", id="loopback"),
    pytest.param({**SIGN_IN, "public_url": "http://[::1]:8700/"}, True, "http://[::1]:8700", id="loopback-v6"),
    pytest.param({**SIGN_IN, "scopes": ["openid", "groups"], "session_max_seconds": 300}, True,
                 "https://ccweb.example.com", id="scopes-and-short-sessions"),
])
def test_accepted(web: dict[str, Any], sign_in: bool, public_url: str | None) -> None:
    settings = web_of(web)
    assert settings.sign_in is sign_in
    assert settings.public_url == public_url
    if public_url is not None:
        assert redirect_uri(settings) == f"{public_url}/auth/callback"


def test_without_web_the_page_has_no_sign_in_and_the_defaults() -> None:
    settings = parse_config({"issuers": ISSUERS}).web
    assert settings == WebSettings()
    assert (settings.sign_in, settings.scopes, settings.session_max_seconds) == (
        False, ["openid", "email", "profile"], 28800)
    with pytest.raises(ValueError, match=r"web\.public_url is not set"):
        redirect_uri(settings)


def test_a_secret_source_is_a_file_or_a_variable() -> None:
    web = web_of({**SIGN_IN, "client_secret": {"env": "WEB_SECRET"}})
    assert web.session_secret == SecretSource(file="/var/run/secrets/ccweb/session-secret")
    assert web.client_secret == SecretSource(env="WEB_SECRET")


# -- refused, naming the key --------------------------------------------------------------------------------

REFUSED = [
    pytest.param({**SIGN_IN, "issuer": "nope"}, "web.issuer: no issuer is named 'nope'", id="unknown-issuer"),
    pytest.param({**SIGN_IN, "client_id": "other-web"},
                 "web.client_id: 'other-web' is not one of the audiences of issuer 'corp'", id="not-an-audience"),
    pytest.param({"issuer": "corp"}, "web.client_id: required with issuer (sign-in)", id="no-client-id"),
    pytest.param({k: v for k, v in SIGN_IN.items() if k != "public_url"},
                 "web.public_url: required with issuer (sign-in)", id="no-public-url"),
    pytest.param({k: v for k, v in SIGN_IN.items() if k != "session_secret"},
                 "web.session_secret: required with issuer (sign-in)", id="no-session-secret"),
    pytest.param({"client_id": "ccweb-web"}, "web.client_id: only used for sign-in: set issuer too",
                 id="client-id-without-issuer"),
    pytest.param({"session_secret": {"env": "S"}}, "web.session_secret: only used for sign-in",
                 id="session-secret-without-issuer"),
    pytest.param({"scopes": ["openid"]}, "web.scopes: only used for sign-in", id="scopes-without-issuer"),
    pytest.param({"session_max_seconds": 3600}, "web.session_max_seconds: only used for sign-in",
                 id="session-length-without-issuer"),
    pytest.param({**SIGN_IN, "public_url": "http://ccweb.example.com"},
                 "web.public_url: 'http://ccweb.example.com' must be https (http is allowed only on loopback",
                 id="plain-http"),
    pytest.param({**SIGN_IN, "public_url": "https://ccweb.example.com/?next=/"},
                 "web.public_url: 'https://ccweb.example.com/?next=/' must not carry a query, fragment or user name",
                 id="query"),
    pytest.param({**SIGN_IN, "public_url": "https://ccweb.example.com/#top"},
                 "web.public_url: 'https://ccweb.example.com/#top' must not carry", id="fragment"),
    pytest.param({**SIGN_IN, "public_url": "https://me@ccweb.example.com"},
                 "web.public_url: 'https://me@ccweb.example.com' must not carry", id="user-name"),
    pytest.param({**SIGN_IN, "public_url": "ccweb.example.com"},
                 "web.public_url: 'ccweb.example.com' is not an https URL", id="no-scheme"),
    pytest.param({**SIGN_IN, "public_url": "https://ccweb.exämple.com"},
                 "web.public_url: 'https://ccweb.exämple.com' is not a URL of printable ASCII", id="not-ascii"),
    pytest.param({**SIGN_IN, "public_url": "https://ccweb.example.com//evil.example"},
                 "web.public_url: 'https://ccweb.example.com//evil.example' has a path that starts with // or holds a "
                 "backslash", id="path-of-another-host"),
    pytest.param({**SIGN_IN, "public_url": "https://ccweb.example.com/\\evil.example"},
                 "web.public_url: 'https://ccweb.example.com/\\\\evil.example' has a path that starts with // or "
                 "holds a backslash", id="backslash"),
    pytest.param({**SIGN_IN, "session_secret": {"file": "/a", "env": "B"}},
                 "web.session_secret: name exactly one of file (a path) or env (an environment variable)", id="both"),
    pytest.param({**SIGN_IN, "session_secret": {}}, "web.session_secret: name exactly one of file", id="neither"),
    pytest.param({**SIGN_IN, "session_secret": {"file": "secrets/session"}},
                 "web.session_secret.file: 'secrets/session' is not an absolute path", id="relative-file"),
    pytest.param({**SIGN_IN, "session_secret": {"env": "SESSION-SECRET"}}, "web.session_secret.env: String should "
                 "match pattern", id="not-a-variable-name"),
    pytest.param({**SIGN_IN, "session_secret": {"path": "/a"}}, "web.session_secret.path: unknown key",
                 id="unknown-secret-key"),
    pytest.param({**SIGN_IN, "session_secret": "/var/run/secrets/ccweb/session-secret"},
                 "web.session_secret: Input should be a valid dictionary", id="secret-as-a-string"),
    pytest.param({**SIGN_IN, "client_secret": {"value": PLANTED}}, "web.client_secret.value: unknown key",
                 id="secret-written-in-the-policy"),
    pytest.param({**SIGN_IN, "scopes": ["email", "profile"]}, "web.scopes: must include 'openid'", id="no-openid"),
    pytest.param({**SIGN_IN, "scopes": ["openid", 'a"b']}, "web.scopes: 'a\"b' is not an OAuth scope",
                 id="bad-scope"),
    pytest.param({**SIGN_IN, "session_max_seconds": 299}, "web.session_max_seconds: Input should be greater than or "
                 "equal to 300", id="session-too-short"),
    pytest.param({**SIGN_IN, "session_max_seconds": 86401}, "web.session_max_seconds: Input should be less than or "
                 "equal to 86400", id="session-too-long"),
    pytest.param({**SIGN_IN, "session_max_seconds": "3600"}, "web.session_max_seconds: Input should be a valid "
                 "integer", id="session-as-a-string"),
    pytest.param({**SIGN_IN, "sesion_secret": {"env": "S"}}, "web.sesion_secret: unknown key", id="misspelt-key"),
]


@pytest.mark.parametrize(("web", "message"), REFUSED)
def test_refused_naming_the_key(web: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(policy(web))
    assert any(line.startswith(message) for line in raised.value.messages), raised.value.messages
    assert all(PLANTED not in line for line in raised.value.messages)


def test_every_missing_key_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(policy({"issuer": "corp"}))
    assert raised.value.messages == [f"web.{key}: required with issuer (sign-in)"
                                     for key in ("client_id", "public_url", "session_secret")]


# -- the secrets --------------------------------------------------------------------------------------------

KEY = "web.session_secret"
SESSION_SECRET = b"0123456789abcdef0123456789abcdef-" + PLANTED.encode()


@pytest.mark.parametrize(("content", "expected"), [
    pytest.param(SESSION_SECRET, SESSION_SECRET, id="as-written"),
    pytest.param(SESSION_SECRET + b"\n", SESSION_SECRET, id="echo-s-newline"),
    pytest.param(SESSION_SECRET + b"\r\n", SESSION_SECRET, id="crlf"),
    pytest.param(SESSION_SECRET + b"\n\n", SESSION_SECRET + b"\n", id="one-newline-only"),
    pytest.param(b"\x00\xff" * 20, b"\x00\xff" * 20, id="binary"),
    pytest.param(b"k" * MAX_SECRET_BYTES + b"\n", b"k" * MAX_SECRET_BYTES, id="longest"),
])
def test_a_file_secret(tmp_path: Path, content: bytes, expected: bytes) -> None:
    path = tmp_path / "session-secret"
    path.write_bytes(content)
    source = SecretSource(file=str(path))
    assert read_secret(source, KEY, {}, minimum=MIN_SESSION_SECRET_BYTES) == expected


def test_an_environment_secret() -> None:
    source = SecretSource(env="CCWEB_SESSION_SECRET")
    env = {"CCWEB_SESSION_SECRET": SESSION_SECRET.decode()}
    assert read_secret(source, KEY, env, minimum=MIN_SESSION_SECRET_BYTES) == SESSION_SECRET
    assert read_secret(SecretSource(env="S"), "web.client_secret", {"S": "x"}) == b"x"  # a client secret: any length


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCWEB_TEST_WEB_SECRET", PLANTED)
    assert read_secret(SecretSource(env="CCWEB_TEST_WEB_SECRET"), "web.client_secret") == PLANTED.encode()


def _file(tmp_path: Path, content: bytes | None, name: str = "session-secret") -> SecretSource:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    return SecretSource(file=str(path))


@pytest.mark.parametrize(("make", "env", "message"), [
    pytest.param(lambda d: _file(d, None), {}, "web.session_secret: the file {d}/session-secret does not exist",
                 id="missing-file"),
    pytest.param(lambda d: _file(d, b""), {}, "web.session_secret: the file {d}/session-secret is empty",
                 id="empty-file"),
    pytest.param(lambda d: _file(d, b"\n"), {}, "web.session_secret: the file {d}/session-secret is empty",
                 id="only-a-newline"),
    pytest.param(lambda d: _file(d, PLANTED.encode() + b"\n"), {},
                 f"web.session_secret: the file {{d}}/session-secret holds fewer than {MIN_SESSION_SECRET_BYTES} "
                 "bytes; make one with `openssl rand -base64 48`", id="short-file"),
    pytest.param(lambda d: _file(d, PLANTED.encode() * 200), {},
                 f"web.session_secret: the file {{d}}/session-secret holds more than {MAX_SECRET_BYTES} bytes",
                 id="long-file"),
    pytest.param(lambda d: SecretSource(file=str(d)), {},
                 "web.session_secret: cannot read the file {d}: Is a directory", id="a-directory"),
    pytest.param(lambda d: SecretSource(file=f"{d}/file/session-secret"), {},
                 "web.session_secret: cannot read the file {d}/file/session-secret: Not a directory",
                 id="under-a-file"),
    pytest.param(lambda d: SecretSource(env="CCWEB_SESSION_SECRET"), {},
                 "web.session_secret: the environment variable CCWEB_SESSION_SECRET is not set", id="unset-variable"),
    pytest.param(lambda d: SecretSource(env="CCWEB_SESSION_SECRET"), {"CCWEB_SESSION_SECRET": ""},
                 "web.session_secret: the environment variable CCWEB_SESSION_SECRET is empty", id="empty-variable"),
    pytest.param(lambda d: SecretSource(env="CCWEB_SESSION_SECRET"), {"CCWEB_SESSION_SECRET": PLANTED},
                 f"web.session_secret: the environment variable CCWEB_SESSION_SECRET holds fewer than "
                 f"{MIN_SESSION_SECRET_BYTES} bytes", id="short-variable"),
])
def test_a_secret_that_cannot_be_used(tmp_path: Path, make: Any, env: dict[str, str], message: str) -> None:
    (tmp_path / "file").write_bytes(PLANTED.encode())
    with pytest.raises(ConfigError) as raised:
        read_secret(make(tmp_path), KEY, env, minimum=MIN_SESSION_SECRET_BYTES)
    (line,) = raised.value.messages
    assert line.startswith(message.format(d=tmp_path)), line
    assert PLANTED not in line and PLANTED not in str(raised.value)


def test_a_file_is_read_only_as_far_as_a_secret_can_be(tmp_path: Path) -> None:
    """A device named by mistake (/dev/zero, /dev/urandom) is refused rather than read for ever."""
    with pytest.raises(ConfigError, match=f"/dev/zero holds more than {MAX_SECRET_BYTES} bytes"):
        read_secret(SecretSource(file="/dev/zero"), KEY, {}, minimum=MIN_SESSION_SECRET_BYTES)


# -- ccweb check-config and ccweb schema ----------------------------------------------------------------------


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "service"), str(ROOT / "helper")])}
    return subprocess.run([sys.executable, "-m", "ccweb", "check-config", str(path)], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def test_check_config_says_where_people_sign_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The secrets are not read: the file is checked where they are not (CI), the service reads them at start."""
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy({**SIGN_IN, "session_secret": {"file": f"{tmp_path}/absent"}})))
    assert main(["check-config", str(path)]) == 0
    assert "; web sign-in at corp as ccweb-web)" in capsys.readouterr().out
    path.write_text(yaml.safe_dump(policy({"public_url": "https://ccweb.example.com"})))
    assert main(["check-config", str(path)]) == 0
    assert "web sign-in" not in capsys.readouterr().out


def test_check_config_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy({**SIGN_IN, "client_id": "other-web", "client_secret": {"env": "1"}})))
    checked = check_config(path)
    assert checked.returncode == 1
    assert "web.client_secret.env: String should match pattern" in checked.stderr
    assert "Traceback" not in checked.stderr
    path.write_text(yaml.safe_dump(policy({**SIGN_IN, "client_id": "other-web"})))
    checked = check_config(path)
    assert checked.returncode == 1
    assert checked.stderr.startswith("web.client_id: 'other-web' is not one of the audiences of issuer 'corp'")


def schema_errors(data: Any) -> list[str]:
    schema = config_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [error.message for error in validator.iter_errors(data)]


def test_the_schema_describes_web() -> None:
    web = config_schema()["$defs"]["WebSettings"]["properties"]
    assert set(web) == set(WebSettings.model_fields)
    assert web["session_max_seconds"]["default"] == 28800
    assert json.dumps(web)  # plain JSON
    assert schema_errors(policy({**SIGN_IN, "client_secret": {"env": "CCWEB_WEB_CLIENT_SECRET"}})) == []


@pytest.mark.parametrize("web", [
    pytest.param({**SIGN_IN, "session_secret": {}}, id="secret-names-nothing"),
    pytest.param({**SIGN_IN, "session_secret": {"file": "/a", "env": "B"}}, id="secret-names-both"),
    pytest.param({**SIGN_IN, "session_secret": {"file": "relative"}}, id="relative-file"),
    pytest.param({**SIGN_IN, "session_secret": {"env": "A-B"}}, id="not-a-variable-name"),
    pytest.param({**SIGN_IN, "public_url": "https://ccweb.example.com/?q"}, id="query"),
    pytest.param({**SIGN_IN, "session_max_seconds": 60}, id="short-session"),
    pytest.param({**SIGN_IN, "client_secret": {"value": "x"}}, id="secret-in-the-file"),
    pytest.param({**SIGN_IN, "login": True}, id="unknown-key"),
])
def test_the_schema_refuses_what_the_service_refuses(web: dict[str, Any]) -> None:
    assert schema_errors(policy(web)), "the schema accepted it"
    with pytest.raises(ConfigError):
        parse_config(policy(web))
