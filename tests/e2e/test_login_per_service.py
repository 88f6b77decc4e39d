"""A login stays with the service it was made for. A second ccweb service on loopback (a partner's, configured
for its own git host with ``credential.<url>.ccwebUrl``) names the sandbox's issuer and login client in its
discovery document; a person signed in to the company's service (the sandbox) runs git against the partner's
host. The partner records every Authorization header it receives: the company's token must never be one, and
git at a terminal never signs in for the partner by itself (an identity provider with a live session would
complete that sign-in without asking): only ``ccweb-helper login --url <partner>`` does, saying what it means."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.sandbox.dev import REGION, Sandbox
from ccweb.sandbox.issuer import CLIENT_ID
from support import RecordingSTS, device_login, home_env, serve

PARTNER_GIT = "git.partner.test"
CODECOMMIT = "git-codecommit.us-east-1.amazonaws.com"


def attrs(host: str) -> str:
    return f"protocol=https\nhost={host}\npath=v1/repos/demo\n\n"


class Partner:
    """A real ccweb service whose only issuer is the sandbox's, with the sandbox's login client; it grants
    nothing, and records the Authorization header of every request it receives."""

    def __init__(self, issuer_url: str) -> None:
        self.url = ""
        self.authorizations: list[str] = []
        self.paths: list[str] = []
        config = parse_config({
            "issuers": [{"name": "corp", "issuer": issuer_url, "audiences": [CLIENT_ID],
                         "login": {"client_id": CLIENT_ID, "scopes": ["openid", "email", "offline_access"]}}],
            "git_endpoints": [{"host": PARTNER_GIT, "region": REGION}],
        })
        self.inner = create_app(config, sts=RecordingSTS())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
            headers = dict(scope["headers"])
            if b"authorization" in headers:
                self.authorizations.append(headers[b"authorization"].decode())
        await self.inner(scope, receive, send)


@pytest.fixture
def partner(sandbox: Sandbox) -> Iterator[Partner]:
    running = Partner(sandbox.issuer_url)
    with serve(running) as url:
        running.url = url
        yield running


def environment(home: Path, sandbox: Sandbox, partner: Partner) -> dict[str, str]:
    """git configured as the README says, plus the partner's service for the partner's git host."""
    config = home / ".gitconfig"
    if not config.exists():
        config.write_text(f'[ccweb]\n\turl = {sandbox.api_url}\n'
                          f'[credential "https://{PARTNER_GIT}"]\n\tccwebUrl = {partner.url}\n')
    return home_env(home, CCWEB_CACHE_DIR=str(home / "cache"))


def helper(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ccweb_helper", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def at_terminal(env: dict[str, str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    """The helper with its stderr on a terminal (a pty, read as it is written), as git runs it from a shell;
    git's GIT_TERMINAL_PROMPT=0 unset. (exit status, stdout, what the terminal showed)."""
    env = {k: v for k, v in env.items() if k != "GIT_TERMINAL_PROMPT"}
    master, slave = pty.openpty()
    shown: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO once the helper has gone
                return
            if not data:
                return
            shown.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    try:
        process = subprocess.Popen([sys.executable, "-m", "ccweb_helper", *args], env=env, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=slave, text=True, start_new_session=True)
        os.close(slave)
        reader.start()
        try:
            out, _ = process.communicate(stdin, timeout=60)
        except subprocess.TimeoutExpired:  # waiting for a sign-in nobody completes: shown as what it printed
            process.kill()
            out, _ = process.communicate()
        reader.join(10)
    finally:
        os.close(master)
    return process.returncode, out, b"".join(shown).decode().replace("\r\n", "\n")


