"""``GET /helper/ccweb-helper.sha256`` and ``GET /helper/ccweb-helper.sh.sha256``: the SHA-256 of the very bytes the
downloads serve, in ``sha256sum``'s format, so coreutils' ``sha256sum -c`` (and BusyBox's, and Perl's ``shasum``
that macOS has) accepts a download that is intact and refuses one that is not; cached and revalidated as the
downloads are."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ccweb.downloads import make_download
from support import serve_downloads

DOWNLOADS = [pytest.param("/helper/ccweb-helper", "ccweb-helper", id="zipapp"),
             pytest.param("/helper/ccweb-helper.sh", "ccweb-helper.sh", id="sh")]
CHECKERS = [pytest.param(["sha256sum", "-c"], id="coreutils")]
if shutil.which("busybox"):
    CHECKERS.append(pytest.param(["busybox", "sha256sum", "-c"], id="busybox"))
if shutil.which("shasum"):
    CHECKERS.append(pytest.param(["shasum", "-a", "256", "-c"], id="shasum"))


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_downloads() as served:
        yield served


@pytest.mark.parametrize(("path", "name"), DOWNLOADS)
def test_the_checksum_is_the_sha256_of_the_served_bytes_in_sha256sum_format(url: str, path: str, name: str) -> None:
    download = httpx.get(url + path, timeout=60)
    checksum = httpx.get(url + path + ".sha256", timeout=60)
    assert (download.status_code, checksum.status_code) == (200, 200)
    assert checksum.text == f"{hashlib.sha256(download.content).hexdigest()}  {name}\n"
    assert re.fullmatch(rb"[0-9a-f]{64}  [a-z.-]+\n", checksum.content)
    assert checksum.headers["content-type"] == "text/plain; charset=utf-8"
    assert checksum.headers["x-content-type-options"] == "nosniff"
    assert checksum.headers["cache-control"] == download.headers["cache-control"] == "public, max-age=300"
    assert checksum.headers["content-disposition"] == f'inline; filename="{name}.sha256"'
    assert checksum.headers["etag"] == f'"{hashlib.sha256(checksum.content).hexdigest()}"'
    assert checksum.headers["etag"] != download.headers["etag"], "two representations, two validators"


@pytest.mark.parametrize(("path", "name"), DOWNLOADS)
def test_head_and_if_none_match_as_for_the_download(url: str, path: str, name: str) -> None:
    got = httpx.get(url + path + ".sha256", timeout=60)
    head = httpx.head(url + path + ".sha256", timeout=60)
    assert head.status_code == 200 and head.content == b""
    same = ("etag", "content-length", "content-type", "cache-control")
    assert {k: head.headers.get(k) for k in same} == {k: got.headers.get(k) for k in same}
    assert int(head.headers["content-length"]) == len(got.content) == 64 + 2 + len(name) + 1
    for method in (httpx.get, httpx.head):
        unchanged = method(url + path + ".sha256", headers={"If-None-Match": got.headers["etag"]}, timeout=60)
        assert (unchanged.status_code, unchanged.content, unchanged.headers["etag"]) == (304, b"", got.headers["etag"])
    stale = httpx.get(url + path + ".sha256", headers={"If-None-Match": '"old"'}, timeout=60)
    assert (stale.status_code, stale.content) == (200, got.content)


def test_the_openapi_document_lists_the_checksums_as_text(url: str) -> None:
    paths = httpx.get(f"{url}/openapi.json", timeout=60).json()["paths"]
    for path in ("/helper/ccweb-helper.sha256", "/helper/ccweb-helper.sh.sha256"):
        assert list(paths[path]) == ["get"]
        answer = httpx.get(url + path, timeout=60).text
        schema = paths[path]["get"]["responses"]["200"]["content"]["text/plain"]["schema"]
        assert re.fullmatch(schema["pattern"].removeprefix("^").removesuffix("$"), answer)


def fetch_pair(url: str, path: str, name: str, into: Path) -> None:
    """The download saved under its own name beside its checksum file, as a job or a person would keep them."""
    (into / name).write_bytes(httpx.get(url + path, timeout=60).content)
    (into / f"{name}.sha256").write_bytes(httpx.get(url + path + ".sha256", timeout=60).content)


@pytest.mark.parametrize("checker", CHECKERS)
@pytest.mark.parametrize(("path", "name"), DOWNLOADS)
def test_sha256sum_accepts_the_download_and_refuses_a_changed_one(url: str, path: str, name: str, checker: list[str],
                                                                   tmp_path: Path) -> None:
    fetch_pair(url, path, name, tmp_path)
    ok = subprocess.run([*checker, f"{name}.sha256"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                        check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{name}: OK" in ok.stdout
    changed = bytearray((tmp_path / name).read_bytes())
    changed[len(changed) // 2] ^= 0x01
    (tmp_path / name).write_bytes(bytes(changed))
    refused = subprocess.run([*checker, f"{name}.sha256"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                             check=False)
    assert refused.returncode != 0
    assert "FAILED" in refused.stdout + refused.stderr


@pytest.mark.parametrize(("path", "name"), DOWNLOADS)
def test_sha256sum_refuses_a_truncated_download(url: str, path: str, name: str, tmp_path: Path) -> None:
    """A download cut short (a proxy's timeout, a full disk) is what the same-server checksum does catch."""
    fetch_pair(url, path, name, tmp_path)
    whole = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(whole[: len(whole) - 100])
    refused = subprocess.run(["sha256sum", "-c", f"{name}.sha256"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=30, check=False)
    assert refused.returncode == 1 and f"{name}: FAILED" in refused.stdout


@pytest.mark.parametrize("name", ["", "a/b", "a\nb", 'a"b', "a\\b", "caf\u00e9"])
def test_a_name_a_checksum_line_cannot_carry_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a file name"):
        make_download(name, b"x", "text/plain", "inline")


# -- docs/ci.md's check, run as written against this service ---------------------------------------------------

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "ci.md").read_text(encoding="utf-8")
EXAMPLE = "https://ccweb.example.com"


def docs_section() -> str:
    start = DOCS.index("\n## Checking the download\n")
    return DOCS[start: DOCS.index("\n## ", start + 1)]


def docs_blocks() -> dict[str, str]:
    """The section's ``sh`` blocks by the file each downloads (``ccweb-helper``, ``ccweb-helper.sh``)."""
    blocks = re.findall(r"^```sh\n(.*?)^```", docs_section(), flags=re.MULTILINE | re.DOTALL)
    found = {}
    for block in blocks:
        (name,) = re.findall(rf"{re.escape(EXAMPLE)}/helper/(\S+) -o ", block)
        found[name] = block
    return found


def run_docs_block(block: str, url: str, pinned: str, work: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``block`` as a job would run it: the pinned value in its first line, this service for the example's, and a
    directory of the test's for /usr/local/bin."""
    first, rest = block.split("\n", 1)
    variable = first.split("=", 1)[0]
    assert re.fullmatch(r"CCWEB_HELPER(_SH)?_SHA256", variable), first
    bin_dir = work / "bin"
    bin_dir.mkdir()
    script = f"{variable}={pinned}\n" + rest.replace(EXAMPLE, url).replace("/usr/local/bin/", f"{bin_dir}/")
    result = subprocess.run(["sh", "-c", script], cwd=work, capture_output=True, text=True, timeout=60, check=False)
    return result, bin_dir / "ccweb-helper"


def test_docs_ci_md_checks_both_downloads() -> None:
    assert sorted(docs_blocks()) == ["ccweb-helper", "ccweb-helper.sh"]


@pytest.mark.parametrize(("path", "name"), DOWNLOADS)
def test_the_docs_check_installs_the_download_that_matches_the_pinned_value(url: str, path: str, name: str,
                                                                            tmp_path: Path) -> None:
    served = httpx.get(url + path, timeout=60).content
    result, installed = run_docs_block(docs_blocks()[name], url, hashlib.sha256(served).hexdigest(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{name}: OK" in result.stdout
    assert installed.read_bytes() == served
    assert installed.stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize(("path", "name"), DOWNLOADS)
def test_the_docs_check_installs_nothing_when_the_download_differs(url: str, path: str, name: str,
                                                                   tmp_path: Path) -> None:
    """The service now sends other bytes than those pinned (another release, or a changed download)."""
    result, installed = run_docs_block(docs_blocks()[name], url, hashlib.sha256(b"what was rolled out").hexdigest(),
                                       tmp_path)
    assert result.returncode != 0
    assert f"{name}: FAILED" in result.stdout
    assert not installed.exists()


def test_the_docs_same_server_check_accepts_an_intact_download(url: str, tmp_path: Path) -> None:
    (command,) = re.findall(r"`(curl -fsSL \S+/helper/ccweb-helper\.sha256 \| sha256sum -c -)`", docs_section())
    (tmp_path / "ccweb-helper").write_bytes(httpx.get(url + "/helper/ccweb-helper", timeout=60).content)
    result = subprocess.run(["sh", "-c", command.replace(EXAMPLE, url)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0 and "ccweb-helper: OK" in result.stdout, result.stdout + result.stderr
