"""The CI snippets check the helper they download before anything runs it. The page's hold the SHA-256 of the very
bytes this service serves (and the ``sh`` helper's); run as the page shows them, against the service on loopback,
they install a download that matches and stop at one that differs before the download runs. Every download that
docs/ci.md and the README show is followed by its check."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from ccweb.routes import HELPER_PATH
from ccweb.shell_dist import SHELL_HELPER_PATH
from ccweb.web.snippets import Pinned, ci_platforms, without_python
from support import clean_env, serve_downloads, serve_http
from webpage import Page

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = "https://ccweb.example.com"
DOWNLOADING = ["ci-github-actions", "ci-gitlab", "ci-circleci", "ci-buildkite", "ci-bitbucket", "ci-azure-pipelines"]
MARKER = "changed-download-ran"
CHANGED = f'#!/bin/sh\ntouch "$HOME/{MARKER}"\n'.encode()
"""What a changed download holds here: a program that leaves a mark if anything runs it."""


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_downloads() as served:
        yield served


@pytest.fixture(scope="module")
def page(url: str) -> Page:
    response = httpx.get(url + "/", timeout=60)
    assert response.status_code == 200
    return Page.of(response)


@pytest.fixture(scope="module")
def changed() -> Iterator[str]:
    """Another server that answers every download with ``CHANGED``: a replica, proxy or name that sends other
    bytes than those pinned."""

    class Changed(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(CHANGED)))
            self.end_headers()
            self.wfile.write(CHANGED)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_http(Changed) as served:
        yield served


def snippet(page: Page, block: str) -> str:
    """A snippet's text exactly as a person copies it (``Page.text_of`` collapses whitespace)."""
    element = page.by_id(block)
    assert element is not None, f"no #{block}"
    return "".join(e.text for e in element.walk())


def served_sha256(url: str, path: str) -> str:
    return hashlib.sha256(httpx.get(url + path, timeout=60).content).hexdigest()


def test_the_page_s_ci_snippets_pin_the_sha256_of_the_helper_it_serves(url: str, page: Page) -> None:
    helper, sh_helper = served_sha256(url, HELPER_PATH), served_sha256(url, SHELL_HELPER_PATH)
    assert httpx.get(url + HELPER_PATH + ".sha256", timeout=60).text.split()[0] == helper
    for block in DOWNLOADING:
        code = snippet(page, block)
        assert f'echo "{helper}  ccweb-helper" | sha256sum -c -' in code, block
        assert "# pins this release's ccweb-helper by its SHA-256: update it when the service's helper changes" in code
        assert "CCWEB_HELPER_SHA256" not in code, "the value itself, not a variable to set"
    windows = snippet(page, "ci-azure-pipelines-windows")
    assert f"(Get-FileHash $helper -Algorithm SHA256).Hash -ne '{helper}'" in windows
    no_python = snippet(page, "ci-no-python")
    assert f'echo "{sh_helper}  ccweb-helper.sh" | sha256sum -c -' in no_python
    assert helper not in no_python and sh_helper != helper


def test_a_pinned_value_is_a_sha256_in_hex() -> None:
    for value in ("", "A" * 64, "a" * 63, "$(id)" + "a" * 59, "a" * 64 + "\n"):
        with pytest.raises(ValueError, match="not a SHA-256"):
            Pinned(helper=value)


def test_the_page_s_snippets_are_docs_ci_md_s_with_the_value_written_in() -> None:
    """The same commands as docs/ci.md's (which another test finds there word for word): only the value and the
    comment saying where it comes from differ."""
    pinned = Pinned("a" * 64, "b" * 64)
    docs = [b.code for p in ci_platforms(EXAMPLE, EXAMPLE, EXAMPLE) for b in p.blocks] + [without_python(EXAMPLE)]
    shown = [b.code for p in ci_platforms(EXAMPLE, EXAMPLE, EXAMPLE, pinned) for b in p.blocks]
    shown.append(without_python(EXAMPLE, pinned))
    comment = re.compile(r"# (vars\.)?CCWEB_HELPER(_SH)?_SHA256: a CI variable, .*")
    for doc, page_code in zip(docs, shown, strict=True):
        expected = (comment.sub("# pins", doc).replace("${{ vars.CCWEB_HELPER_SHA256 }}", "a" * 64)
                    .replace("$CCWEB_HELPER_SHA256", "a" * 64).replace("$env:CCWEB_HELPER_SHA256", "'" + "a" * 64 + "'")
                    .replace("$CCWEB_HELPER_SH_SHA256", "b" * 64))
        assert re.sub(r"# pins this release's .*", "# pins", page_code) == expected