def logins(home: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((home / "cache" / "login.json").read_text())["logins"]
    return found


def bearer_tokens(home: Path) -> set[str]:
    return {"Bearer " + entry["id_token"] for entry in logins(home).values()}


def test_the_company_login_is_never_sent_to_another_service_naming_its_issuer(
    sandbox: Sandbox, partner: Partner, home: Path,
) -> None:
    env = environment(home, sandbox, partner)
    device_login(env)
    company = helper(env, "get", stdin=attrs(CODECOMMIT))
    assert company.returncode == 0, company.stderr
    (entry,) = logins(home).values()
    assert entry["service"] == sandbox.api_url

    got = helper(env, "get", stdin=attrs(PARTNER_GIT))
    assert (got.returncode, got.stdout) == (1, "quit=1\n")
    assert got.stderr == (
        f"ccweb: you have not signed in for the ccweb service at {partner.url} (a login is used only with the "
        f"service it was made for); run `ccweb-helper login --url {partner.url}`.\n"
    )
    assert "/.well-known/ccweb" in partner.paths, "the partner was asked whether the host is its own"
    assert partner.authorizations == [], "the partner received no token at all"

    status = helper(env, "status", "--url", partner.url)
    assert status.returncode == 1 and f"not signed in for the ccweb service at {partner.url}" in status.stderr
    assert partner.authorizations == []


def test_git_at_a_terminal_never_signs_in_for_the_other_service_by_itself(
    sandbox: Sandbox, partner: Partner, home: Path,
) -> None:
    env = environment(home, sandbox, partner)
    device_login(env)
    code, out, shown = at_terminal(env, "get", stdin=attrs(PARTNER_GIT))
    assert (code, out) == (1, "quit=1\n"), shown
    assert shown == (
        f"ccweb: you have not signed in for the ccweb service at {partner.url} (a login is used only with the "
        f"service it was made for); run `ccweb-helper login --url {partner.url}`.\n"
    ), "no sign-in was started: no address, no code"
    assert partner.authorizations == []
    assert len(logins(home)) == 1, "no login was made for the partner"
    code, out, shown = at_terminal(env, "get", stdin=attrs(CODECOMMIT))
    assert code == 0 and out.startswith("username="), shown  # the company's own login, as before


def test_the_other_service_gets_a_sign_in_of_its_own(sandbox: Sandbox, partner: Partner, home: Path) -> None:
    env = environment(home, sandbox, partner)
    first = device_login(env)
    assert "you are signing in to" not in first, "the first service's sign-in needs no warning"
    (company,) = bearer_tokens(home)
    shown = device_login(env, "--url", partner.url)
    assert shown.startswith(
        f"ccweb: you are signing in to {partner.url} with the identity provider you use for {sandbox.api_url}: "
        f"{partner.url} will receive a token that {sandbox.api_url} accepts too, so sign in only if you trust "
        f"{partner.url} with it.\nccweb: to sign in to corp, open "
    ), shown
    assert {e["service"] for e in logins(home).values()} == {sandbox.api_url, partner.url}
    assert company in bearer_tokens(home), "the company's login was left as it was"

    got = helper(env, "get", stdin=attrs(PARTNER_GIT))
    assert (got.returncode, got.stdout) == (1, "quit=1\n")  # the partner grants nothing
    assert partner.authorizations, "the partner received the token signed in for it"
    assert company not in partner.authorizations
    assert set(partner.authorizations) <= bearer_tokens(home)

    out = helper(env, "logout", "--url", partner.url)
    assert out.returncode == 0, out.stderr
    assert f"Signed out of {partner.url}" in out.stdout
    assert bearer_tokens(home) == {company}, "only the partner's login was forgotten"
    assert helper(env, "get", stdin=attrs(CODECOMMIT)).returncode == 0

    everything = helper(env, "logout")
    assert everything.returncode == 0, everything.stderr
    assert not (home / "cache" / "login.json").exists()


def test_a_login_cached_without_its_service_is_used_for_none(sandbox: Sandbox, partner: Partner, home: Path) -> None:
    """A cache written before logins were kept per service: its entries are keyed by issuer and client only."""
    env = environment(home, sandbox, partner)
    device_login(env)
    path = home / "cache" / "login.json"
    document = json.loads(path.read_text())
    (entry,) = document["logins"].values()
    del entry["service"]
    document["logins"] = {f"{entry['issuer']} {entry['client_id']}": entry}
    path.write_text(json.dumps(document))
    for host, service in ((CODECOMMIT, sandbox.api_url), (PARTNER_GIT, partner.url)):
        got = helper(env, "get", stdin=attrs(host))
        assert (got.returncode, got.stdout) == (1, "quit=1\n")
        assert got.stderr.startswith(f"ccweb: you have not signed in for the ccweb service at {service} ")
    assert partner.authorizations == []
    status = helper(env, "status")
    assert status.returncode == 1 and status.stderr.startswith("ccweb: you have not signed in for the ccweb service")
