"""The two distributions: ``pip install ./helper`` installs the helper alone, with no dependencies;
``pip install .`` installs the service and, from ./helper beside it, the helper; no file belongs to both."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import NamedTuple

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from ccweb.shell_dist import PARTS

ROOT = Path(__file__).resolve().parents[2]
FLOORS = ROOT / "tests" / "floors.txt"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]


class Wheel(NamedTuple):
    files: set[str]  # every path it installs, but its own .dist-info
    metadata: str
    scripts: set[str]


def checkout(target: Path) -> Path:
    """What a fresh clone has of the two distributions (no build directories, no caches), in ``target``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    target.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    for name in ("service", "helper"):
        shutil.copytree(ROOT / name, target / name, ignore=ignore)
    return target.resolve()


def build_wheel(source: Path, out: Path) -> Wheel:
    subprocess.run([*PIP, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
                   check=True, capture_output=True, cwd=out)
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    scripts = entry_points.partition("[console_scripts]")[2].partition("\n[")[0]
    return Wheel(
        files={n for n in names if not n.split("/")[0].endswith(".dist-info")},
        metadata=metadata,
        scripts={line.partition("=")[0].strip() for line in scripts.splitlines() if line.strip()},
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return checkout(tmp_path_factory.mktemp("clone") / "ccweb")


@pytest.fixture(scope="module")
def helper_wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Wheel:
    return build_wheel(source / "helper", tmp_path_factory.mktemp("helper-wheel"))


@pytest.fixture(scope="module")
def service_wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Wheel:
    return build_wheel(source, tmp_path_factory.mktemp("service-wheel"))


def requirements(metadata: str) -> list[Requirement]:
    return [Requirement(line.removeprefix("Requires-Dist:")) for line in metadata.splitlines()
            if line.startswith("Requires-Dist:")]


def test_the_helper_is_its_own_dependency_free_distribution(helper_wheel: Wheel) -> None:
    assert {name.split("/")[0] for name in helper_wheel.files} == {"ccweb_helper"}
    assert "Name: ccweb-helper\n" in helper_wheel.metadata
    assert requirements(helper_wheel.metadata) == []
    assert "Requires-Python: >=3.9" in helper_wheel.metadata
    assert helper_wheel.scripts == {"ccweb-helper"}


def test_the_service_ships_the_service_and_names_the_helper_beside_it(source: Path, service_wheel: Wheel) -> None:
    assert {name.split("/")[0] for name in service_wheel.files} == {"ccweb"}
    assert "ccweb/sandbox/__init__.py" in service_wheel.files and "ccweb/py.typed" in service_wheel.files
    # the sh helper's parts, served as one file at /helper/ccweb-helper.sh
    assert {f"ccweb/shell/{part}" for part in PARTS} <= service_wheel.files
    assert "Name: ccweb-service\n" in service_wheel.metadata  # "ccweb" is another project's name on PyPI
    assert service_wheel.scripts == {"ccweb"}
    # By path, never by name alone: a name would be looked up on a package index.
    helper = [r.url for r in requirements(service_wheel.metadata) if r.name == "ccweb-helper"]
    assert helper == [(source / "helper").as_uri()]


def test_the_service_installs_every_file_of_its_source(source: Path, service_wheel: Wheel) -> None:
    """Package data too: the web page's templates, stylesheet and script, the sh helper's parts, py.typed."""
    tree = {path.relative_to(source / "service").as_posix() for path in (source / "service" / "ccweb").rglob("*")
            if path.is_file()}  # the build leaves its egg-info beside ccweb/
    assert {"ccweb/web/templates/layout.html", "ccweb/web/static/favicon.svg"} <= tree
    assert sorted(tree - service_wheel.files) == []


def test_no_installed_file_belongs_to_both(helper_wheel: Wheel, service_wheel: Wheel) -> None:
    assert not helper_wheel.files & service_wheel.files
    assert not helper_wheel.scripts & service_wheel.scripts
    assert helper_wheel.scripts | service_wheel.scripts == {"ccweb", "ccweb-helper"}


def test_pip_install_dot_takes_the_helper_from_beside_it_and_nothing_from_an_index(tmp_path: Path) -> None:
    source = checkout(tmp_path / "ccweb")
    report = tmp_path / "report.json"
    subprocess.run([*PIP, "install", "-q", "--dry-run", "--no-index", "--no-build-isolation", "--report", str(report),
                    str(source)], check=True, capture_output=True, cwd=tmp_path)
    installs = {item["metadata"]["name"]: item["download_info"]["url"]
                for item in json.loads(report.read_text())["install"]}
    assert installs == {"ccweb-service": source.as_uri(), "ccweb-helper": (source / "helper").as_uri()}


def test_the_floors_file_pins_every_requirement_at_its_floor(service_wheel: Wheel) -> None:
    """tests/floors.txt, the constraints the suite is run against once in a while, names the declared floors."""
    declared = {canonical(r.name): list(r.specifier) for r in requirements(service_wheel.metadata)
                if r.url is None and r.marker is None}  # not the test tools (extra == "test")
    assert declared, "the service has requirements"
    assert all(len(s) == 1 and s[0].operator == ">=" for s in declared.values()), f"one floor each: {declared}"
    lines = [line.partition("#")[0].strip() for line in FLOORS.read_text(encoding="utf-8").splitlines()]
    pinned = {canonical(r.name): list(r.specifier) for r in map(Requirement, filter(None, lines))}
    assert all(len(s) == 1 and s[0].operator == "==" for s in pinned.values()), f"one pin each: {pinned}"
    assert {name: Version(s[0].version) for name, s in pinned.items()} == {
        name: Version(s[0].version) for name, s in declared.items()
    }


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")
