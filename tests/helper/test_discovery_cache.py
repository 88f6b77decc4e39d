"""The service's discovery document kept between helper processes (``discovery.json`` in the cache directory):
used while fresh, fetched again when expired, dated in the future, corrupt or for another service, one entry
per service URL, 0600, and never in the way when it cannot be written. Against a loopback stand-in that counts
what it is asked."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ccweb_helper import discovery, login, login_tokens
from ccweb_helper.cache import Cache
from ccweb_helper.client import HelperError, ServiceURL, parse_service_url
from support import home_env, serve_json

CODECOMMIT = "git-codecommit.us-east-2.amazonaws.com"
ATTRS = f"protocol=https\nhost={CODECOMMIT}\npath=v1/repos/demo\n\n"
JWT = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJjaSJ9.c2ln"  # the stand-in checks nothing: any JWT-shaped token
REQUEST_TOKEN = "PLANTED-request-token-0c1d"
NOW = 1_800_000_000  # the time the helper is told, whatever the machine's clock says


class Service:
    """``/.well-known/ccweb`` (``document``), a GitHub-style token endpoint and ``/v1/credentials``; counts."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {
            "version": "1", "audience": "ccweb-ci", "git_endpoints": [{"host": "git.example.com", "region": "x"}],
            "login": [{"name": "corp", "issuer": "https://idp.example.com/", "client_id": "ccweb-cli",
                       "scopes": ["openid"]}],
            "helper": "/helper",
        }
        self.status = 200
        self.asked: list[str] = []
        self.audiences: list[str] = []  # what the GitHub-style token endpoint was asked for

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        self.asked.append(path.split("?", 1)[0])
        if path == "/.well-known/ccweb":
            return self.status, self.document
        if path.startswith("/token"):
            self.audiences.extend(parse_qs(urlsplit(path).query).get("audience", []))
            return 200, {"value": JWT}
        if path == "/v1/credentials":
            return 200, {"username": "ASIAEXAMPLE", "password": "20261123T000000Zsig", "password_expiry_utc": 1}
        return 404, {"error": "not_found"}


@contextlib.contextmanager
def running(service: Service) -> Iterator[str]:
    with serve_json(lambda asked: service.answer(asked.path)) as url:
        yield url


@pytest.fixture
def service() -> Iterator[tuple[Service, ServiceURL]]:
    stand_in = Service()
    with running(stand_in) as url:
        yield stand_in, parse_service_url(url, "CCWEB_URL")


class Process:
    """Helper processes one after another, as git starts them: each remembers what it fetched (``memory``),
    the next (``restart``) starts with nothing; all are told the time ``now``."""

    def __init__(self) -> None:
        self.memory: dict[str, discovery.Discovery] = {}
        self.now = float(NOW)

    def clock(self) -> float:
        return self.now

    def fetch(self, url: ServiceURL, env: dict[str, str] | None = None) -> discovery.Discovery:
        return discovery.fetch(url, 5, env, memory=self.memory, clock=self.clock)

    def restart(self) -> None:
        self.memory = {}


@pytest.fixture
def process() -> Process:
    return Process()


def env_for(tmp_path: Path) -> dict[str, str]:
    return {"CCWEB_CACHE_DIR": str(tmp_path / "cache")}


def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "cache" / discovery.FILE_NAME


def test_a_fresh_document_is_used_by_the_next_process_without_asking(
    service: tuple[Service, ServiceURL], tmp_path: Path, process: Process,
) -> None:
    stand_in, url = service
    env = env_for(tmp_path)
    first = process.fetch(url, env)
    process.restart()
    again = process.fetch(url, env)
    assert stand_in.asked == ["/.well-known/ccweb"]
    assert again == first
    assert first.audience == "ccweb-ci" and first.git_endpoints == ("git.example.com",)
    assert first.login == (discovery.LoginIssuer("corp", "https://idp.example.com", "ccweb-cli", ("openid",)),)


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_the_file_is_0600_in_a_0700_directory_and_holds_only_what_the_helper_reads(
    service: tuple[Service, ServiceURL], tmp_path: Path, process: Process,
) -> None:
    previous = os.umask(0)
    try:
        process.fetch(service[1], env_for(tmp_path))
    finally:
        os.umask(previous)
    path = cache_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    saved = json.loads(path.read_text())
    assert saved["version"] == discovery.FILE_VERSION
    assert set(saved["services"]) == {service[1].url}
    assert set(saved["services"][service[1].url]["document"]) == {"audience", "git_endpoints", "login"}
    assert [p.name for p in path.parent.iterdir()] == [discovery.FILE_NAME]  # no temporary file left behind


