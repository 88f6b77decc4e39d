"""The POSIX sh helper's ``setup`` (git's global configuration) and ``grc`` (git's remote helper for the console's
GRC URLs: which URL it hands to git's own ``remote-https``), and what keeps the script in step with ccweb."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest

from ccweb import shell_dist
from ccweb.shell_dist import helper_script
from ccweb_helper.hosts import HOST_FORMS
from shell.shells import ShellHelper, TextService

SCRIPT = helper_script().decode()
GRC_KEYS = {"url.ccweb::.insteadof": "codecommit::", "url.ccweb::codecommit://.insteadof": "codecommit://",
            "protocol.ccweb.allow": "always"}


def config(env: dict[str, str], key: str) -> list[str]:
    """Every value of ``key`` in the global git config."""
    found = subprocess.run(["git", "config", "--global", "--get-all", key], env=env, capture_output=True, text=True,
                           check=False)
    return found.stdout.split("\n")[:-1]


def dead_service() -> str:
    """A loopback address nothing listens at: setup then writes every key but the service's git endpoints."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_the_served_script_is_every_part_of_its_source_in_order() -> None:
    """The source is in parts of at most 400 lines (one concern each); the service serves them as one file, the
    first (with the shebang, the settings and the options) first and the command last."""
    folder = Path(shell_dist.__file__).parent / "shell"
    assert sorted(path.name for path in folder.glob("*.sh")) == sorted(shell_dist.PARTS)
    texts = [(folder / part).read_text() for part in shell_dist.PARTS]
    assert all(text.endswith("\n") and len(text.splitlines()) <= 400 for text in texts)
    assert "".join(texts).replace(shell_dist.MARKER, shell_dist.codecommit_hosts_ere()) == SCRIPT
    assert SCRIPT.startswith("#!/bin/sh\n") and SCRIPT.endswith('\n"$mode" "$@"\n')


def test_the_script_writes_the_host_forms_of_ccweb_helper_hosts() -> None:
    match = re.search(r"^CODECOMMIT_URLS='([^']*)'$", SCRIPT, re.MULTILINE)
    assert match is not None
    assert match[1].split("\n") == [form.git_url for form in HOST_FORMS]


def test_every_variable_the_script_sets_is_unset_first() -> None:
    """A variable that came exported in the environment stays exported when the script assigns it: were a token
    assigned to it, every program the script starts would receive it. So the script unsets each of its own."""
    listed = re.search(r"^unset ((?:.*\\\n)*.*)$", SCRIPT, re.MULTILINE)
    assert listed is not None
    unset = set(listed[1].replace("\\\n", " ").split())
    code = re.sub(r"JSON_AWK='.*?\n}'", "", SCRIPT, flags=re.DOTALL)  # awk's own variables are awk's
    code = re.sub(r"(?:^|\s)#[^\n]*", "", code)  # comments
    code = re.sub(r"<<EOF\n.*?\nEOF\n", "", code, flags=re.DOTALL)  # here-documents: text, not assignments
    code = re.sub(r" -v [a-z]+=", " ", code)  # awk's variables
    assigned = set(re.findall(r"(?:^|[\s;({|&!])([a-z_][a-z0-9_]*)=", code, re.MULTILINE))
    loops = re.findall(r"\bfor ([a-z_][a-z0-9_]*)(?:;| in\b)|\bread -r ([a-z_][a-z0-9_]*)", code)
    assigned |= {name for names in loops for name in names if name}
    assert {"token", "request_auth", "escaped", "password"} <= assigned
    assert assigned - unset == set()


