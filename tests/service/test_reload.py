"""Policy hot reload on a real server: a changed file is picked up, an invalid one refused (the running
policy stays), sessions of changed rules dropped; SIGHUP to a real ``ccweb serve``, with one or two workers."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from ccweb.app import create_app
from ccweb.config import Config, load_config
from ccweb.reload import RunningPolicy, refused_keys
from ccweb.sandbox.issuer import DevIssuer
from support import RecordingSTS, serve, serve_issuer

ROOT = Path(__file__).resolve().parents[2]
ROLE = "arn:aws:iam::111122223333:role/"
HOST = "git-codecommit.us-east-1.amazonaws.com"


def policy(issuer_url: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "issuers": [{"name": "corp", "issuer": issuer_url, "audiences": ["ccweb"]}],
        "rules": [
            {"name": "builders", "issuer": "corp", "claims": {"groups": "build"}, "role_arn": ROLE + "build",
             "repositories": ["*"], "access": "write"},
            {"name": "readers", "issuer": "corp", "claims": {"groups": "read"}, "role_arn": ROLE + "read",
             "repositories": ["*"]},
        ],
    }
    data.update(changes)
    return data


def write(path: Path, data: dict[str, Any] | str) -> None:
    """Replace the file the way editors and ConfigMaps do: a new file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    os.replace(tmp, path)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def issuer() -> Iterator[tuple[DevIssuer, list[str]]]:
    """The development issuer on loopback, and the paths it was asked for."""
    asked: list[str] = []
    with serve_issuer(asked) as issuer:
        yield issuer, asked


class Env:
    def __init__(self, url: str, path: Path, issuer: DevIssuer, sts: RecordingSTS, asked: list[str], *,
                 app: FastAPI) -> None:
        self.url, self.path, self.issuer, self.sts, self.asked, self.app = url, path, issuer, sts, asked, app
        self.applied: list[bool] = []
        """For each file the running policy was handed (the watcher's first look included): whether it changed."""

    def policy(self, **changes: Any) -> dict[str, Any]:
        return policy(self.issuer.issuer_url, **changes)

    def get(self, groups: str, repository: str = "app", sub: str | None = None) -> httpx.Response:
        token = self.issuer.mint({"sub": sub or f"u-{groups}", "groups": [groups]})
        return httpx.post(f"{self.url}/v1/credentials", headers={"Authorization": f"Bearer {token}"},
                          json={"protocol": "https", "host": HOST, "path": f"v1/repos/{repository}"}, timeout=30)

    def state(self) -> dict[str, Any]:
        info: dict[str, Any] = httpx.get(f"{self.url}/readyz", timeout=30).json()["policy"]
        return info


def applied_files(running: RunningPolicy) -> list[bool]:
    """Records, in order, whether each configuration the running policy is handed changes it."""
    outcomes: list[bool] = []
    apply = running.apply

    def recorded(config: Config, *, trigger: str = "reload") -> bool:
        changed = apply(config, trigger=trigger)
        outcomes.append(changed)
        return changed

    setattr(running, "apply", recorded)  # noqa: B010 (a method of this one object)
    return outcomes


@pytest.fixture
def env(issuer: tuple[DevIssuer, list[str]], tmp_path: Path) -> Iterator[Env]:
    dev, asked = issuer
    path = tmp_path / "policy.yaml"
    write(path, policy(dev.issuer_url))
    sts = RecordingSTS()
    app = create_app(load_config(path), sts=sts, config_path=path, reload_interval=0.05)
    applied = applied_files(app.state.policy)
    with serve(app) as url:
        served = Env(url, path, dev, sts, asked, app=app)
        served.applied = applied
        yield served


def test_an_edited_file_is_picked_up(env: Env) -> None:
    before = env.state()
    assert before["reloads"] == 0 and before["reload_error"] is None
    assert env.get("ops").status_code == 403
    rules = [*env.policy()["rules"], {"name": "ops", "issuer": "corp", "claims": {"groups": "ops"},
                                      "role_arn": ROLE + "ops", "repositories": ["app"]}]
    write(env.path, env.policy(rules=rules))
    after = wait_for(lambda: (s := env.state())["reloads"] == 1 and s, "the reload")
    assert after["digest"] != before["digest"]
    granted = env.get("ops")
    assert granted.status_code == 200, granted.text
    assert granted.json()["rule"] == "ops"


