"""``ccweb-helper setup`` in a throwaway HOME, judged by what the real git then does: ``git credential fill``
and ``approve`` against the sandbox, with a user ``store`` helper and a system-wide ``cache`` helper that must
keep working for every other host and never see a CodeCommit password."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from ccweb.helper_dist import write_zipapp
from ccweb.sandbox.dev import Sandbox
from ccweb_helper import gitconfig
from ccweb_helper.hosts import HOST_FORMS
from ccweb_helper.setup import _parser, endpoint_urls, helper_command, run
from support import home_env, serve_json

ROOT = Path(__file__).resolve().parents[2]

FORM_HOSTS = {  # a host of each form in HOST_FORMS
    "standard": "git-codecommit.us-east-2.amazonaws.com",
    "fips": "git-codecommit-fips.us-east-2.amazonaws.com",
    "china": "git-codecommit.cn-north-1.amazonaws.com.cn",
    "vpce": "vpce-0123456789abcdef0-abcdefgh.git-codecommit.us-east-2.vpce.amazonaws.com",
    "vpce-fips": "vpce-0123456789abcdef0-abcdefgh.git-codecommit-fips.us-east-2.vpce.amazonaws.com",
    "vpce-china": "vpce-0123456789abcdef0-abcdefgh.git-codecommit.cn-north-1.vpce.amazonaws.com.cn",
}
LOOKALIKES = {
    "suffix": "git-codecommit.us-east-1.amazonaws.com.evil.example",
    "two-labels": "git-codecommit.us-east-1.evil.amazonaws.com",
    "prefix": "evil-git-codecommit.us-east-1.amazonaws.com",
    "vpce-two-labels": "a.b.git-codecommit.us-east-1.vpce.amazonaws.com",
}



def setup(home: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
          **extra: str) -> subprocess.CompletedProcess[str]:
    """``ccweb-helper setup`` in ``home`` with ``env`` and ``extra`` added to its environment."""
    return subprocess.run([sys.executable, "-m", "ccweb_helper", "setup", *args],
                          env=home_env(home, **(env or {}), **extra),
                          cwd=cwd or home, capture_output=True, text=True, timeout=60, check=False)


def git(home: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None, cwd: Path | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], env=env or home_env(home), cwd=cwd or home, input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)


def attrs(host: str, protocol: str = "https", path: str = "v1/repos/demo") -> str:
    return f"protocol={protocol}\nhost={host}\npath={path}\n\n"


def answer(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A HOME whose user already uses `store`, on a machine whose system config uses `cache`."""
    path = tmp_path / "home"
    path.mkdir()
    system = tmp_path / "system.gitconfig"
    system.write_text("[credential]\n\thelper = cache --timeout=30\n")
    (path / ".gitconfig").write_text("[user]\n\tname = Test\n\temail = test@example.com\n"
                                     "[credential]\n\thelper = store\n")
    yield path
    git(path, "credential-cache", "exit", env=machine(path))


def machine(home: Path, sandbox: Sandbox | None = None, **extra: str) -> dict[str, str]:
    """The environment of a person at this machine: system config, a token, GIT_TRACE to see what git runs."""
    env = home_env(home, GIT_CONFIG_SYSTEM=str(home.parent / "system.gitconfig"), GIT_TRACE="1", **extra)
    env.pop("GIT_CONFIG_NOSYSTEM")
    if sandbox is not None:
        env["CCWEB_TOKEN_FILE"] = str(sandbox.token_file("alice"))
    return env


def ran(trace: str) -> list[str]:
    """The credential helpers git ran, from GIT_TRACE's run_command lines."""
    names = []
    for line in trace.splitlines():
        if "run_command:" not in line or not line.rstrip().endswith((" get'", " store'", " erase'")):
            continue
        if "ccweb_helper" in line or "ccweb-helper" in line:
            names.append("ccweb")
        elif "credential-store" in line:
            names.append("store")
        elif "credential-cache" in line:
            names.append("cache")
    return names