def test_setup_configures_every_host_form_the_service_s_endpoints_and_the_grc_urls(
    shell_helper: ShellHelper, tmp_path: Path,
) -> None:
    service = TextService(discovery="audience=ccweb\ngit_endpoint=git.internal.example:8443\n"
                                    "git_endpoint=127.0.0.1:8123\ngit_endpoint=bad_host!\n")
    helper = shell_helper.helper
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home")
        first = shell_helper.run(["setup", "--url", url, "--helper", helper.removeprefix("!")], env)
        written = (tmp_path / "home" / ".gitconfig").read_bytes()
        second = shell_helper.run(["setup", "--url", url, "--helper", helper], env)
    assert first.returncode == 0, first.stderr
    assert "skipped the git endpoint 'bad_host!' the service names" in first.stderr
    assert config(env, "ccweb.url") == [url]
    urls = [form.git_url for form in HOST_FORMS]
    urls += ["https://git.internal.example:8443", "https://127.0.0.1:8123", "http://127.0.0.1:8123"]
    for section in urls:
        assert config(env, f"credential.{section}.helper") == ["", helper], section
        assert config(env, f"credential.{section}.useHttpPath") == ["true"], section
    assert config(env, "credential.http://git.internal.example:8443.helper") == []  # http: loopback only
    for key, value in GRC_KEYS.items():
        assert config(env, key) == [value]
    assert config(env, "alias.remote-ccweb") == [f"{helper} grc"]
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith(f"Already configured in your global git config ({len(urls)} host patterns")
    assert (tmp_path / "home" / ".gitconfig").read_bytes() == written


