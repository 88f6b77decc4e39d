"""``ccweb serve`` with sign-in: it reads the session and client secrets when it starts, refuses to start in one
sentence (naming the key, never the value) when it cannot, and its workers sign people in with them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ccweb.sandbox.issuer import DevIssuer
from support import serve_issuer, wait_until_healthy

ROOT = Path(__file__).resolve().parents[3]
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("CCWEB_")},
       "PYTHONPATH": os.pathsep.join([str(ROOT / "service"), str(ROOT / "helper")]),
       "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example", "AWS_REGION": "us-east-1"}
SHORT = "PLANTEDSHORTSECRET"


@pytest.fixture(scope="module")
def issuer() -> Iterator[DevIssuer]:
    with serve_issuer() as dev:
        yield dev


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def policy_file(tmp_path: Path, issuer: DevIssuer, port: int, **web: Any) -> Path:
    (tmp_path / "client-secret").write_text(issuer.web_client_secret + "\n")
    (tmp_path / "session-secret").write_text("s" * 48 + "\n")
    policy = {
        "issuers": [{"name": "dev", "issuer": issuer.issuer_url, "audiences": ["ccweb", "ccweb-web"]}],
        "web": {"issuer": "dev", "client_id": "ccweb-web", "public_url": f"http://127.0.0.1:{port}",
                "client_secret": {"file": str(tmp_path / "client-secret")},
                "session_secret": {"file": str(tmp_path / "session-secret")}, **web},
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


@pytest.mark.parametrize(("web", "env", "said"), [
    ({"session_secret": {"file": "/nonexistent/session-secret"}}, {},
     "ccweb serve: web.session_secret: the file /nonexistent/session-secret does not exist"),
    ({"session_secret": {"env": "CCWEB_TEST_SESSION"}}, {"CCWEB_TEST_SESSION": SHORT},
     "ccweb serve: web.session_secret: the environment variable CCWEB_TEST_SESSION holds fewer than 32 bytes; make "
     "one with `openssl rand -base64 48`"),
    ({"client_secret": {"env": "CCWEB_TEST_CLIENT"}}, {},
     "ccweb serve: web.client_secret: the environment variable CCWEB_TEST_CLIENT is not set"),
], ids=["session-file-missing", "session-too-short", "client-env-unset"])
def test_serve_refuses_to_start_without_its_web_secrets_in_one_sentence(
        tmp_path: Path, issuer: DevIssuer, web: dict[str, Any], env: dict[str, str], said: str) -> None:
    config = policy_file(tmp_path, issuer, free_port(), **web)
    result = subprocess.run([sys.executable, "-m", "ccweb", "serve", "--config", str(config), "--port", "0"],
                            env={**ENV, **env}, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr == said + "\n"
    assert SHORT not in result.stderr


def test_serve_signs_people_in_with_the_secrets_it_read(tmp_path: Path, issuer: DevIssuer) -> None:
    port = free_port()
    config = policy_file(tmp_path, issuer, port)
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "ccweb", "serve", "--config", str(config), "--port", str(port),
                               "--workers", "2"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_healthy(server, url)
        with httpx.Client(base_url=url, trust_env=False, timeout=30) as browser:
            login = browser.get("/auth/login")
            assert login.status_code == 302
            authorize = httpx.URL(login.headers["location"])
            picked = httpx.post(authorize.copy_with(query=None), data={**dict(authorize.params), "user": "bob"},
                                timeout=30)
            done = browser.get(picked.headers["location"])
            assert done.status_code == 303, done.text
            assert 'data-identity="bob@example.com"' in browser.get("/").text
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert issuer.web_client_secret not in stderr and "s" * 48 not in stderr
