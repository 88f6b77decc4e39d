"""requirements.lock, what the image installs (``pip install --require-hashes``): every requirement of setup.py and
the build backend at a version their specifiers allow, each entry pinned ``==`` with SHA-256 hashes and named
once, nothing that redirects pip elsewhere, and, for the packages installed here at the locked version, every
dependency they declare on Linux x86_64 and aarch64 under CPython 3.11 locked too (pip would refuse the install
otherwise). scripts/lock writes it; tests/deploy/test_dockerfile.py checks the Dockerfile installs exactly it."""

from __future__ import annotations

import ast
import os
import re
import tomllib
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


class Entry(NamedTuple):
    requirement: Requirement
    hashes: tuple[str, ...]
    options: tuple[str, ...]
    """Any other option on the entry's line (there should be none)."""


def logical_lines(text: str) -> list[str]:
    """The file's lines as pip reads them: comments dropped, ``\\`` continuations joined, blank lines skipped."""
    lines, pending = [], ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        if joined:
            lines.append(joined)
    assert not pending.strip(), "the file ends in a continuation"
    return lines


def parse(text: str) -> tuple[list[Entry], list[str]]:
    """The entries, and the lines that are pip options rather than requirements (``--index-url`` …)."""
    entries, global_options = [], []
    for line in logical_lines(text):
        if line.startswith("-"):
            global_options.append(line)
            continue
        words = line.split()
        requirement = " ".join(w for w in words if not w.startswith("--"))
        hashes = tuple(m[1] for m in map(HASH.fullmatch, words) if m)
        options = tuple(w for w in words if w.startswith("--") and not HASH.fullmatch(w))
        entries.append(Entry(Requirement(requirement), hashes, options))
    return entries, global_options


ENTRIES, GLOBAL_OPTIONS = parse(LOCK.read_text(encoding="utf-8"))
PINS = {canonicalize_name(e.requirement.name): str(next(iter(e.requirement.specifier)).version) for e in ENTRIES}


def setup_requirements() -> list[Requirement]:
    """setup.py's REQUIREMENTS, read without running it (running it calls setup())."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    (value,) = [node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "REQUIREMENTS" for t in node.targets)]
    return [Requirement(r) for r in ast.literal_eval(value)]


def build_requirements() -> list[Requirement]:
    found = []
    for project in ("pyproject.toml", "helper/pyproject.toml"):
        data = tomllib.loads((ROOT / project).read_text(encoding="utf-8"))
        found += [Requirement(r) for r in data["build-system"]["requires"]]
    return found


def test_the_lock_parses_into_entries() -> None:
    assert len(ENTRIES) >= len(setup_requirements())


def test_every_entry_is_pinned_exactly_with_sha256_hashes() -> None:
    for entry in ENTRIES:
        (specifier,) = entry.requirement.specifier
        assert specifier.operator == "==" and "*" not in specifier.version, f"{entry.requirement}: pin it with =="
        assert entry.hashes, f"{entry.requirement}: no --hash=sha256: (pip --require-hashes refuses it)"
        assert len(set(entry.hashes)) == len(entry.hashes), f"{entry.requirement}: a hash twice"
        assert entry.requirement.url is None and not entry.requirement.extras, entry.requirement
        assert not entry.options, f"{entry.requirement}: {entry.options}"


def test_no_package_is_named_twice() -> None:
    names = [canonicalize_name(e.requirement.name) for e in ENTRIES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_nothing_redirects_pip_to_another_index_or_file() -> None:
    """No --index-url, --extra-index-url, --find-links, --trusted-host, -e or -r/-c of another file: the hashes
    say what may be installed, these lines where from, and the image's pip takes both from this one file."""
    assert GLOBAL_OPTIONS == []


def test_every_requirement_of_setup_py_and_the_build_backend_is_locked_at_an_allowed_version() -> None:
    for requirement in [*setup_requirements(), *build_requirements()]:
        name = canonicalize_name(requirement.name)
        assert name in PINS, f"{requirement} is not in requirements.lock: run ./scripts/lock"
        assert requirement.specifier.contains(PINS[name], prereleases=True), (
            f"requirements.lock pins {name}=={PINS[name]}, which {requirement} does not allow: run ./scripts/lock")