@pytest.mark.parametrize("age", [discovery.TTL_SECONDS, discovery.TTL_SECONDS * 10, -60],
                         ids=["just-expired", "long-expired", "in-the-future"])
def test_an_expired_or_future_entry_is_fetched_again_and_replaced(
    service: tuple[Service, ServiceURL], tmp_path: Path, process: Process, age: int,
) -> None:
    stand_in, url = service
    env = env_for(tmp_path)
    process.fetch(url, env)
    stand_in.document["audience"] = "renamed"
    process.restart()
    process.now = NOW + age
    assert process.fetch(url, env).audience == "renamed"
    assert stand_in.asked == ["/.well-known/ccweb"] * 2
    process.restart()
    assert process.fetch(url, env).audience == "renamed"  # the new one is kept
    assert len(stand_in.asked) == 2


@pytest.mark.parametrize("content", [
    b"", b"not json", b"[]", b'{"version": 99, "services": {}}', b'{"version": VERSION, "services": []}',
    b'{"version": VERSION, "services": {"URL": "x"}}',
    b'{"version": VERSION, "services": {"URL": {"fetched_at": "now", "document": {"git_endpoints": []}}}}',
    b'{"version": VERSION, "services": {"URL": {"fetched_at": true, "document": {"git_endpoints": []}}}}',
    b'{"version": VERSION, "services": {"URL": {"fetched_at": NOW, "document": ["x"]}}}',
    b'{"version": VERSION, "services": {"URL": {"fetched_at": NOW, "document": {"audience": "a"}}}}',
    b"\xff\xfe" + b"x" * 100,
], ids=["empty", "garbage", "list", "version", "services-list", "entry-string", "time-string", "time-bool",
        "document-list", "no-endpoints", "binary"])
def test_a_corrupt_cache_is_ignored_and_replaced(
    service: tuple[Service, ServiceURL], tmp_path: Path, process: Process, content: bytes,
) -> None:
    stand_in, url = service
    path = cache_file(tmp_path)
    path.parent.mkdir(mode=0o700)
    now = str(NOW).encode()
    version = str(discovery.FILE_VERSION).encode()
    path.write_bytes(content.replace(b"URL", url.url.encode()).replace(b"NOW", now).replace(b"VERSION", version))
    env = env_for(tmp_path)
    assert process.fetch(url, env).audience == "ccweb-ci"
    assert stand_in.asked == ["/.well-known/ccweb"]
    process.restart()
    process.fetch(url, env)
    assert stand_in.asked == ["/.well-known/ccweb"]  # replaced by a good one


def test_a_cached_document_is_checked_like_a_fetched_one(
    service: tuple[Service, ServiceURL], tmp_path: Path, process: Process,
) -> None:
    stand_in, url = service
    path = cache_file(tmp_path)
    path.parent.mkdir(mode=0o700)
    odd = {"audience": 5, "git_endpoints": [{"host": "GIT.Example.com"}, "x", {}], "login": [{"name": "n"}, 3]}
    entry = {"fetched_at": NOW, "document": odd}
    path.write_text(json.dumps({"version": discovery.FILE_VERSION, "services": {url.url: entry}}))
    found = process.fetch(url, env_for(tmp_path))
    assert found == discovery.Discovery(audience="", git_endpoints=("git.example.com",), login=())
    assert stand_in.asked == []


def test_each_service_url_has_its_own_entry(tmp_path: Path, process: Process) -> None:
    first, second = Service(), Service()
    second.document["audience"] = "other"
    env = env_for(tmp_path)
    with running(first) as one, running(second) as two:
        urls = parse_service_url(one, "CCWEB_URL"), parse_service_url(two, "CCWEB_URL")
        assert [process.fetch(u, env).audience for u in urls] == ["ccweb-ci", "other"]
        process.restart()
        assert [process.fetch(u, env).audience for u in urls] == ["ccweb-ci", "other"]
    assert (first.asked, second.asked) == (["/.well-known/ccweb"], ["/.well-known/ccweb"])
    assert set(json.loads(cache_file(tmp_path).read_text())["services"]) == {urls[0].url, urls[1].url}


