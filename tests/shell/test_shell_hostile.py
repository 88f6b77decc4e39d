"""What a hostile work tree or environment cannot make the POSIX sh helper do, under dash, bash and BusyBox sh:
run a program the work tree holds (git runs a credential helper with the cwd at the top of the tree it clones),
print or export a token because bash took options from the environment, turn in circles in a multibyte locale,
speak plain http to a host that only looks like loopback, make several requests of one URL, write a control
character to the terminal, or write a password outside its own temporary directory."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from shell.shells import CREDENTIAL, ShellHelper, TextService, jwt
from shell.test_shell_tokens import REQUEST_TOKEN, GitHub, actions_env, assert_nowhere_but_the_request
from support import self_signed, serve_json

HOST = "git-codecommit.us-east-1.amazonaws.com"
TOKEN = jwt({"aud": "ccweb", "sub": "PLANTED-subject"}, signature="PLANTEDsignature1")
PASSWORD = "20261207T101500Zabc123"  # in CREDENTIAL
PLANTED = ("awk", "sed", "grep", "tr", "cut", "head", "tail", "wc", "cat", "mktemp", "rm", "sleep", "git", "curl",
           "buildkite-agent")


@pytest.fixture
def github() -> GitHub:
    return GitHub()


def plant(directory: Path) -> Path:
    """An executable of every name the script may run in ``directory``, each writing what it was given to
    ``ran`` (then failing); returns that file."""
    ran = directory / "ran"
    for name in PLANTED:
        program = directory / name
        program.write_text(f"#!/bin/sh\necho {name} \"$@\" >> {shlex.quote(str(ran))}\n"
                           f"cat >> {shlex.quote(str(ran))}\nexit 7\n")
        program.chmod(0o755)
    return ran


@pytest.mark.parametrize("entry", ["", ".", "tree"], ids=["empty", "dot", "relative"])
def test_no_program_of_the_work_tree_runs_whatever_path_holds(shell_helper: ShellHelper, tmp_path: Path,
                                                             entry: str) -> None:
    """PATH=":$PATH" (an unset variable before it), "." or a relative entry, before the real ones: the work tree's
    `curl` would get the token, its `git` would run on every clone."""
    tree = tmp_path / "tree"
    tree.mkdir()
    ran = plant(tree)
    cwd = tmp_path if entry == "tree" else tree
    service = TextService()
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=TOKEN, BUILDKITE="true",
                               PATH=f"{entry}:{shell_helper.bin}")
        result = shell_helper.get(env, HOST, cwd=cwd)
        shell_helper.run(["grc", "origin", "us-east-1://demo"], env, cwd=cwd)  # git's remote-https: no command
    assert not ran.exists(), ran.read_text()
    assert (result.returncode, result.stdout) == (0, CREDENTIAL), result.stderr
    assert "git remote-https origin https://git-codecommit.us-east-1.amazonaws.com/v1/repos/demo\n" in (
        shell_helper.command_lines())


@pytest.mark.parametrize("options", [
    {"SHELLOPTS": "xtrace"}, {"SHELLOPTS": "verbose:xtrace"}, {"SHELLOPTS": "allexport"},
    {"SHELLOPTS": "keyword"}, {"SHELLOPTS": "noclobber"}, {"BASHOPTS": "nocasematch:xpg_echo"},
], ids=["xtrace", "verbose", "allexport", "keyword", "noclobber", "nocasematch"])
def test_shell_options_from_the_environment_show_no_secret(shell_helper: ShellHelper, tmp_path: Path,
                                                           options: dict[str, str], github: GitHub) -> None:
    """bash takes SHELLOPTS and BASHOPTS from the environment (a CI job's `set -x; export SHELLOPTS` traces
    child scripts; /bin/sh is bash on Amazon Linux and UBI): no trace holds a token or the password, no token is
    exported to curl, and the answer is the same."""
    service = TextService()
    with service.serving() as url, serve_json(github.answer) as github_url:
        service.discovery = f"audience={url}\n"
        env = {**actions_env(shell_helper, tmp_path / "home", url, github_url), **options}
        result = shell_helper.get(env, HOST)
    assert (result.returncode, result.stdout) == (0, CREDENTIAL), result.stderr
    for secret in (github.issued[0], REQUEST_TOKEN, PASSWORD):
        assert secret not in result.stderr
    # bash keeps SHELLOPTS and BASHOPTS exported, with the options it now has (dash and BusyBox pass them on)
    assert_nowhere_but_the_request(shell_helper, env, github.issued[0], REQUEST_TOKEN,
                                   bookkeeping=frozenset(("SHELLOPTS", "BASHOPTS")))
    if shell_helper.shell == "bash":
        assert all("xtrace" not in e.get("SHELLOPTS", "") for e in shell_helper.curl_environments())


@pytest.mark.parametrize("options", ["errexit", "nounset", "errexit:nounset:pipefail"])
def test_shell_options_from_the_environment_change_no_failure(shell_helper: ShellHelper, tmp_path: Path,
                                                              options: str) -> None:
    """errexit would end the script at curl's failure without a sentence or quit=1 (git would prompt)."""
    dead = "http://127.0.0.1:9"
    env = shell_helper.env(tmp_path / "home", CCWEB_URL=dead, CCWEB_TOKEN=TOKEN, SHELLOPTS=options)
    result = shell_helper.get(env, HOST)
    assert (result.returncode, result.stdout) == (1, "quit=1\n")
    assert result.stderr.startswith(f"ccweb: cannot reach the ccweb service at {dead} (curl: ")