def test_an_invalid_file_is_refused_and_the_running_policy_stays(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    before = env.state()
    bad = env.policy()
    bad["rules"][1]["role_arn"] = "arn:aws:iam::1:role/x"
    bad["rules"][0]["claims"] = {"email": {"pattern": "("}}
    with caplog.at_level(logging.ERROR, logger="ccweb.reload"):
        write(env.path, bad)
        state = wait_for(lambda: (s := env.state())["reload_error"] and s, "the refusal")
    assert state["digest"] == before["digest"] and state["reloads"] == 0
    assert sorted(state["reload_error"]) == ["rules[0].claims.email.pattern", "rules[1].role_arn"]
    assert state["reload_refused_at"]
    [record] = [r for r in caplog.records if r.name == "ccweb.reload"]
    message = record.getMessage()
    assert "refused" in message and "the running policy stays" in message
    assert "rules[1].role_arn: not an IAM role ARN" in message
    assert env.get("build").status_code == 200  # still the old rules

    write(env.path, "issuers: [")  # not even YAML
    wait_for(lambda: env.state()["reload_error"] == ["line 1, column 11"], "the second refusal")

    write(env.path, env.policy(rate_limit={"burst": 100}))
    fixed = wait_for(lambda: (s := env.state())["reloads"] == 1 and s, "the good file")
    assert fixed["reload_error"] is None and fixed["reload_refused_at"] is None


PLANTED = "ghp_PLANTEDsecret0123456789abcdefABCDEF"
"""A value that looks like a secret pasted into the wrong key of the policy file."""


def _glob(data: dict[str, Any]) -> str:
    data["rules"][0]["repositories"] = [f"{PLANTED} x"]
    return yaml.safe_dump(data)


def _issuer(data: dict[str, Any]) -> str:
    data["rules"][1]["issuer"] = PLANTED
    return yaml.safe_dump(data)


def _twice(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data) + f"{PLANTED}: 1\n{PLANTED}: 2\n"


REFUSALS = {
    # name: (the file, the key /readyz names: for a YAML error, where the file's last line starts)
    "a value quoted by its problem": (_glob, "rules[0].repositories[0]"),
    "a reference to no issuer": (_issuer, "rules[1].issuer"),
    "a key written twice (YAML)": (_twice, "line {last}, column 1"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_readyz_names_the_keys_of_a_refused_file_never_its_values(
    env: Env, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    """Anyone can ask /readyz: it says the file was refused and where, while the values the problems quote stay
    in the log, for the operators."""
    bad, key = REFUSALS[case]
    text = bad(env.policy())
    key = key.format(last=text.count("\n"))
    with caplog.at_level(logging.ERROR, logger="ccweb.reload"):
        write(env.path, text)
        wait_for(lambda: env.state()["reload_error"], "the refusal")
    readiness = httpx.get(f"{env.url}/readyz")
    assert readiness.json()["policy"]["reload_error"] == [key]
    assert PLANTED not in readiness.text
    [record] = [r for r in caplog.records if r.name == "ccweb.reload"]
    assert PLANTED in record.getMessage() and key.split(",")[0] in record.getMessage()


REFUSED_KEYS = {
    "key and problem": (["rules[2].role_arn: not an IAM role ARN"], ["rules[2].role_arn"]),
    "a problem quoting a value": (["rules[0].repositories[1]: 'a b' is not a repository glob"],
                                  ["rules[0].repositories[1]"]),
    "claim names with slashes, colons and dots": (["rules[0].claims.https://x.example/groups: 'v' is wrong",
                                                   "deny[1].claims./realm_access/roles.pattern: bad"],
                                                  ["rules[0].claims.https://x.example/groups",
                                                   "deny[1].claims./realm_access/roles.pattern"]),
    "the whole document": (["(top level): the configuration must be a mapping"], ["(top level)"]),
    "a YAML error": (["/etc/ccweb/policy.yaml (line 3, column 7): found 'secret'"], ["line 3, column 7"]),
    "an unreadable file": (["/etc/ccweb/policy.yaml: cannot read the configuration file: Permission denied"],
                           ["(the file)"]),
    "no key to name": (["something 'odd': happened", "no separator at all"], ["(the file)"]),
    "one key, two problems": (["rules[0].name: a", "rules[0].name: b"], ["rules[0].name"]),
}


@pytest.mark.parametrize("case", REFUSED_KEYS)
def test_refused_keys_keep_the_key_and_drop_the_problem(case: str) -> None:
    problems, keys = REFUSED_KEYS[case]
    assert refused_keys(problems, Path("/etc/ccweb/policy.yaml")) == keys


def test_sessions_of_a_changed_rule_are_dropped(env: Env) -> None:
    for _ in range(2):
        assert env.get("build").status_code == 200
        assert env.get("read").status_code == 200
    assert len(env.sts.requests) == 2  # one session per rule and identity, then the cache

    changed = env.policy()
    changed["rules"][0]["repositories"] = ["app", "tools"]
    write(env.path, changed)
    wait_for(lambda: env.state()["reloads"] == 1, "the reload")
    assert env.get("build").status_code == 200
    assert len(env.sts.requests) == 3
    assert "tools" in env.sts.requests[-1].policy  # the new rule's session policy, from a new session
    assert env.get("read").status_code == 200
    assert len(env.sts.requests) == 3  # the unchanged rule keeps its session


def test_a_default_that_rules_inherit_counts_as_a_change(env: Env) -> None:
    assert env.get("read").status_code == 200
    write(env.path, env.policy(aws={"session_duration": 7200, "retry_budget_seconds": 3}))
    wait_for(lambda: env.state()["reloads"] == 1, "the reload")
    assert env.get("read").status_code == 200
    assert [r.duration_seconds for r in env.sts.requests] == [3600, 7200]
    assert env.app.state.sessions.retry.budget == 3  # the new STS retry budget, too


def test_comments_and_layout_reload_nothing(env: Env) -> None:
    assert env.get("read").status_code == 200
    wait_for(lambda: env.applied, "the watcher's first look at the file")
    write(env.path, "# the same policy, with a comment\n" + yaml.safe_dump(env.policy(), indent=4))
    wait_for(lambda: len(env.applied) == 2, "the watcher to read the rewritten file")
    assert env.applied == [False, False]
    assert env.state()["reloads"] == 0
    assert env.get("read").status_code == 200
    assert len(env.sts.requests) == 1


def test_issuer_keys_survive_a_reload_and_issuer_changes_apply(env: Env) -> None:
    assert env.get("read").status_code == 200
    fetched = len(env.asked)
    write(env.path, env.policy(rate_limit={"burst": 99}))
    wait_for(lambda: env.state()["reloads"] == 1, "the reload")
    assert env.get("read", sub="someone-new").status_code == 200
    assert len(env.asked) == fetched  # the key set was kept, not fetched again

    issuers = [{"name": "corp", "issuer": env.issuer.issuer_url, "audiences": ["another-service"]}]
    write(env.path, env.policy(issuers=issuers))
    wait_for(lambda: env.state()["reloads"] == 2, "the second reload")
    refused = env.get("read")
    assert refused.status_code == 401
    assert "another-service" in refused.json()["detail"]


# `ccweb serve` in a subprocess, as an operator runs it; the file is not polled, so only SIGHUP reloads.

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "service"), str(ROOT / "helper")]),
       "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example", "AWS_REGION": "us-east-1"}


