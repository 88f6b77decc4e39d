"""End to end with the real git binary and the POSIX sh helper (dash, bash, BusyBox sh; no Python on PATH):
git → ccweb-helper.sh → ccweb (its plain-text API) → STS stand-in → the sandbox's signature-checking git server.
Plain https-style URLs, GitHub Actions through a stand-in of its token service, and the console's GRC URLs
(codecommit::us-east-1://demo) once the shell helper's own `setup` has configured git."""

from __future__ import annotations

import shlex
import socket
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ccweb.sandbox.dev import Sandbox
from ccweb.sandbox.issuer import DEMO_USERS
from shell.shells import ShellHelper
from support import Asked, serve_json

REQUEST_TOKEN = "PLANTED-actions-request-token-5d1f"


def git(helper: ShellHelper, args: list[str], env: dict[str, str], cwd: Path | None = None,
        configured: bool = False) -> subprocess.CompletedProcess[str]:
    """git with the shell helper alone answering for every host (unless ``configured``: as `setup` left it)."""
    options = [] if configured else ["-c", "credential.helper=", "-c", f"credential.helper={helper.helper}",
                                     "-c", "credential.useHttpPath=true"]
    return subprocess.run(["git", *options, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, check=False)


def commit(env: dict[str, str], work: Path, message: str) -> None:
    subprocess.run(["git", "commit", "--allow-empty", "-m", message], cwd=work, env=env, check=True,
                   capture_output=True)


def last_commit(sandbox: Sandbox) -> str:
    return subprocess.run(["git", "--git-dir", str(sandbox.repos / "demo.git"), "log", "-1", "--format=%s", "main"],
                          capture_output=True, text=True, check=True).stdout.strip()


def assert_not_prompted(home: Path, result: subprocess.CompletedProcess[str]) -> None:
    assert not (home / "prompted").exists(), "git prompted for a username or password"
    assert "Username for" not in result.stderr


def test_the_path_holds_git_curl_and_no_python(shell_helper: ShellHelper, tmp_path: Path) -> None:
    env = shell_helper.env(tmp_path / "home")
    for program, found in (("python3", False), ("python", False), ("git", True), ("curl", True)):
        result = subprocess.run([*shell_helper.command[:-1], "-c", f"command -v {program}"], env=env,
                                capture_output=True, text=True, check=False)
        assert (result.returncode == 0) is found, (program, result.stdout)


def test_clone_and_push_with_write_access(shell_helper: ShellHelper, sandbox: Sandbox, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = shell_helper.env(home, CCWEB_URL=sandbox.api_url, CCWEB_TOKEN_FILE=str(sandbox.token_file("alice")))
    work = tmp_path / "demo"
    cloned = git(shell_helper, ["clone", sandbox.repo_url("demo"), str(work)], env)
    assert cloned.returncode == 0, cloned.stderr
    assert (work / "README.md").exists()
    commit(env, work, f"alice through {shell_helper.shell}")
    pushed = git(shell_helper, ["push", "origin", "HEAD"], env, cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    assert last_commit(sandbox) == f"alice through {shell_helper.shell}"
    assert_not_prompted(home, pushed)
    assert "curl -q --config -" in shell_helper.command_lines()  # curl ran, through the recording wrapper
    assert sandbox.token_file("alice").read_text().strip() not in shell_helper.command_lines()


def test_a_read_only_identity_clones_but_its_push_is_refused(shell_helper: ShellHelper, sandbox: Sandbox,
                                                             tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = shell_helper.env(home, CCWEB_URL=sandbox.api_url, CCWEB_TOKEN_FILE=str(sandbox.token_file("bob")))
    work = tmp_path / "demo"
    assert git(shell_helper, ["clone", sandbox.repo_url("demo"), str(work)], env).returncode == 0
    commit(env, work, "bob tries")
    pushed = git(shell_helper, ["push", "origin", "HEAD"], env, cwd=work)
    assert pushed.returncode != 0
    assert "codecommit:GitPush" in pushed.stderr  # the git server's refusal: bob's session may only pull
    assert_not_prompted(home, pushed)


def test_an_identity_no_rule_grants_stops_with_the_service_s_sentence(shell_helper: ShellHelper, sandbox: Sandbox,
                                                                      tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = shell_helper.env(home, CCWEB_URL=sandbox.api_url, CCWEB_TOKEN_FILE=str(sandbox.token_file("mallory")))
    cloned = git(shell_helper, ["clone", sandbox.repo_url("demo"), str(tmp_path / "demo")], env)
    assert cloned.returncode != 0
    assert "ccweb: No ccweb rule grants mallory@example.net" in cloned.stderr
    assert_not_prompted(home, cloned)


def test_an_unreachable_service_stops_git_without_a_prompt(shell_helper: ShellHelper, sandbox: Sandbox,
                                                           tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    home = tmp_path / "home"
    env = shell_helper.env(home, CCWEB_URL=dead, CCWEB_TOKEN_FILE=str(sandbox.token_file("alice")))
    cloned = git(shell_helper, ["clone", sandbox.repo_url("demo"), str(tmp_path / "demo")], env)
    assert cloned.returncode != 0
    assert f"ccweb: cannot reach the ccweb service at {dead} (curl: " in cloned.stderr
    assert "check CCWEB_URL or git config ccweb.url, and that it is running." in cloned.stderr
    assert_not_prompted(home, cloned)


def test_the_token_file_is_read_again_on_every_git_call(shell_helper: ShellHelper, sandbox: Sandbox,
                                                         tmp_path: Path) -> None:
    token_file = tmp_path / "token.jwt"  # a Kubernetes projected token, rotated under the job's feet
    token_file.write_text(sandbox.token_file("alice").read_text())
    home = tmp_path / "home"
    env = shell_helper.env(home, CCWEB_URL=sandbox.api_url, CCWEB_TOKEN_FILE=str(token_file))
    work = tmp_path / "demo"
    assert git(shell_helper, ["clone", sandbox.repo_url("demo"), str(work)], env).returncode == 0
    token_file.write_text(sandbox.token_file("bob").read_text())
    commit(env, work, "now as bob")
    as_bob = git(shell_helper, ["push", "origin", "HEAD"], env, cwd=work)
    token_file.write_text(sandbox.token_file("alice").read_text())
    as_alice = git(shell_helper, ["push", "origin", "HEAD"], env, cwd=work)
    assert as_bob.returncode != 0 and "codecommit:GitPush" in as_bob.stderr
    assert as_alice.returncode == 0, as_alice.stderr
    assert last_commit(sandbox) == "now as bob"


def test_a_github_actions_job_clones_and_pushes_with_its_own_token(shell_helper: ShellHelper, sandbox: Sandbox,
                                                                    tmp_path: Path) -> None:
    audiences: list[str] = []
    issued: list[str] = []

    def github(asked: Asked) -> tuple[int, dict[str, Any]]:  # ACTIONS_ID_TOKEN_REQUEST_URL
        if asked.headers.get("Authorization") != "bearer " + REQUEST_TOKEN:
            return 401, {"message": "Bad credentials"}
        audience = parse_qs(urlsplit(asked.path).query).get("audience", [""])[0]
        audiences.append(audience)
        issued.append(sandbox.issuer.mint({**DEMO_USERS["alice"], "aud": audience, "sub": "repo:acme/app:ref:main"}))
        return 200, {"count": 1, "value": issued[-1]}

    home = tmp_path / "home"
    with serve_json(github) as url:
        env = shell_helper.env(home, CCWEB_URL=sandbox.api_url, CI="true", GITHUB_ACTIONS="true",
                               ACTIONS_ID_TOKEN_REQUEST_URL=f"{url}/_apis/idtoken?api-version=2.0",
                               ACTIONS_ID_TOKEN_REQUEST_TOKEN=REQUEST_TOKEN)
        work = tmp_path / "app"
        cloned = git(shell_helper, ["clone", sandbox.repo_url("demo"), str(work)], env)
        assert cloned.returncode == 0, cloned.stderr
        commit(env, work, "built by CI")
        pushed = git(shell_helper, ["push", "origin", "HEAD"], env, cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    assert audiences and set(audiences) == {"ccweb"}  # the audience of the service's /.well-known/ccweb.txt
    seen = shell_helper.command_lines() + cloned.stderr + pushed.stderr
    assert issued and not any(token in seen for token in issued)
    assert REQUEST_TOKEN not in seen
    assert_not_prompted(home, pushed)


def test_the_console_s_grc_urls_after_the_shell_helper_s_setup(shell_helper: ShellHelper, sandbox: Sandbox,
                                                               tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = shell_helper.env(home, CCWEB_TOKEN_FILE=str(sandbox.token_file("alice")))
    done = shell_helper.run(["setup", "--url", sandbox.api_url, "--helper", shlex.join(shell_helper.command)], env)
    assert done.returncode == 0, done.stderr
    for number, url in enumerate(
            ("codecommit::us-east-1://demo", "codecommit://demo", "codecommit::us-east-1://work-profile@demo")):
        work = tmp_path / f"clone-{number}"
        cloned = git(shell_helper, ["clone", url, str(work)], env, configured=True)
        assert cloned.returncode == 0, (url, cloned.stderr)
        assert (work / "README.md").exists()
    commit(env, work, f"GRC push through {shell_helper.shell}")
    pushed = git(shell_helper, ["push", "origin", "HEAD"], env, cwd=work, configured=True)
    assert pushed.returncode == 0, pushed.stderr
    # the push reached the sandbox's git server, which the service names as us-east-1's GRC endpoint
    # (grc_endpoint in /.well-known/ccweb.txt), while the remote stayed the console's URL
    assert last_commit(sandbox) == f"GRC push through {shell_helper.shell}"
    remote = subprocess.run(["git", "config", "remote.origin.url"], cwd=work, env=env, capture_output=True, text=True,
                            check=True)
    assert remote.stdout.strip() == "codecommit::us-east-1://work-profile@demo"
    assert_not_prompted(home, pushed)


def test_a_hostile_gitmodules_cannot_slip_a_host_into_a_grc_region(shell_helper: ShellHelper, tmp_path: Path) -> None:
    """A superproject's .gitmodules names a submodule ``codecommit::x@127.0.0.1:<port>/a<line break>us-east-1://demo``:
    its "region" is two lines, the last one a region. ``grc`` refuses it; git's remote-https is never run."""
    home = tmp_path / "home"
    env = shell_helper.env(home)
    with socket.socket() as dead, socket.socket() as listener:
        dead.bind(("127.0.0.1", 0))
        done = shell_helper.run(["setup", "--url", f"http://127.0.0.1:{dead.getsockname()[1]}",
                                 "--helper", shlex.join(shell_helper.command)], env)
        assert done.returncode == 0, done.stderr
        subprocess.run(["git", "config", "--global", "--unset", "ccweb.url"], env=env, check=True)  # no service
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"codecommit::x@127.0.0.1:{listener.getsockname()[1]}/a\\nus-east-1://demo"  # \n: a line break
        super_ = tmp_path / "super"
        for args in (["init", "-q", str(super_)],
                     ["-C", str(super_), "update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},sub"]):
            subprocess.run(["git", *args], env=env, check=True, capture_output=True)
        (super_ / ".gitmodules").write_text(f'[submodule "sub"]\n\tpath = sub\n\turl = "{url}"\n')
        subprocess.run(["git", "-C", str(super_), "add", ".gitmodules"], env=env, check=True, capture_output=True)
        commit(env, super_, "hostile")
        cloned = git(shell_helper, ["clone", "--recurse-submodules", f"file://{super_}", str(tmp_path / "victim")],
                     env, configured=True)
        listener.setblocking(False)
        try:
            connection, _ = listener.accept()
            connection.close()
            reached = True
        except BlockingIOError:
            reached = False
    assert "ccweb: 'x@127.0.0.1:" in cloned.stderr and "is not an AWS region" in cloned.stderr, cloned.stderr
    assert "remote-http" not in shell_helper.command_lines()
    assert not reached