@pytest.fixture(scope="session")
def locales(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Locales whose multibyte characters may end in the byte of "\\" (BIG5, GBK), built for the tests."""
    if shutil.which("localedef") is None:
        pytest.skip("localedef is not installed")
    root = tmp_path_factory.mktemp("locales")
    for name, source, charmap in (("zh_TW.BIG5", "zh_TW", "BIG5"), ("zh_CN.GBK", "zh_CN", "GBK")):
        made = subprocess.run(["localedef", "-c", "-f", charmap, "-i", source, str(root / name)],
                              capture_output=True, check=False, timeout=120)
        if not (root / name / "LC_CTYPE").exists():
            pytest.skip(f"cannot build the {name} locale: {made.stderr.decode(errors='replace')[:200]}")
    return root


@pytest.mark.parametrize("locale", ["zh_TW.BIG5", "zh_CN.GBK"])
def test_a_multibyte_locale_ending_in_a_backslash_byte_is_answered(shell_helper: ShellHelper, tmp_path: Path,
                                                                   locales: Path, locale: str) -> None:
    """"\\xb3\\\\" is one character in BIG5 and GBK: a shell that reads it so cannot find its "\\" (bash looped
    forever before curl, outside any time limit, and git waited)."""
    service = TextService()
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=TOKEN, LOCPATH=str(locales),
                               LC_ALL=locale)
        result = subprocess.run([*shell_helper.command, "get"], env=env, capture_output=True, timeout=20,
                                input=f"protocol=https\nhost={HOST}\npath=v1/repos/".encode() + b"\xb3\\\n\n",
                                check=False)
    assert (result.returncode, result.stdout) == (0, CREDENTIAL.encode()), result.stderr
    assert service.asked[0].body == f"protocol=https\nhost={HOST}\npath=v1/repos/".encode() + b"\xb3\\\n"


@pytest.mark.parametrize("host", ["127.0.0.999", "127.0.0.08", "127.1", "127.0.0.1.nip.io", "0x7f.0.0.1",
                                  "localhost.", "127.0.0.256"])
def test_only_a_loopback_address_is_spoken_to_over_plain_http(shell_helper: ShellHelper, tmp_path: Path,
                                                              host: str) -> None:
    """Names that look like 127.0.0.0/8 but are not one of its addresses: a resolver may ask DNS about them, so
    neither the service nor a CI token service is reached there over plain http (nor ever unproxied)."""
    as_service = shell_helper.get(shell_helper.env(tmp_path / "home", CCWEB_URL=f"http://{host}:8080",
                                                   CCWEB_TOKEN=TOKEN), HOST)
    assert (as_service.returncode, as_service.stdout) == (1, "quit=1\n")
    assert "CCWEB_URL is a plain http:// address: ccweb-helper sends your token only over https" in as_service.stderr
    assert "curl" not in shell_helper.command_lines()
    service = TextService()
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, ACTIONS_ID_TOKEN_REQUEST_URL=
                               f"http://{host}:8080/token", ACTIONS_ID_TOKEN_REQUEST_TOKEN=REQUEST_TOKEN)
        as_github = shell_helper.get(env, HOST)
    assert (as_github.returncode, as_github.stdout) == (1, "quit=1\n")
    assert as_github.stderr == ("ccweb: the GitHub Actions token service is at a plain http:// address; "
                                "ccweb-helper speaks to it only over https.\n")
    assert service.paths() == ["GET /.well-known/ccweb.txt"]


def test_one_url_is_one_request(shell_helper: ShellHelper, tmp_path: Path, github: GitHub) -> None:
    """curl reads `{a,b}` and `[1-25]` in a URL as many URLs, each sent the request token, unless told not to."""
    service = TextService()
    with service.serving() as url, serve_json(github.answer) as github_url:
        service.discovery = f"audience={url}\n"
        env = actions_env(shell_helper, tmp_path / "home", url, github_url)
        env["ACTIONS_ID_TOKEN_REQUEST_URL"] = f"{github_url}/token[1-25]/{{a,b}}?api-version=2.0"
        result = shell_helper.get(env, HOST)
    assert (result.returncode, result.stdout) == (0, CREDENTIAL), result.stderr
    assert len(github.audiences) == 1


def test_a_control_character_of_a_ci_address_never_reaches_the_terminal(shell_helper: ShellHelper,
                                                                        tmp_path: Path) -> None:
    service = TextService()
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, ACTIONS_ID_TOKEN_REQUEST_TOKEN=REQUEST_TOKEN,
                               ACTIONS_ID_TOKEN_REQUEST_URL="https://x\x1b]0;owned\x07\x1b[2J.example/")
        result = shell_helper.get(env, HOST)
    assert (result.returncode, result.stdout) == (1, "quit=1\n")
    assert result.stderr.startswith("ccweb: ") and result.stderr.count("\n") == 1
    assert result.stderr[:-1].isprintable() and result.stderr.isascii(), repr(result.stderr)
    assert "https://x?]0;owned??[2J.example" in result.stderr


def test_a_quote_in_tmpdir_keeps_every_answer_in_the_helper_s_own_directory(shell_helper: ShellHelper,
                                                                             tmp_path: Path) -> None:
    """curl's configuration quotes every path it names: with TMPDIR=…/my"dir, curl once wrote the answer (the
    password) to …/my, outside the 0700 directory, and left it there."""
    temporary = tmp_path / "t" / 'my"dir\\'
    temporary.mkdir(parents=True)
    service = TextService()
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=TOKEN, TMPDIR=str(temporary))
        result = shell_helper.get(env, HOST)
    assert (result.returncode, result.stdout) == (0, CREDENTIAL), result.stderr
    assert [p.name for p in (tmp_path / "t").iterdir()] == [temporary.name]
    assert list(temporary.iterdir()) == []


def test_authorities_in_a_directory_with_quotes_and_backslashes_are_read(shell_helper: ShellHelper,
                                                                          tmp_path: Path) -> None:
    """SSL_CERT_FILE as curl's configuration must quote it: a ", a \\ and one last (a run of them, too)."""
    odd = tmp_path / 'a "q" \\b\\\\ ""\\'
    odd.mkdir()
    certificate, context = self_signed(odd)
    service = TextService()
    with service.serving(context) as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=TOKEN, SSL_CERT_FILE=str(certificate))
        result = shell_helper.get(env, HOST)
    assert (result.returncode, result.stdout) == (0, CREDENTIAL), result.stderr


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_a_large_token_is_never_written_to_a_file(shell_helper: ShellHelper, tmp_path: Path) -> None:
    """bash keeps a here-document larger than a pipe holds in a file of TMPDIR: the token reaches curl and awk
    through pipes only (a token of 64 KiB, as GitLab's and Azure's with many groups approach)."""
    token = jwt({"aud": "ccweb", "sub": "job", "pad": "p" * 49000}, signature="PLANTEDbig")
    assert 65400 < len(token) <= 65536  # with curl's other settings, more than a pipe holds (64 KiB)
    service = TextService()
    trace, temporary = tmp_path / "trace", tmp_path / "tmpdir"
    temporary.mkdir()
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=url, CCWEB_TOKEN=token, TMPDIR=str(temporary))
        strace = shutil.which("strace")
        assert strace is not None
        result = subprocess.run([strace, "-f", "-qq", "-e", "trace=open,openat,creat", "-o", str(trace),
                                 *shell_helper.command, "get"], env=env, capture_output=True, text=True,
                                input=f"protocol=https\nhost={HOST}\npath=v1/repos/demo\n\n", timeout=60, check=False)
    if "ptrace" in result.stderr or not trace.exists():
        pytest.skip(f"strace cannot trace here: {result.stderr[:200]}")
    assert (result.returncode, result.stdout) == (0, CREDENTIAL), result.stderr
    created = [line for line in trace.read_text().splitlines() if "O_CREAT" in line or "creat(" in line]
    assert [line for line in created if f'"{temporary}/' in line and f'"{temporary}/tmp.' not in line] == []
    assert any(f'"{temporary}/tmp.' in line for line in created)  # the helper's own directory: traced
    assert service.asked[0].headers["Authorization"] == f"Bearer {token}"