def test_ccweb_itself_is_not_in_the_lock() -> None:
    """The service and the helper come from the build context (--no-index), never from an index by name."""
    assert not {"ccweb-service", "ccweb-helper", "ccweb"} & set(PINS)


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_every_dependency_of_a_locked_package_is_locked(machine: str) -> None:
    """pip --require-hashes refuses an install that needs a package the file does not list. Checked with the
    metadata of the packages installed here at the locked version, with markers as the image evaluates them."""
    environment = {"python_version": "3.11", "python_full_version": "3.11.0", "implementation_name": "cpython",
                   "implementation_version": "3.11.0", "platform_python_implementation": "CPython",
                   "sys_platform": "linux", "os_name": "posix", "platform_system": "Linux", "platform_release": "",
                   "platform_version": "", "platform_machine": machine, "extra": ""}
    checked = []
    for name, version in PINS.items():
        try:
            installed = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if installed.version != version:
            continue
        checked.append(name)
        for text in installed.requires or []:
            needed = Requirement(text)
            if needed.marker is not None and not needed.marker.evaluate(environment):
                continue
            dependency = canonicalize_name(needed.name)
            assert dependency in PINS, f"{name}=={version} needs {needed}, which requirements.lock lacks"
            assert needed.specifier.contains(PINS[dependency], prereleases=True), (
                f"{name}=={version} needs {needed}; requirements.lock pins {dependency}=={PINS[dependency]}")
    if not checked:
        pytest.skip("no package of the lock is installed here at its locked version")


def test_the_header_says_how_to_regenerate_it() -> None:
    head = LOCK.read_text(encoding="utf-8").split("\n\n", 1)[0]
    assert "scripts/lock" in head and "--require-hashes" in head
    script = ROOT / "scripts" / "lock"
    assert script.is_file() and os.access(script, os.X_OK)
    text = script.read_text(encoding="utf-8")
    assert "--generate-hashes" in text and "requirements.lock" in text


# --- the tool that writes the lock: pip-tools, itself pinned with hashes ----------------------------------------

TOOLS = ROOT / "requirements" / "lock-tools.txt"
TOOL_ENTRIES, TOOL_OPTIONS = parse(TOOLS.read_text(encoding="utf-8"))


def test_the_lock_tool_is_pinned_exactly_with_sha256_hashes() -> None:
    """A new pip-tools release (or one that is not what it says) writes no lock until it is reviewed into
    requirements/lock-tools.txt: every package scripts/lock runs is named there once, ``==``, with its hashes."""
    names = [canonicalize_name(e.requirement.name) for e in TOOL_ENTRIES]
    assert "pip-tools" in names and len(names) == len(set(names)), names
    for entry in TOOL_ENTRIES:
        (specifier,) = entry.requirement.specifier
        assert specifier.operator == "==" and "*" not in specifier.version, f"{entry.requirement}: pin it with =="
        assert entry.hashes, f"{entry.requirement}: no --hash=sha256: (pip --require-hashes refuses it)"
        assert entry.requirement.url is None and not entry.options, entry.requirement
    assert TOOL_OPTIONS == []
    wanted = logical_lines((ROOT / "requirements" / "lock-tools.in").read_text(encoding="utf-8"))
    pins = {canonicalize_name(e.requirement.name): next(iter(e.requirement.specifier)).version for e in TOOL_ENTRIES}
    for requirement in map(Requirement, wanted):
        assert requirement.specifier.contains(pins[canonicalize_name(requirement.name)]), requirement


def test_scripts_lock_installs_the_tool_only_from_its_hashed_requirements() -> None:
    """Every ``pip install`` of scripts/lock (its commands, ``\\`` continuations joined) takes the hashed file,
    with --require-hashes and --no-deps: no package by name, no version pip-tools' release alone decides."""
    commands = logical_lines((ROOT / "scripts" / "lock").read_text(encoding="utf-8"))
    installs = [c for c in commands if re.search(r"\bpip install\b", c)]
    assert installs, "scripts/lock installs pip-tools somewhere"
    for command in installs:
        words = command.split()
        assert "--require-hashes" in words and "--no-deps" in words, command
        assert "-r" in words and words[words.index("-r") + 1] == '"$TOOL_REQUIREMENTS"', command
    assert "TOOL_REQUIREMENTS=requirements/lock-tools.txt" in commands


def test_the_tool_s_header_says_how_to_refresh_it() -> None:
    comments = [line for line in TOOLS.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert any(line.strip("# ") == "./scripts/lock --tools" for line in comments), comments
    assert "./scripts/lock --tools --upgrade" in (ROOT / "scripts" / "lock").read_text(encoding="utf-8")