def test_setup_takes_each_git_endpoint_line_whole(shell_helper: ShellHelper, tmp_path: Path) -> None:
    """A service's ``git_endpoint=*`` is no host: it was once expanded to the names of the files in the current
    directory, each then configured as a host of the service, and ``a b`` to two hosts."""
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "intranet.example").write_text("")
    service = TextService(discovery="audience=ccweb\ngit_endpoint=*\ngit_endpoint=git.one.example git.two.example\n")
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home")
        done = subprocess.run([*shell_helper.command, "setup", "--url", url], env=env, cwd=tmp_path / "work",
                              capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "skipped the git endpoint '*' the service names" in done.stderr
    assert "skipped the git endpoint 'git.one.example git.two.example' the service names" in done.stderr
    sections = subprocess.run(["git", "config", "--global", "--name-only", "--get-regexp", r"^credential\..*\.helper$"],
                              env=env, capture_output=True, text=True, check=True).stdout.split()
    assert set(sections) == {f"credential.{form.git_url}.helper" for form in HOST_FORMS}


def test_setup_names_this_script_and_works_on_without_the_service(shell_helper: ShellHelper, tmp_path: Path) -> None:
    dead = dead_service()
    env = shell_helper.env(tmp_path / "home")
    done = shell_helper.run(["setup", "--url", dead], env)
    assert done.returncode == 0, done.stderr
    assert "warning: could not read the service's git endpoints (cannot reach the ccweb service at" in done.stderr
    script = shell_helper.command[-1]  # executable, not on PATH: git runs it by its path
    assert config(env, f"credential.{HOST_FORMS[0].git_url}.helper") == ["", f"!'{script}'"]
    assert config(env, "alias.remote-ccweb") == [f"!'{script}' grc"]
    asked = shell_helper.run(["setup"], shell_helper.env(tmp_path / "other"))
    assert asked.returncode == 2
    assert "which ccweb service? Pass --url" in asked.stderr


def test_setup_adds_its_insteadof_values_and_keeps_the_person_s_own(shell_helper: ShellHelper, tmp_path: Path) -> None:
    env = shell_helper.env(tmp_path / "home")
    for key, value in (("url.ccweb::.insteadOf", "cc::"), ("url.ccweb::codecommit://.insteadOf", "grc://")):
        subprocess.run(["git", "config", "--global", "--add", key, value], env=env, check=True)
    url = dead_service()
    first = shell_helper.run(["setup", "--url", url], env)
    second = shell_helper.run(["setup", "--url", url], env)
    assert first.returncode == 0, first.stderr
    assert config(env, "url.ccweb::.insteadOf") == ["cc::", "codecommit::"]
    assert config(env, "url.ccweb::codecommit://.insteadOf") == ["grc://", "codecommit://"]
    assert second.stdout.startswith("Already configured in your global git config"), second.stdout


def git_url(env: dict[str, str], url: str) -> str:
    """The URL git fetches ``url`` from, after every insteadOf (the scheme says which remote helper runs)."""
    return subprocess.run(["git", "ls-remote", "--get-url", url], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize("helper", [None, "/opt/tools/run-it"], ids=["this-script", "named-helper"])
def test_setup_no_grc_takes_out_the_grc_keys_it_wrote_and_nothing_of_the_person_s(
    shell_helper: ShellHelper, tmp_path: Path, helper: str | None,
) -> None:
    env = shell_helper.env(tmp_path / "home")
    url = dead_service()
    options = ["--url", url, *(["--helper", helper] if helper else [])]
    assert shell_helper.run(["setup", *options], env).returncode == 0
    assert git_url(env, "codecommit::us-east-1://demo") == "ccweb::us-east-1://demo"
    subprocess.run(["git", "config", "--global", "--add", "url.ccweb::.insteadOf", "cc::"], env=env, check=True)
    left = shell_helper.run(["setup", *options, "--no-grc"], env)
    again = shell_helper.run(["setup", *options, "--no-grc"], env)
    assert left.returncode == 0, left.stderr
    assert "codecommit:: URLs are left to AWS's git-remote-codecommit: --no-grc" in left.stdout
    assert git_url(env, "codecommit::us-east-1://demo") == "codecommit::us-east-1://demo"  # AWS's helper runs
    assert git_url(env, "codecommit://demo") == "codecommit://demo"
    assert config(env, "url.ccweb::.insteadOf") == ["cc::"]
    for key in ("url.ccweb::codecommit://.insteadOf", "alias.remote-ccweb", "protocol.ccweb.allow"):
        assert config(env, key) == [], key
    assert config(env, f"credential.{HOST_FORMS[0].git_url}.useHttpPath") == ["true"]  # the rest stays
    assert again.stdout.startswith("Already configured in your global git config"), again.stdout


def test_setup_no_grc_leaves_a_remote_ccweb_alias_of_the_person_s_own_and_says_so(shell_helper: ShellHelper,
                                                                                  tmp_path: Path) -> None:
    env = shell_helper.env(tmp_path / "home")
    url = dead_service()
    assert shell_helper.run(["setup", "--url", url], env).returncode == 0
    subprocess.run(["git", "config", "--global", "--add", "alias.remote-ccweb", "!my-own-tool grc"], env=env,
                   check=True)
    left = shell_helper.run(["setup", "--url", url, "--no-grc"], env)
    assert left.returncode == 0, left.stderr
    assert config(env, "alias.remote-ccweb") == ["!my-own-tool grc"]
    assert ("note: alias.remote-ccweb = '!my-own-tool grc' is left in your global git config: it is not the "
            f"`!'{shell_helper.command[-1]}' grc` setup writes") in left.stderr


@pytest.mark.parametrize(("address", "settings", "sentence"), [
    ("useast1://demo", {}, "'useast1' in codecommit::useast1://demo is not an AWS region (such as us-east-2)"),
    ("us-east-1://bad name", {}, "codecommit::us-east-1://bad name does not end in a CodeCommit repository name"),
    ("codecommit://demo", {}, "codecommit://demo names no region and none is configured: write "
     "codecommit::<region>://demo"),
    ("codecommit://demo", {"AWS_REGION": "moon"}, "AWS_REGION is 'moon', which is not an AWS region"),
    ("us-east-1://demo", {"grc_endpoint": "us-east-1 https://git-codecommit.us-west-2.amazonaws.com/v1/repos/"},
     "names 'https://git-codecommit.us-west-2.amazonaws.com/v1/repos/' for the GRC URLs of us-east-1, which is a "
     "CodeCommit host of us-west-2"),
    ("us-east-1://demo", {"grc_endpoint": "us-east-1 https://git.elsewhere.example/v1/repos/"},
     "which is neither a CodeCommit host of us-east-1 nor one of the service's git endpoints"),
], ids=["region", "repository", "no-region", "bad-region", "other-region-host", "unknown-host"])
def test_grc_refuses_in_one_sentence(shell_helper: ShellHelper, tmp_path: Path, address: str,
                                     settings: dict[str, str], sentence: str) -> None:
    endpoint = settings.get("grc_endpoint")
    variables = {k: v for k, v in settings.items() if k != "grc_endpoint"}
    service = TextService(discovery="audience=ccweb\n" + (f"grc_endpoint={endpoint}\n" if endpoint else ""))
    with service.serving() as url:
        env = shell_helper.env(tmp_path / "home", **variables, **({"CCWEB_URL": url} if endpoint else {}))
        result = shell_helper.run(["grc", "origin", address], env)
    assert (result.returncode, result.stdout) == (128, "")
    assert result.stderr.startswith("ccweb: ") and sentence in result.stderr, result.stderr
    assert "remote-http" not in shell_helper.command_lines()


@pytest.mark.parametrize(("address", "settings", "sentence"), [
    ("x@127.0.0.1:4443/a\nus-east-1://demo", {}, "'x@127.0.0.1:4443/a?us-east-1' in "
     "codecommit::x@127.0.0.1:4443/a?us-east-1://demo is not an AWS region"),
    ("us-east-1\r://demo", {}, "'us-east-1?' in codecommit::us-east-1?://demo is not an AWS region"),
    ("codecommit://demo", {"ccweb.region": "evil.example/x\nus-east-1"},
     "git config ccweb.region is 'evil.example/x?us-east-1', which is not an AWS region"),
    ("codecommit://demo", {"AWS_REGION": "127.0.0.1:4443/a\nus-west-2"},
     "AWS_REGION is '127.0.0.1:4443/a?us-west-2', which is not an AWS region"),
    ("us-east-1://demo", {"ccweb.us-east-1.endpoint": "127.0.0.1:4443\nevil.example"},
     "git config ccweb.us-east-1.endpoint must be host[:port]"),
], ids=["address", "carriage-return", "git-config-region", "aws-region", "git-config-endpoint"])
def test_grc_refuses_a_region_or_host_of_more_than_one_line(shell_helper: ShellHelper, tmp_path: Path, address: str,
                                                            settings: dict[str, str], sentence: str) -> None:
    """grep matches line by line: "x@127.0.0.1:4443/a<line break>us-east-1" once passed as a region because its
    last line is one (a hostile .gitmodules can hold it), and git was handed a URL with another host in it."""
    env = shell_helper.env(tmp_path / "home", **{k: v for k, v in settings.items() if k.isupper()})
    for key, value in settings.items():
        if key.startswith("ccweb."):
            subprocess.run(["git", "config", "--global", key, value], env=env, check=True)
    result = shell_helper.run(["grc", "origin", address], env)
    assert (result.returncode, result.stdout) == (128, "")
    assert result.stderr.startswith("ccweb: ") and sentence in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
    assert "remote-http" not in shell_helper.command_lines()


@pytest.mark.parametrize(("address", "settings", "url"), [
    ("us-east-2://team@app", {}, "https://git-codecommit.us-east-2.amazonaws.com/v1/repos/app"),
    ("cn-north-1://app/", {}, "https://git-codecommit.cn-north-1.amazonaws.com.cn/v1/repos/app"),
    ("codecommit://app", {"AWS_DEFAULT_REGION": "eu-west-1"},
     "https://git-codecommit.eu-west-1.amazonaws.com/v1/repos/app"),
    ("codecommit://app", {"ccweb.region": "ap-south-1", "AWS_REGION": "eu-west-1"},
     "https://git-codecommit.ap-south-1.amazonaws.com/v1/repos/app"),
    ("us-east-1://app", {"ccweb.us-east-1.endpoint": "127.0.0.1:8123"}, "http://127.0.0.1:8123/v1/repos/app"),
    ("us-east-1://app", {"ccweb.us-east-1.endpoint": "git-codecommit-fips.us-east-1.amazonaws.com"},
     "https://git-codecommit-fips.us-east-1.amazonaws.com/v1/repos/app"),
    ("codecommit://app", {"service": "grc_region=us-east-1\ngrc_endpoint=us-east-1 http://127.0.0.1:8123/v1/repos/\n"
                                     "git_endpoint=127.0.0.1:8123\n"}, "http://127.0.0.1:8123/v1/repos/app"),
], ids=["profile", "china", "aws-default-region", "git-config-region", "loopback-endpoint", "fips-endpoint",
        "service"])
def test_grc_hands_git_the_repository_s_url(shell_helper: ShellHelper, tmp_path: Path, address: str,
                                            settings: dict[str, str], url: str) -> None:
    service = TextService(discovery="audience=ccweb\n" + settings.get("service", ""))
    with service.serving() as service_url:
        env = shell_helper.env(tmp_path / "home", CCWEB_URL=service_url,
                               **{k: v for k, v in settings.items() if k.isupper()})
        for key, value in settings.items():
            if key.startswith("ccweb."):
                subprocess.run(["git", "config", "--global", key, value], env=env, check=True)
        shell_helper.run(["grc", "origin", address], env)  # git's remote-http(s) then reads no command: it ends
    scheme = url.partition(":")[0]
    assert f"git remote-{scheme} origin {url}\n" in shell_helper.command_lines()