def test_the_file_keeps_a_bounded_number_of_services(
    service: tuple[Service, ServiceURL], tmp_path: Path, process: Process,
) -> None:
    path = cache_file(tmp_path)
    path.parent.mkdir(mode=0o700)
    others = {f"https://s{n}.example.com": {"fetched_at": NOW - n, "document": {"git_endpoints": []}}
              for n in range(40)}
    path.write_text(json.dumps({"version": discovery.FILE_VERSION, "services": others}))
    process.fetch(service[1], env_for(tmp_path))
    kept = json.loads(path.read_text())["services"]
    assert len(kept) == discovery.MAX_SERVICES
    assert service[1].url in kept and "https://s0.example.com" in kept and "https://s39.example.com" not in kept


def test_a_refused_document_is_not_kept(
    service: tuple[Service, ServiceURL], tmp_path: Path, process: Process,
) -> None:
    stand_in, url = service
    stand_in.status = 503
    with pytest.raises(HelperError, match="did not list git endpoints"):
        process.fetch(url, env_for(tmp_path))
    assert not cache_file(tmp_path).exists()


def test_without_an_environment_the_file_is_neither_read_nor_written(
    service: tuple[Service, ServiceURL], tmp_path: Path, process: Process,
) -> None:
    stand_in, url = service
    env = env_for(tmp_path)
    process.fetch(url, env)
    process.restart()
    process.fetch(url)  # doctor, status, setup, login: always what the service says now
    assert len(stand_in.asked) == 2
    cache_file(tmp_path).unlink()
    process.restart()
    process.fetch(url)
    assert not cache_file(tmp_path).exists()