def test_every_codecommit_form_and_the_service_endpoint_is_answered_by_ccweb_only(sandbox: Sandbox, home: Path,
                                                                                  ) -> None:
    done = setup(home, "--url", sandbox.api_url)
    assert done.returncode == 0, done.stderr
    assert "ccweb-helper doctor" in done.stdout
    env = machine(home, sandbox)
    hosts = [("https", host) for host in FORM_HOSTS.values()] + [("http", sandbox.git_host)]
    for protocol, host in hosts:
        filled = git(home, "credential", "fill", stdin=attrs(host, protocol), env=env)
        assert filled.returncode == 0, (host, filled.stderr)
        got = answer(filled.stdout)
        assert sandbox.sts.lookup(got["username"].split("%", 1)[0]) is not None, host  # a ccweb session
        assert ran(filled.stderr) == ["ccweb"], (host, filled.stderr)
        approved = git(home, "credential", "approve", stdin=filled.stdout + "\n", env=env)
        assert approved.returncode == 0, approved.stderr
        assert "store" not in ran(approved.stderr) and "cache" not in ran(approved.stderr)
    stored = home / ".git-credentials"
    assert not stored.exists() or "codecommit" not in stored.read_text()
    assert not stored.exists() or sandbox.git_host not in stored.read_text()


def test_other_hosts_keep_the_users_own_helpers(sandbox: Sandbox, home: Path) -> None:
    assert setup(home, "--url", sandbox.api_url).returncode == 0
    env = machine(home, sandbox)
    secret = "protocol=https\nhost=example.com\nusername=me\npassword=PLANTED-OTHER-PASSWORD\n\n"
    approved = git(home, "credential", "approve", stdin=secret, env=env)
    assert approved.returncode == 0, approved.stderr
    assert ran(approved.stderr) == ["cache", "store"]
    assert "example.com" in (home / ".git-credentials").read_text()
    (home / ".git-credentials").chmod(0o600)
    git(home, "credential-cache", "exit", env=env)  # so that the answer below can only come from `store`
    filled = git(home, "credential", "fill", stdin="protocol=https\nhost=example.com\n\n", env=env)
    assert filled.returncode == 0, filled.stderr
    assert answer(filled.stdout)["password"] == "PLANTED-OTHER-PASSWORD"
    assert "ccweb" not in ran(filled.stderr)


@pytest.mark.parametrize("host", list(LOOKALIKES.values()), ids=list(LOOKALIKES))
def test_lookalike_hosts_are_not_matched(sandbox: Sandbox, home: Path, host: str) -> None:
    assert setup(home, "--url", sandbox.api_url).returncode == 0
    filled = git(home, "credential", "fill", stdin=attrs(host), env=machine(home, sandbox))
    assert "ccweb" not in ran(filled.stderr)
    assert ran(filled.stderr)[:2] == ["cache", "store"]  # the user's own helpers, as for any other host


def test_running_twice_changes_nothing(sandbox: Sandbox, home: Path) -> None:
    first = setup(home, "--url", sandbox.api_url)
    assert first.returncode == 0, first.stderr
    written = (home / ".gitconfig").read_bytes()
    second = setup(home, "--url", sandbox.api_url)
    assert second.returncode == 0, second.stderr
    assert "Already configured" in second.stdout
    assert (home / ".gitconfig").read_bytes() == written
    again = setup(home, "--dry-run", CCWEB_URL=sandbox.api_url)
    assert "Already configured" in again.stdout and "git config --" not in again.stdout


def test_only_differing_keys_are_rewritten(sandbox: Sandbox, home: Path) -> None:
    assert setup(home, "--url", sandbox.api_url).returncode == 0
    env = home_env(home)
    git(home, "config", "--global", "--unset", "credential.https://git-codecommit.*.amazonaws.com.usehttppath",
        env=env)
    git(home, "config", "--global", "--add", "credential.https://git-codecommit-fips.*.amazonaws.com.helper",
        "osxkeychain", env=env)
    dry = setup(home, "--dry-run")  # the service URL now comes from the existing ccweb.url
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines == [
        "git config --global --replace-all 'credential.https://git-codecommit.*.amazonaws.com.useHttpPath' true",
        "git config --global --replace-all 'credential.https://git-codecommit-fips.*.amazonaws.com.helper' ''",
        lines[2],
    ]
    assert lines[2].startswith("git config --global --add 'credential.https://git-codecommit-fips.*.amazonaws.com"
                               ".helper' '!")
    assert setup(home).returncode == 0
    helpers = git(home, "config", "--global", "--get-all",
                  "credential.https://git-codecommit-fips.*.amazonaws.com.helper", env=env).stdout.splitlines()
    assert helpers[0] == "" and "osxkeychain" not in helpers and len(helpers) == 2