# -- the page's snippets, run as a CI platform runs them ---------------------------------------------------------

def job(page: Page, block: str) -> str:
    """The shell commands of ``block`` as the platform runs them, without the final ``git clone`` (CodeCommit is
    not on loopback): GitLab's script items one after the other; Azure's ``script`` as it is."""
    loaded = yaml.safe_load(snippet(page, block))
    if block == "ci-gitlab":
        commands = list(loaded["clone"]["script"])
    else:
        commands = loaded["steps"][0]["script"].rstrip("\n").split("\n")
    assert commands[-1].startswith("git clone "), commands
    return "\n".join(commands[:-1]) + "\n"


def run(script: str, shell: list[str], tmp_path: Path, url: str, *, download_from: str | None = None,
        checker: str | None = None) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """``script`` in ``shell`` with a directory of the test's for /usr/local/bin (on PATH), a HOME of its own, and
    the downloads from ``download_from`` instead of the service; ``checker`` (a BusyBox) as ``sha256sum``."""
    home, bin_dir, work = tmp_path / "home", tmp_path / "bin", tmp_path / "work"
    for directory in (home, bin_dir, work):
        directory.mkdir(parents=True)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    if checker is not None:
        tools = tmp_path / "tools"
        tools.mkdir()
        (tools / "sha256sum").symlink_to(checker)
        path = f"{tools}{os.pathsep}{path}"
    script = script.replace("/usr/local/bin/", f"{bin_dir}/")
    if download_from is not None:
        script = script.replace(f"{url}/helper/", f"{download_from}/helper/")
    env = clean_env(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), PATH=path, GIT_CONFIG_NOSYSTEM="1")
    result = subprocess.run([*shell, script], cwd=work, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    return result, bin_dir / "ccweb-helper", home


def set_up(home: Path, url: str) -> str:
    config = home / ".gitconfig"
    assert config.exists(), "ccweb-helper setup wrote no git configuration"
    text = config.read_text(encoding="utf-8")
    assert url in text
    return text


def test_the_gitlab_job_installs_the_helper_the_service_serves_and_sets_it_up(url: str, page: Page,
                                                                           tmp_path: Path) -> None:
    result, installed, home = run(job(page, "ci-gitlab"), ["sh", "-e", "-c"], tmp_path, url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ccweb-helper: OK" in result.stdout
    assert installed.read_bytes() == httpx.get(url + HELPER_PATH, timeout=60).content
    assert os.access(installed, os.X_OK)
    assert "ccweb-helper" in set_up(home, url)
    assert not (tmp_path / "work" / "ccweb-helper").exists(), "no download left in the work tree"


@pytest.mark.parametrize(("block", "shell"), [
    pytest.param("ci-gitlab", ["sh", "-e", "-c"], id="gitlab-each-command-checked"),
    pytest.param("ci-azure-pipelines", ["bash", "--noprofile", "--norc", "-c"], id="azure-bash-without-e"),
])
def test_a_changed_download_stops_the_job_before_it_runs(  # noqa: PLR0917 (one row of the table)
        url: str, page: Page, changed: str, tmp_path: Path, block: str, shell: list[str]) -> None:
    """Azure's ``script`` goes on after a failing command: the check, in one ``&&`` list with the download and the
    move, still keeps the changed file from being installed or run."""
    result, installed, home = run(job(page, block), shell, tmp_path, url, download_from=changed)
    assert "ccweb-helper: FAILED" in result.stdout, result.stdout + result.stderr
    assert not installed.exists()
    assert not (home / MARKER).exists(), "the changed download ran"
    if block == "ci-gitlab":
        assert result.returncode != 0
        assert not (home / ".gitconfig").exists(), "the job stopped at the check"


CHECKERS = [pytest.param(None, id="coreutils")]
if shutil.which("busybox"):
    CHECKERS.append(pytest.param(shutil.which("busybox"), id="busybox"))


@pytest.mark.parametrize("checker", CHECKERS)
def test_the_no_python_line_installs_the_sh_helper_only_when_it_matches(url: str, page: Page, changed: str,
                                                                        tmp_path: Path, checker: str | None) -> None:
    script = snippet(page, "ci-no-python")
    result, installed, home = run(script, ["sh", "-c"], tmp_path / "same", url, checker=checker)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ccweb-helper.sh: OK" in result.stdout
    assert installed.read_bytes() == httpx.get(url + SHELL_HELPER_PATH, timeout=60).content
    set_up(home, url)
    result, installed, home = run(script, ["sh", "-c"], tmp_path / "changed", url, download_from=changed,
                                  checker=checker)
    assert result.returncode != 0 and "ccweb-helper.sh: FAILED" in result.stdout, result.stdout + result.stderr
    assert not installed.exists() and not (home / MARKER).exists() and not (home / ".gitconfig").exists()


# -- docs/ci.md and the README: no download without its check -----------------------------------------------------

DOWNLOAD = re.compile(r"(curl(?:\.exe)? -fsSL \S+/helper/(ccweb-helper(?:\.sh)?) -o (\S+))(.*)")
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def unchecked_downloads(text: str) -> list[str]:
    """Each download line of ``text``'s code blocks that is not followed at once by the check of the file it saved:
    ``echo "<sha256>  <file>" | sha256sum -c -`` (in an ``&&`` list or as the next command), or PowerShell's
    ``Get-FileHash`` of it; nor may the download line itself run anything after saving the file."""
    found = []
    for block in FENCE.findall(text):
        lines = [line.strip().removeprefix("- ") for line in block.splitlines()]
        commands = [line for line in lines if line and not line.startswith("#")]
        for i, line in enumerate(commands):
            match = DOWNLOAD.search(line)
            if match is None:
                continue
            name, saved, rest = match.group(2), match.group(3), match.group(4)
            following = commands[i + 1] if i + 1 < len(commands) else ""
            checked = (re.fullmatch(rf'echo "[^"]+  {re.escape(saved)}" \| sha256sum -c -( &&)?', following)
                       and saved.rsplit("/", 1)[-1] == name)
            checked = checked or re.fullmatch(
                rf"if \(\(Get-FileHash {re.escape(saved)} -Algorithm SHA256\)\.Hash -ne \S+\) "
                rf"\{{ throw '{re.escape(name)}: FAILED' \}}", following)
            if not checked or rest.strip() not in ("", "&&"):
                found.append(line)
    return found


@pytest.mark.parametrize("page_name", ["docs/ci.md", "README.md"])
def test_every_download_the_docs_show_is_checked_before_it_runs(page_name: str) -> None:
    text = (ROOT / page_name).read_text(encoding="utf-8")
    assert len(DOWNLOAD.findall(text)) >= 3, "the downloads are where this test looks"
    assert unchecked_downloads(text) == []


@pytest.mark.parametrize("bad", [
    "curl -fsSL https://x/helper/ccweb-helper -o /usr/local/bin/ccweb-helper && chmod +x /usr/local/bin/ccweb-helper",
    "curl -fsSL https://x/helper/ccweb-helper -o ccweb-helper &&\n  chmod +x ccweb-helper",
    "- curl -fsSL https://x/helper/ccweb-helper.sh -o ccweb-helper.sh\n- ccweb-helper.sh setup",
    'curl -fsSL https://x/helper/ccweb-helper -o ccweb-helper\necho "$X  other" | sha256sum -c -',
    'curl -fsSL https://x/helper/ccweb-helper -o ccweb-helper && ./ccweb-helper\n'
    'echo "$X  ccweb-helper" | sha256sum -c -',
    "curl.exe -fsSL https://x/helper/ccweb-helper -o $helper\npython $helper setup",
], ids=["straight-to-bin", "no-check", "list-no-check", "checks-another-file", "runs-first", "powershell"])
def test_the_docs_reader_finds_an_unchecked_download(bad: str) -> None:
    assert unchecked_downloads(f"```sh\n{bad}\n```\n") != []


def test_the_readme_shows_the_page_s_github_gitlab_and_no_python_snippets() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = {b.id: b.code for p in ci_platforms(EXAMPLE, EXAMPLE, "https://git-codecommit.us-east-1.amazonaws.com"
                                                 "/v1/repos/app") for b in p.blocks}
    for block in ("ci-github-actions", "ci-gitlab"):
        assert blocks[block] in readme, block
    assert without_python(EXAMPLE) in readme