def _digests(url: str, count: int) -> set[str]:
    return {httpx.get(f"{url}/readyz", timeout=5).json()["policy"]["digest"] for _ in range(count)}


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "two workers"])
def test_sighup_reloads_ccweb_serve(tmp_path: Path, workers: int) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "policy.yaml"
    write(path, policy("http://127.0.0.1:9/"))
    log_path = tmp_path / "stderr.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "ccweb", "serve", "--config", str(path), "--port", str(port),
             "--workers", str(workers), "--reload-interval", "0"],
            env=ENV, stdout=subprocess.DEVNULL, stderr=log_file,
        )
    try:
        def started() -> set[str] | None:
            assert server.poll() is None, log_path.read_text()
            try:
                return _digests(url, 4 * workers)
            except httpx.TransportError:
                return None

        [before] = wait_for(started, "the service to start", timeout=60)
        wait_for(lambda: log_path.read_text().count("Application startup complete.") >= workers,
                 "every worker to start (a SIGHUP before its handler is set would end it)", timeout=60)
        write(path, policy("http://127.0.0.1:9/", aws={"session_duration": 7200}))
        time.sleep(0.5)
        assert _digests(url, 4 * workers) == {before}  # not polled: nothing happens until SIGHUP

        server.send_signal(signal.SIGHUP)
        [after] = wait_for(lambda: (d := _digests(url, 6 * workers)) != {before} and len(d) == 1 and d, "SIGHUP")
        assert after != before

        bad = policy("http://127.0.0.1:9/")
        bad["rules"][0]["role_arn"] = "arn:aws:iam::1:role/x"
        write(path, bad)
        server.send_signal(signal.SIGHUP)
        wait_for(lambda: log_path.read_text().count("rules[0].role_arn: not an IAM role ARN") >= workers,
                 "every worker to refuse the file")
        readiness = [httpx.get(f"{url}/readyz", timeout=5).json()["policy"] for _ in range(4 * workers)]
        assert {r["digest"] for r in readiness} == {after}
        assert all(r["reload_error"] for r in readiness)
        assert server.poll() is None  # a SIGHUP never stops it
    finally:
        server.terminate()
        server.wait(timeout=30)
    stderr = log_path.read_text()
    assert "Traceback" not in stderr
    assert "refused (SIGHUP); the running policy stays" in stderr