def test_dry_run_prints_the_commands_and_writes_nothing(sandbox: Sandbox, home: Path) -> None:
    before = (home / ".gitconfig").read_bytes()
    dry = setup(home, "--url", sandbox.api_url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert (home / ".gitconfig").read_bytes() == before
    assert dry.stdout.startswith(f"git config --global --replace-all ccweb.url {sandbox.api_url}\n")
    for form in HOST_FORMS:
        assert f"'credential.{form.git_url}.helper' ''" in dry.stdout
    assert f"credential.http://{sandbox.git_host}.useHttpPath true" in dry.stdout


def test_local_and_file_write_where_told(sandbox: Sandbox, home: Path) -> None:
    repo = home / "repo"
    assert git(home, "init", "-q", str(repo)).returncode == 0
    before = (home / ".gitconfig").read_bytes()
    local = setup(home, "--local", "--url", sandbox.api_url, cwd=repo)
    assert local.returncode == 0, local.stderr
    assert "credential \"https://git-codecommit.*.amazonaws.com\"" in (repo / ".git" / "config").read_text()
    other = home / "ccweb.gitconfig"
    written = setup(home, "--file", str(other), "--url", sandbox.api_url)
    assert written.returncode == 0, written.stderr
    assert f"url = {sandbox.api_url}" in other.read_text()
    assert (home / ".gitconfig").read_bytes() == before
    outside = setup(home, "--local", "--url", sandbox.api_url, cwd=home)
    assert outside.returncode != 0 and "inside a git repository" in outside.stderr


def test_clone_after_setup_alone(sandbox: Sandbox, home: Path) -> None:
    assert setup(home, "--url", sandbox.api_url).returncode == 0
    env = machine(home, sandbox)
    askpass = home / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho prompted >> {home}/prompted\nexit 1\n")
    askpass.chmod(0o700)
    env["GIT_ASKPASS"] = str(askpass)
    cloned = git(home, "clone", sandbox.repo_url("demo"), str(home / "demo"), env=env)
    assert cloned.returncode == 0, cloned.stderr
    assert (home / "demo" / "README.md").exists()
    assert not (home / "prompted").exists()
    assert ran(cloned.stderr).count("ccweb") >= 1 and "store" not in ran(cloned.stderr)
    assert sandbox.git_host not in (home / ".git-credentials").read_text() if (home / ".git-credentials").exists() \
        else True


def test_an_unreachable_service_still_configures_codecommit(home: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    done = setup(home, "--url", dead)
    assert done.returncode == 0, done.stderr
    assert "warning: could not read the service's git endpoints" in done.stderr
    assert f"cannot reach the ccweb service at {dead}" in done.stderr
    text = (home / ".gitconfig").read_text()
    assert all(f'[credential "{form.git_url}"]' in text for form in HOST_FORMS)


@pytest.mark.parametrize(("args", "env", "sentence"), [
    ([], {}, "Pass --url https://<your ccweb service>"),
    (["--url", "http://ccweb.example.com"], {}, "sends your token only over https"),
    ([], {"CCWEB_URL": "ftp://x"}, "CCWEB_URL must be an https:// URL"),
], ids=["none", "plain-http", "bad-env"])
def test_the_service_url_is_required_and_checked(home: Path, args: list[str], env: dict[str, str],
                                                 sentence: str) -> None:
    before = (home / ".gitconfig").read_bytes()
    done = setup(home, *args, env=env)
    assert done.returncode == 2
    assert sentence in done.stderr and "Traceback" not in done.stderr
    assert (home / ".gitconfig").read_bytes() == before


def test_helper_override(home: Path) -> None:
    dry = setup(home, "--url", "http://127.0.0.1:9", "--helper", "/opt/ccweb/bin/ccweb-helper", "--dry-run")
    assert "'!/opt/ccweb/bin/ccweb-helper'" in dry.stdout


def test_a_downloaded_zipapp_configures_itself(tmp_path: Path, home: Path) -> None:
    app = tmp_path / "bin" / "ccweb-helper"
    app.parent.mkdir()
    write_zipapp(app)
    env = home_env(home)
    env.pop("PYTHONPATH")
    dry = subprocess.run([sys.executable, str(app), "setup", "--url", "http://127.0.0.1:9", "--dry-run"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert dry.returncode == 0, dry.stderr
    assert f"'!{sys.executable} {app}'" in dry.stdout
    on_path = subprocess.run([sys.executable, str(app), "setup", "--url", "http://127.0.0.1:9", "--dry-run"],
                             env={**env, "PATH": f"{app.parent}{os.pathsep}{env.get('PATH', '')}"},
                             capture_output=True, text=True, timeout=60, check=False)
    assert "'!ccweb-helper'" in on_path.stdout


@pytest.mark.parametrize(("argv0", "which", "root", "expected"), [
    ("/usr/local/bin/ccweb-helper", "/usr/local/bin/ccweb-helper", "/x", "!ccweb-helper"),
    ("/home/me/.venv/bin/ccweb-helper", None, "/x", "!/home/me/.venv/bin/ccweb-helper"),
    ("/home/me/.venv/bin/ccweb-helper", "/usr/bin/ccweb-helper", "/x", "!/home/me/.venv/bin/ccweb-helper"),
    ("/lib/site-packages/ccweb_helper/__main__.py", None, "/lib/site-packages",
     "!/py /lib/site-packages/ccweb_helper/__main__.py"),
    ("/src/helper/ccweb_helper/__main__.py", None, "/src/helper",
     "!PYTHONPATH=/src/helper /py /src/helper/ccweb_helper/__main__.py"),
], ids=["on-path", "venv-script", "other-on-path", "module-installed", "module-from-source"])
def test_helper_command(tmp_path: Path, argv0: str, which: str | None, root: str, expected: str) -> None:
    if argv0.endswith("ccweb-helper"):  # make the script exist and be executable where the case says so
        script = tmp_path / argv0.lstrip("/")
        script.parent.mkdir(parents=True)
        script.write_text("#!/bin/sh\n")
        script.chmod(0o755)
        argv0 = str(script)
        expected = expected.replace("!" + argv0.split(str(tmp_path))[1], "!" + str(script))
        which = str(script) if which == argv0.split(str(tmp_path))[1] else which
    assert helper_command(argv0, "/py", lambda _: which, root) == expected


def test_endpoint_urls() -> None:
    assert endpoint_urls("git.example.com:8443") == ["https://git.example.com:8443"]
    assert endpoint_urls("127.0.0.1:9418") == ["https://127.0.0.1:9418", "http://127.0.0.1:9418"]
    assert endpoint_urls("[::1]:9418") == ["https://[::1]:9418", "http://[::1]:9418"]
    for host in ("*.com", "*", "git.*.example.com", "git\x1b]0;owned\x07.example", "git_lab.example.com",
                 "git.example.com.", "[fe80::1%eth0]", "[::1]x"):
        assert endpoint_urls(host) == [], host  # not one host: nothing for git to match


HOSTILE_ENDPOINTS = ["git\x1b]0;owned\x07\x1b[2J.example", "*.com", "git.internal.example.com:8443"]


@contextlib.contextmanager
def service_naming(hosts: list[str]) -> Iterator[str]:
    """A stand-in ccweb service whose discovery document names these git endpoints."""
    document = {"audience": "ccweb", "git_endpoints": [{"host": h} for h in hosts], "login": []}
    with serve_json(lambda _: (200, document)) as url:
        yield url


def test_endpoints_that_are_no_host_name_are_skipped_and_shown_escaped(home: Path) -> None:
    with service_naming(HOSTILE_ENDPOINTS) as url:
        dry = setup(home, "--url", url, "--dry-run")
        done = setup(home, "--url", url)
    assert done.returncode == 0, done.stderr
    for result in (dry, done):
        assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout + result.stderr
        assert result.stderr.splitlines() == [
            "ccweb-helper setup: warning: skipped the git endpoint 'git\\x1b]0;owned\\x07\\x1b[2j.example' the "
            "service names: it is not a host name (letters, digits, hyphens and dots, or an IP address) with an "
            "optional port, so git would not read it as one host; tell the service's operators.",
            "ccweb-helper setup: warning: skipped the git endpoint '*.com' the service names: it is not a host name "
            "(letters, digits, hyphens and dots, or an IP address) with an optional port, so git would not read it "
            "as one host; tell the service's operators.",
        ]
    written = (home / ".gitconfig").read_text()
    assert '[credential "https://git.internal.example.com:8443"]' in written
    assert "*.com" not in written and "owned" not in written


def test_a_wildcard_endpoint_does_not_silence_the_users_helpers_for_other_hosts(home: Path) -> None:
    with service_naming(HOSTILE_ENDPOINTS) as url:
        assert setup(home, "--url", url).returncode == 0
    for host in ("github.com", "gitlab.com"):
        filled = git(home, "credential", "fill", stdin=f"protocol=https\nhost={host}\n\n",
                     env=machine(home, GIT_TERMINAL_PROMPT="0"))
        assert ran(filled.stderr)[:2] == ["cache", "store"], (host, filled.stderr)
        assert "ccweb" not in ran(filled.stderr)


# -- the git that runs it ----------------------------------------------------------------------------------

def fake_git(tmp: Path, *, version: str = "", on_write: str = "") -> str:
    """A directory holding a `git` that hands everything to the real git, except that it says it is
    ``version`` (when given) and runs the shell line ``on_write`` first for `git config --replace-all/--add`."""
    real = shutil.which("git")
    assert real is not None
    folder = tmp / "fake-git"
    folder.mkdir(exist_ok=True)
    script = folder / "git"
    lines = ["#!/bin/sh"]
    if version:
        lines.append(f'if [ "$1" = --version ]; then echo "git version {version}"; exit 0; fi')
    if on_write:
        lines.append(f'case " $* " in *" --replace-all "*|*" --add "*) {on_write};; esac')
    lines.append(f'exec {shlex.quote(real)} "$@"')
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    return str(folder)


@pytest.mark.parametrize("dry_run", [False, True], ids=["write", "dry-run"])
def test_a_git_without_credential_wildcards_is_refused(tmp_path: Path, home: Path, dry_run: bool) -> None:
    before = (home / ".gitconfig").read_bytes()
    path = f"{fake_git(tmp_path, version='2.25.4')}{os.pathsep}{os.environ.get('PATH', '')}"
    done = setup(home, "--url", "http://127.0.0.1:9", *(["--dry-run"] if dry_run else []), PATH=path)
    assert done.returncode == 1
    assert done.stderr.startswith("ccweb-helper setup: git 2.25.4 is too old") and done.stderr.count("\n") == 1
    assert "upgrade git to 2.26 or newer" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
    assert (home / ".gitconfig").read_bytes() == before


def test_the_oldest_git_with_credential_wildcards_is_accepted(tmp_path: Path, home: Path) -> None:
    path = f"{fake_git(tmp_path, version='2.26.0')}{os.pathsep}{os.environ.get('PATH', '')}"
    done = setup(home, "--url", "http://127.0.0.1:9", "--dry-run", PATH=path)
    assert done.returncode == 0, done.stderr
    assert "credential.https://git-codecommit.*.amazonaws.com.helper" in done.stdout


def _run_in_process(home: Path, path: str) -> tuple[int, str, str]:
    """setup itself, in this process, with the git that ``path`` finds (so its timeout can be shortened)."""
    args = _parser().parse_args(["--url", "http://127.0.0.1:9", "--helper", "!ccweb-helper"])
    out, err = io.StringIO(), io.StringIO()
    code = run(args, home_env(home, PATH=path), out, err)
    return code, out.getvalue(), err.getvalue()


def test_a_git_that_hangs_ends_in_one_sentence(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_git = gitconfig.run_git

    def timed(args: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        """The write that hangs has 1 s; every other git command as long as a busy machine needs."""
        writes = "--replace-all" in args or "--add" in args
        monkeypatch.setattr(gitconfig, "TIMEOUT", 1.0 if writes else 60.0)
        return run_git(args, env, cwd)

    monkeypatch.setattr(gitconfig, "run_git", timed)
    sleep = shutil.which("sleep")
    assert sleep is not None
    code, out, err = _run_in_process(home, fake_git(tmp_path, on_write=f"exec {shlex.quote(sleep)} 30"))
    assert code == 1
    assert err.count("\n") == 2, err  # the warning about the unreachable service, then the one about git
    line = err.splitlines()[-1]
    assert line.startswith("ccweb-helper setup: `git config --global --replace-all ccweb.url http://127.0.0.1:9` "
                           "did not finish within 1 seconds"), line
    assert "Traceback" not in err and "nothing to do" not in out


def test_a_git_that_vanishes_midway_ends_in_one_sentence(tmp_path: Path, home: Path) -> None:
    rm = shutil.which("rm")
    assert rm is not None
    # The first write removes this `git`; PATH holds nothing else, so the second cannot be started.
    code, _, err = _run_in_process(home, fake_git(tmp_path, on_write=f'{shlex.quote(rm)} -f "$0"'))
    assert code == 1
    line = err.splitlines()[-1]
    assert line.startswith("ccweb-helper setup: `git config --global ") and "could not be started (" in line, line
    assert "1 of " in line and "run `ccweb-helper setup` again" in line
    assert "Traceback" not in err


def test_a_first_time_user_without_any_gitconfig(sandbox: Sandbox, home: Path) -> None:
    (home / ".gitconfig").unlink()
    done = setup(home, "--url", sandbox.api_url)
    assert done.returncode == 0, done.stderr
    assert f"url = {sandbox.api_url}" in (home / ".gitconfig").read_text()
    assert "Already configured" in setup(home, "--url", sandbox.api_url).stdout
