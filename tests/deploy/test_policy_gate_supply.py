"""The policy gate's supply chain (docs/ci.md#policy-gate, deploy/ci): what it runs is what the service runs, and
nothing reaches it by name alone.

- nothing in deploy/ci or the guide's policy gate section installs without ``--require-hashes`` or names an image
  by tag (a check that finds what the examples did before: ``pip install "ccweb-service==0.1.0"`` from the default
  index, where that name is anyone's to register, and ``python:3.12-slim``);
- the fallback for runners without the image: deploy/ci/gate-requirements writes requirements.lock and the two
  wheels' hashes; the documented install takes the wheels built here and refuses another file of the same name and
  version; the guide and both examples show that very command.

The jobs themselves (the image by digest, their commands on this repository's overlays):
tests/deploy/test_policy_gate.py.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "deploy" / "ci"
GITHUB = CI / "github-actions-policy-gate.yml"
GITLAB = CI / "gitlab-policy-gate.gitlab-ci.yml"
GATE_REQUIREMENTS = CI / "gate-requirements"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


# -- nothing installed without its hashes, no image by tag ---------------------------------------------------

DOCS = ROOT / "docs" / "ci.md"
PIP_INSTALL = re.compile(r"\bpip(?:3(?:\.\d+)?)?\s+install\b[^\n]*")
IMAGE_BY_TAG = re.compile(r"(?<![\w@/.:-])((?:[\w.-]+(?::\d+)?/)*[a-z][\w.-]*:[a-z0-9_][\w.-]*)(?![\w/:@.-])")
"""name:tag, with or without a registry: an image reference with a tag and no digest after it (an IAM action such
as ecr:BatchGetImage is no image: a tag starts with a lowercase letter or a digit)."""
IMAGE_USE = re.compile(r"\bimage:[ \t]*\S[^\n]*|\bdocker\s+(?:run|pull|create)\s[^\n]*")
"""An image: key with its value on the line, a docker command: where an image is named."""
DIGESTS = re.compile(r"@sha256:([0-9a-f]{64}(?![0-9a-f])|<digest>|\[0-9a-f\](?:\{64\}|\\\{64\\\}))?")
"""Every @sha256: is followed by a digest, the placeholder <digest>, or the pattern of one (the jobs' check)."""


def gate_texts() -> dict[str, str]:
    """deploy/ci's files and the policy gate section of docs/ci.md, continuation lines joined."""
    section = DOCS.read_text(encoding="utf-8").partition("\n## Policy gate\n")[2].partition("\n## ")[0]
    assert "ccweb test-policy" in section
    texts = {str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
             for path in sorted(CI.iterdir())}
    return {name: re.sub(r"\\\n\s*", " ", text) for name, text in {**texts, "docs/ci.md#policy-gate": section}.items()}


def supply_findings(text: str) -> list[str]:
    """Each pip install without --require-hashes, each image reference by tag (or by a name alone in an image:
    key or a docker command) in ``text``."""
    found = [f"unhashed: {m.group(0)}" for m in PIP_INSTALL.finditer(text) if "--require-hashes" not in m.group(0)]
    found += [f"by tag: {m.group(1)}" for m in IMAGE_BY_TAG.finditer(text)
              if not m.group(1).startswith(("http:", "https:", "sha256:"))]
    found += [f"not by digest: {use}" for use in IMAGE_USE.findall(text)
              if "@sha256:" not in use and '"$CCWEB_IMAGE"' not in use and "image: $CCWEB_IMAGE" not in use]
    found += [f"no digest: @sha256:{d}" for d in DIGESTS.findall(text) if not d]
    return found


@pytest.mark.parametrize(("name", "text"), gate_texts().items(), ids=list(gate_texts()))
def test_nothing_installs_without_hashes_and_no_image_is_taken_by_tag(name: str, text: str) -> None:
    assert supply_findings(text) == [], name


def test_the_check_finds_what_the_examples_did() -> None:
    assert [f.partition(":")[0] for f in supply_findings(
        '    run: python -m pip install --no-cache-dir "ccweb-service==0.1.0"\n'
        "  image: python:3.12-slim                 # pin it by digest where your policy asks\n"
        "    - pip3 install -r requirements.txt\n"
        "docker run --rm 444455556666.dkr.ecr.eu-west-1.amazonaws.com/ccweb:0.1.0 check-config x\n"
        "docker run --rm ccweb check-config x\n"
        "docker run --rm ccweb@sha256:0123 check-config x\n")] == [
            "unhashed", "unhashed", "by tag", "by tag", "not by digest", "not by digest", "not by digest", "no digest"]
    assert supply_findings(
        "python -m pip install --require-hashes --no-deps -r ccweb-gate.txt\n"
        f"  image: python:3.11-slim-bookworm@{DIGEST}\n  image:\n    name: $CCWEB_IMAGE\n"
        'docker run --rm -v "$PWD:/policies:ro" --entrypoint ccweb "$CCWEB_IMAGE" check-config "$OVERLAY/x"\n'
        "https://ccweb.example.com  <registry>/ccweb@sha256:<digest>  sub: repo:acme/app:ref:refs/heads/main\n") == []


# -- the fallback: ccweb from its wheels, every file by its hash ------------------------------------------------

PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
BUILD = "pip wheel --no-deps --no-build-isolation -w dist . ./helper"
FALLBACK = "python -m pip install --require-hashes --no-deps --only-binary=:all: -r ccweb-gate.txt"


def test_the_fallback_is_the_one_tested_here_wherever_it_is_shown() -> None:
    texts = gate_texts()
    assert all(FALLBACK in texts[name] for name in [*(str(p.relative_to(ROOT)) for p in (GITHUB, GITLAB)),
                                                       "docs/ci.md#policy-gate"])
    assert f"python3.11 -m {BUILD}" in texts["docs/ci.md#policy-gate"]
    assert "deploy/ci/gate-requirements dist > ccweb-gate.txt" in texts["docs/ci.md#policy-gate"]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ccweb-service's and ccweb-helper's wheels, built from a copy of this checkout as the documented command."""
    clone = tmp_path_factory.mktemp("clone")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, clone / name)
    for name in ("service", "helper"):
        shutil.copytree(ROOT / name, clone / name, ignore=ignore)
    subprocess.run([*PIP, "-q", *BUILD.split()[1:]], cwd=clone, check=True, capture_output=True, timeout=300)
    return clone / "dist"


def test_the_gate_requirements_are_the_lock_and_the_wheels_by_hash(wheels: Path, tmp_path: Path) -> None:
    result = run([str(GATE_REQUIREMENTS), str(wheels)])
    assert result.returncode == 0, result.stderr
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    assert result.stdout.startswith(lock)
    entries = result.stdout.removeprefix(lock)
    for name in ("ccweb-service", "ccweb-helper"):
        (wheel,) = wheels.glob(f"{name.replace('-', '_')}-*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        assert f"{name}=={version(name)} \\\n    --hash=sha256:{digest}\n" in entries
    (tmp_path / "ccweb-gate.txt").write_text(entries, encoding="utf-8")  # the lock's packages need an index
    install = [*PIP, *FALLBACK.split()[3:-1], str(tmp_path / "ccweb-gate.txt"), "--no-index", "--find-links",
               str(wheels)]
    done = subprocess.run([*install, "--target", str(tmp_path / "ok")], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ok" / "ccweb" / "cli.py").is_file() and (tmp_path / "ok" / "ccweb_helper").is_dir()
    served = shutil.copytree(wheels, tmp_path / "served")
    (service,) = served.glob("ccweb_service-*.whl")
    with service.open("ab") as served_file:  # another file of the same name and version: what an index could serve
        served_file.write(b"\0")
    install[install.index(str(wheels))] = str(served)
    refused = subprocess.run([*install, "--target", str(tmp_path / "refused")], capture_output=True, text=True,
                             timeout=300, check=False)
    assert refused.returncode != 0 and "DO NOT MATCH THE HASHES" in refused.stderr
    assert not (tmp_path / "refused" / "ccweb").exists()


def test_the_gate_requirements_refuse_a_directory_without_the_wheels(tmp_path: Path) -> None:
    result = run([str(GATE_REQUIREMENTS), str(tmp_path)])
    assert result.returncode == 1
    assert result.stderr == f"deploy/ci/gate-requirements: {tmp_path} holds no single ccweb_service-*.whl\n"