def test_a_cache_directory_that_cannot_be_written_is_no_failure(
    service: tuple[Service, ServiceURL], tmp_path: Path, process: Process,
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    env = {"CCWEB_CACHE_DIR": str(blocked / "cache")}  # below a regular file: never a directory
    assert process.fetch(service[1], env).audience == "ccweb-ci"
    process.restart()
    assert process.fetch(service[1], env).audience == "ccweb-ci"
    assert len(service[0].asked) == 2


def test_a_cached_login_token_source_reads_the_kept_document(
    service: tuple[Service, ServiceURL], tmp_path: Path, process: Process,
) -> None:
    stand_in, url = service
    env = env_for(tmp_path)
    entry = {"name": "corp", "issuer": "https://idp.example.com", "client_id": "ccweb-cli", "id_token": JWT,
             "expires_at": NOW + 3600, "service": url.url}
    Cache(tmp_path / "cache").write({"version": login_tokens.CACHE_VERSION,
                                     "logins": {f"{url.url} https://idp.example.com ccweb-cli": entry}})
    for _ in range(2):
        process.restart()
        assert login.token(url, env, 5, stderr=io.StringIO(), interactive=False, cached_discovery=True,
                           memory=process.memory, clock=process.clock) == JWT
    assert stand_in.asked == ["/.well-known/ccweb"]
    process.restart()
    # `ccweb-helper status`: asks
    login.token(url, env, 5, stderr=io.StringIO(), interactive=False, memory=process.memory, clock=process.clock)
    assert len(stand_in.asked) == 2


def test_git_in_a_github_actions_job_asks_the_service_for_its_audience_once(tmp_path: Path) -> None:
    stand_in = Service()
    home = tmp_path / "home"
    home.mkdir()
    with running(stand_in) as url:
        env = home_env(home, XDG_CACHE_HOME=str(home / ".cache"), CCWEB_URL=url, CI="true", GITHUB_ACTIONS="true",
                       ACTIONS_ID_TOKEN_REQUEST_URL=url + "/token?api-version=2.0",
                       ACTIONS_ID_TOKEN_REQUEST_TOKEN=REQUEST_TOKEN)
        for _ in range(3):
            run = subprocess.run([sys.executable, "-m", "ccweb_helper", "get"], input=ATTRS, env=env,
                                 capture_output=True, text=True, timeout=60, check=False)
            assert (run.returncode, run.stderr) == (0, ""), run.stderr
            assert run.stdout.startswith("username=ASIAEXAMPLE\npassword=")
    assert stand_in.asked == ["/.well-known/ccweb"] + ["/token", "/v1/credentials"] * 3
    assert (home / ".cache" / "ccweb" / discovery.FILE_NAME).exists()


@pytest.mark.parametrize("source", ["CCWEB_TOKEN", "GitHub Actions"])
def test_get_over_http_imports_no_module_it_does_not_need(tmp_path: Path, source: str) -> None:
    """What git waits for on every command: no http.client (its email parser), ssl (an http URL), typing,
    subprocess (CCWEB_URL is set), tempfile, hashlib or secrets."""
    stand_in = Service()
    home = tmp_path / "home"
    home.mkdir()
    heavy = ("http.client", "email.parser", "ssl", "typing", "subprocess", "tempfile", "hashlib", "secrets")
    code = ("import sys; from ccweb_helper.cli import main; status = main(['get']); "
            f"sys.stderr.write(repr([m for m in {heavy!r} if m in sys.modules])); sys.exit(status)")
    with running(stand_in) as url:
        extra = {"CCWEB_TOKEN": JWT} if source == "CCWEB_TOKEN" else {
            "CI": "true", "GITHUB_ACTIONS": "true", "ACTIONS_ID_TOKEN_REQUEST_URL": url + "/token",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": REQUEST_TOKEN}
        env = home_env(home, XDG_CACHE_HOME=str(home / ".cache"), CCWEB_URL=url, **extra)
        run = subprocess.run([sys.executable, "-c", code], input=ATTRS, env=env, capture_output=True, text=True,
                             timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("username=ASIAEXAMPLE\n")
    assert run.stderr == "[]"


# A cache directory of another user, or one others may write -------------------------------------------------

PLANTED = {"audience": "sts.attacker.example", "git_endpoints": [{"host": "git.example.com"}],
           "login": [{"name": "corp", "issuer": "https://idp.attacker.example", "client_id": "ccweb-cli"}]}


def plant_document(directory: Path, url: str, fetched_at: float, *, owner: tuple[int, int] | None = None,
                   mode: int = 0o755) -> bytes:
    """A fresh ``discovery.json`` for ``url`` that would send CI jobs and people elsewhere; its bytes."""
    directory.mkdir()
    path = directory / discovery.FILE_NAME
    entry = {"fetched_at": fetched_at, "document": PLANTED}
    path.write_text(json.dumps({"version": discovery.FILE_VERSION, "services": {url: entry}}))
    if owner is not None:
        for planted in (path, directory):
            os.chown(planted, *owner)
    directory.chmod(mode)
    return path.read_bytes()


def nobody() -> tuple[int, int]:
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    import pwd

    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


@pytest.mark.skipif(os.name != "posix", reason="POSIX owners and modes")
@pytest.mark.parametrize("whose", ["nobody", "group-writable"])
def test_a_document_in_a_directory_another_user_controls_is_not_used(
    service: tuple[Service, ServiceURL], tmp_path: Path, process: Process, capsys: pytest.CaptureFixture[str],
    whose: str,
) -> None:
    stand_in, url = service
    directory = tmp_path / "cache"
    if whose == "nobody":
        planted = plant_document(directory, url.url, NOW, owner=nobody())
        why = "is owned by another user"
    else:
        planted = plant_document(directory, url.url, NOW, mode=0o775)
        why = "is writable by group (mode 0775)"
    for _ in range(2):
        found = process.fetch(url, env_for(tmp_path))
        assert found.audience == "ccweb-ci"
        assert [login.issuer for login in found.login] == ["https://idp.example.com"]
        process.restart()
    assert stand_in.asked == ["/.well-known/ccweb"] * 2, "asked each time: nothing was kept there either"
    assert (directory / discovery.FILE_NAME).read_bytes() == planted
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ccweb: not using the cache directory {directory}: it {why}")


@pytest.mark.skipif(os.name != "posix", reason="POSIX owners")
def test_a_ci_job_asks_for_the_services_audience_not_a_planted_one(tmp_path: Path) -> None:
    stand_in = Service()
    home = tmp_path / "home"
    home.mkdir()
    owner = nobody()
    with running(stand_in) as url:
        plant_document(home / "shared-cache", parse_service_url(url, "CCWEB_URL").url, time.time(), owner=owner)
        env = home_env(home, CCWEB_CACHE_DIR=str(home / "shared-cache"), CCWEB_URL=url, CI="true",
                       GITHUB_ACTIONS="true", ACTIONS_ID_TOKEN_REQUEST_URL=url + "/token?api-version=2.0",
                       ACTIONS_ID_TOKEN_REQUEST_TOKEN=REQUEST_TOKEN)
        run = subprocess.run([sys.executable, "-m", "ccweb_helper", "get"], input=ATTRS, env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("username=ASIAEXAMPLE\npassword=")
    assert stand_in.audiences == ["ccweb-ci"]
    assert run.stderr == (
        f"ccweb: not using the cache directory {home / 'shared-cache'}: it is owned by another user (uid {owner[0]}); "
        "chown it to yourself, or set CCWEB_CACHE_DIR to a directory of your own. Working without a cache: a login "
        "is not kept.\n"
    )
