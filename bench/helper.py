"""bench/helper: whole-process timings of ``ccweb-helper`` against ``aws codecommit credential-helper``.

Git runs its credential helper for every fetch, pull and push, twice when it succeeds (``get``, then
``store``), so the helper's whole-process time is what a person waits for. Everything runs on 127.0.0.1
and stops by itself:

1. a loopback runner in this process serves the development OIDC issuer and the STS stand-in, and a small
   stand-in of GitHub's ``ACTIONS_ID_TOKEN_REQUEST_URL`` returns a token for the audience it is asked for;
2. ``ccweb serve --workers 1`` starts as a subprocess in its own process group (throwaway AWS keys,
   ``AWS_ENDPOINT_URL_STS`` at the stand-in, no proxies), with interactive login offered for the issuer so
   the cached-login variant is a real one;
3. the AWS CLI (awscli from PyPI) is installed once into a throwaway venv (``--awscli-venv``);
4. after ``--warmup`` untimed rounds (the service's key set and STS sessions are then cached), ``--rounds``
   rounds run every variant once, round-robin, each as a whole process timed with ``time.perf_counter``
   around ``subprocess.run``:

   - ``ccweb-helper get`` with the token in ``CCWEB_TOKEN``, from a cached interactive login, and as a
     GitHub Actions job (the helper reads the service's ``/.well-known/ccweb`` for the audience, then asks
     the token service);
   - ``ccweb-helper store`` and ``ccweb-helper erase``, with what git sends them;
   - ``aws codecommit credential-helper get`` with static keys and no network;
   - the POSIX sh helper's ``get`` (``ccweb-helper.sh`` exactly as the service serves it, run by ``--shell``,
     ``sh`` by default) with the token in ``CCWEB_TOKEN`` and as a GitHub Actions job: what an image without
     Python runs, curl included;
   - ``python -c pass`` with the interpreter that runs ccweb-helper, and, for information, the same
     interpreter setting up TLS as the helper does for an https service (``ccweb_helper.transport.tls_context()``).

Every ``get`` must answer a username and password (and ``store``/``erase`` nothing); a failed run stops the
bench. Goals: each ``ccweb-helper get`` median (the shell helper's too) at most 0.10 x the AWS CLI's, and
``store`` and ``erase`` within 15 ms of a bare interpreter start. Exit status 0 = pass, 1 = fail, 2 = could
not run. No token or password is ever printed or written to the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    HOST,
    CouldNotRun,
    LoopbackRunner,
    ccweb_command,
    free_port,
    log,
    policy,
    run_bench,
    service_environment,
    start_logged,
    stop_service,
    wait_until_up,
)

CODECOMMIT = "git-codecommit.us-east-1.amazonaws.com"
REPOSITORY = "svc-00"
CI_AUDIENCE = "ccweb"  # the policy's first audience: what the service's discovery names for CI tokens
LOGIN_CLIENT = "ccweb-login"  # the interactive login's client id, also an audience of the issuer
GOAL_RATIO = 0.10
GOAL_STORE_MS = 15.0
RUN_SECONDS = 60  # the longest one process may take
TOKEN_TTL = 6 * 3600  # far from expiry: no refresh, no re-login while the bench runs
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AWSCLI_VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ccweb-bench" / "awscli-venv"
INSTALLED_MARK = ".ccweb-bench-installed"


class Failed(Exception):
    """What is measured failed (exit 1)."""


# --- the variants ---------------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    command: list[str]
    stdin: bytes
    env: dict[str, str]
    expect: str  # "credential", "nothing" or "exit 0"
    ours: bool  # a failure is ccweb-helper's (exit 1), else the bench cannot run (exit 2)
    judged: bool = True


def get_input() -> bytes:
    return f"protocol=https\nhost={CODECOMMIT}\npath=v1/repos/{REPOSITORY}\n\n".encode()


def store_input() -> bytes:
    # What git sends a helper after a successful fetch; the password is a made-up one.
    return get_input()[:-1] + b"username=bench\npassword=not-a-credential\npassword_expiry_utc=4102444800\n\n"


def check(variant: Variant, result: subprocess.CompletedProcess[bytes], secrets_: list[str]) -> None:
    """Raise when the run did not do its job; nothing secret is shown."""
    problem = ""
    if result.returncode != 0:
        problem = f"exit status {result.returncode}"
    elif variant.expect == "credential":
        answer = dict(
            line.partition("=")[::2] for line in result.stdout.decode(errors="replace").splitlines() if "=" in line
        )
        if not (answer.get("username") and answer.get("password")):
            problem = "no username and password in the answer"
    elif variant.expect == "nothing" and result.stdout:
        problem = "it wrote to stdout"
    if problem:
        stderr = result.stderr.decode(errors="replace")
        for secret in secrets_:
            stderr = stderr.replace(secret, "<redacted>")
        message = f"{variant.name}: {problem}; stderr: {stderr.strip()[-1500:] or '(empty)'}"
        raise Failed(message) if variant.ours else CouldNotRun(message)


def run_once(variant: Variant) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    started = time.perf_counter()
    result = subprocess.run(
        variant.command,
        input=variant.stdin,
        capture_output=True,
        env=variant.env,
        timeout=RUN_SECONDS,
        check=False,
    )
    return time.perf_counter() - started, result


# --- the stand-in for GitHub's token service --------------------------------------------------------------


class GitHubTokenService:
    """``ACTIONS_ID_TOKEN_REQUEST_URL`` on 127.0.0.1: checks the request token, answers for ``CI_AUDIENCE``."""

    def __init__(self, token: str) -> None:
        self.request_token = secrets.token_urlsafe(24)
        self.served = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                authorized = self.headers.get("Authorization", "").lower() == "bearer " + outer.request_token.lower()
                if not authorized:
                    self._send(401, {"message": "bad request token"})
                elif query.get("audience") != [CI_AUDIENCE]:
                    self._send(400, {"message": "unexpected audience"})
                else:
                    outer.served += 1
                    self._send(200, {"count": 1, "value": token})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{HOST}:{self.server.server_address[1]}/_apis/distributedtask/token?api-version=2.0"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join(10)
        self.server.server_close()


# --- the AWS CLI ----------------------------------------------------------------------------------------


def awscli(venv: Path) -> Path:
    """``aws`` from a venv of its own, installed with pip the first time (a marker file says it finished)."""
    aws = venv / "bin" / "aws"
    if (venv / INSTALLED_MARK).exists() and aws.exists():
        return aws
    if venv.exists():
        shutil.rmtree(venv)  # an interrupted install
    log(f"installing awscli with pip into {venv} (once; see --awscli-venv)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "awscli"],
            check=True,
            timeout=900,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(venv, ignore_errors=True)
        raise CouldNotRun(f"cannot install awscli into {venv} ({exc})") from None
    (venv / INSTALLED_MARK).write_text("awscli\n")
    return aws


# --- the helper -----------------------------------------------------------------------------------------


def standalone_helper(workdir: Path) -> Path:
    """``ccweb-helper`` as people install it: this repository's ``helper/`` distribution (standard library only),
    a regular install alone in a venv of its own, built and installed with no network."""
    wheels, venv = workdir / "wheels", workdir / "helper-venv"
    log(f"installing this repository's helper/ into {venv}")
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(wheels),
                str(ROOT / "helper"),
            ],
            check=True,
            timeout=300,
        )
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-index",
                "--no-deps",
                *map(str, wheels.glob("ccweb_helper-*.whl")),
            ],
            check=True,
            timeout=300,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CouldNotRun(f"cannot install the helper into {venv} ({exc})") from None
    return venv / "bin" / "ccweb-helper"


def helper_command(chosen: Path | None) -> tuple[list[str], str]:
    """The installed ``ccweb-helper`` and the interpreter its script starts (from its ``#!`` line)."""
    script = Path(sys.executable).parent / "ccweb-helper"
    found = str(script) if script.exists() else shutil.which("ccweb-helper")
    if chosen is not None:
        found = str(chosen) if chosen.is_file() and os.access(chosen, os.X_OK) else None
        if found is None:
            raise CouldNotRun(f"--helper {chosen} is not an executable file")
    if found is None:
        raise CouldNotRun(f"ccweb-helper is not installed for {sys.executable}; run: pip install .")
    with open(found, "rb") as handle:
        first = handle.readline().decode(errors="replace").strip()
    interpreter = first[2:].strip() if first.startswith("#!") and " " not in first[2:].strip() else ""
    if not Path(interpreter).name.startswith(("python", "pypy")):
        interpreter = sys.executable  # not a Python script of its own: compare with this interpreter
    return [found], interpreter


def clean_environment(home: Path) -> dict[str, str]:
    """What every process gets: a throwaway HOME and cache, no proxies, no git, CI or AWS settings."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "NO_PROXY": "*",
        "no_proxy": "*",
    }


def write_login_cache(env: dict[str, str], issuer_url: str, token: str) -> Path:
    """The login cache as ``ccweb-helper login --url $CCWEB_URL`` leaves it: one entry for the service's login
    issuer, kept for that service."""
    from ccweb_helper.audience import service_key  # noqa: PLC0415
    from ccweb_helper.cache import Cache, cache_dir  # noqa: PLC0415
    from ccweb_helper.client import parse_service_url  # noqa: PLC0415
    from ccweb_helper.discovery import LoginIssuer  # noqa: PLC0415
    from ccweb_helper.login_tokens import CACHE_VERSION, entry_key, id_token_claims, new_entry  # noqa: PLC0415

    login = LoginIssuer("bench", issuer_url.rstrip("/"), LOGIN_CLIENT, ("openid",))
    service = service_key(parse_service_url(env["CCWEB_URL"], "CCWEB_URL"))
    entry = new_entry(login, token, id_token_claims(token), None, service)
    store = Cache(cache_dir(env))
    store.write({"version": CACHE_VERSION, "logins": {entry_key(login, service): entry}})
    return store.path


def shell_helper(workdir: Path, shell: str) -> list[str]:
    """The POSIX sh helper as ``GET /helper/ccweb-helper.sh`` serves it, saved in ``workdir``, run by ``shell``."""
    from ccweb.shell_dist import helper_script  # noqa: PLC0415

    words = shell.split()
    program = shutil.which(words[0]) if words else None
    if program is None:
        raise CouldNotRun(f"--shell {shell!r} is not a program on PATH")
    script = workdir / "ccweb-helper.sh"
    script.write_bytes(helper_script())
    script.chmod(0o755)
    return [program, *words[1:], str(script)]


# --- figures --------------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(samples) * 1000,
        "p90_ms": percentile(samples, 0.9) * 1000,
        "min_ms": min(samples) * 1000,
        "max_ms": max(samples) * 1000,
    }


def describe_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "helper"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" (helper/ modified)" if dirty else "")


# --- the run --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/helper", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds, every variant once each (default 30)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument(
        "--awscli-venv",
        type=Path,
        default=DEFAULT_AWSCLI_VENV,
        help=f"the venv awscli is installed into once and reused (default {DEFAULT_AWSCLI_VENV})",
    )
    parser.add_argument(
        "--helper",
        type=Path,
        help="the ccweb-helper to time (default: this repository's helper/, installed alone in a fresh venv)",
    )
    parser.add_argument(
        "--installed",
        action="store_true",
        help="time the ccweb-helper installed next to this Python instead (an editable install starts slower)",
    )
    parser.add_argument("--shell", default="sh", help="what runs the POSIX sh helper (default sh; e.g. 'busybox sh')")
    parser.add_argument("--port", type=int, default=0, help="service port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (policy, service log)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 10_000 or not 0 <= args.warmup <= 100:
        parser.error("--rounds must be 1 to 10000 and --warmup 0 to 100")
    return args


def bench_policy(issuer_url: str) -> dict[str, Any]:
    """The shared policy, with interactive login offered (so the service's discovery names a login issuer) and
    no rate limit (this measures the helper, not the limiter)."""
    document = policy(issuer_url)
    issuer = document["issuers"][0]
    issuer["audiences"] = [CI_AUDIENCE, LOGIN_CLIENT]
    issuer["login"] = {"client_id": LOGIN_CLIENT}
    document["rate_limit"] = {"requests_per_minute": 0}
    return document


def identity(name: str) -> dict[str, Any]:
    return {"sub": f"bench|{name}", "email": f"{name}@example.com", "groups": ["engineering"]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("bench/helper", lambda workdir: run(args, workdir), keep=args.keep)


def run(args: argparse.Namespace, workdir: Path) -> int:
    runner: LoopbackRunner | None = None
    github: GitHubTokenService | None = None
    service: subprocess.Popen[bytes] | None = None
    try:
        chosen = args.helper
        if chosen is None and not args.installed:
            chosen = standalone_helper(workdir)
        helper, interpreter = helper_command(chosen)
        shell = shell_helper(workdir, args.shell)
        aws = awscli(args.awscli_venv)
        runner = LoopbackRunner()
        runner.start()
        log(f"issuer {runner.issuer_url}, STS stand-in {runner.sts_url}")
        env_token = runner.issuer.mint(identity("helper-env"), ttl=TOKEN_TTL)
        login_token = runner.issuer.mint(identity("helper-login"), ttl=TOKEN_TTL, audience=LOGIN_CLIENT)
        ci_token = runner.issuer.mint(identity("helper-ci"), ttl=TOKEN_TTL, audience=CI_AUDIENCE)
        github = GitHubTokenService(ci_token)
        github.start()
        config = workdir / "policy.yaml"
        config.write_text(json.dumps(bench_policy(runner.issuer_url), indent=2))  # JSON is YAML

        port = args.port or free_port()
        url = f"http://{HOST}:{port}"
        service_log = workdir / "service.log"
        command = [*ccweb_command(), "serve", "--config", str(config), "--host", HOST, "--port", str(port)]
        command += ["--workers", "1"]
        log("starting: " + " ".join(command))
        service = start_logged(command, service_log, service_environment(runner.sts_url))
        wait_until_up(service, url, service_log, count=0)  # --workers 1: uvicorn serves in the process itself
        log(f"ccweb serve is up: pid {service.pid}")

        home = workdir / "home"
        home.mkdir(mode=0o700)
        base = clean_environment(home)
        ours = {**base, "CCWEB_URL": url}
        login_env = {**ours}
        cache_file = write_login_cache(login_env, runner.issuer_url, login_token)
        log(f"login cache: {cache_file}")
        github_env = {
            **ours,
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "ACTIONS_ID_TOKEN_REQUEST_URL": github.url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": github.request_token,
        }
        aws_env = {
            **base,
            "AWS_ACCESS_KEY_ID": "AKIABENCHEXAMPLE0000",
            "AWS_SECRET_ACCESS_KEY": "bench-not-a-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        variants = [
            Variant("ccweb-helper get (CCWEB_TOKEN)", [*helper, "get"], get_input(),
                    {**ours, "CCWEB_TOKEN": env_token}, "credential", ours=True),
            Variant("ccweb-helper get (cached login)", [*helper, "get"], get_input(), login_env, "credential",
                    ours=True),
            Variant("ccweb-helper get (GitHub Actions)", [*helper, "get"], get_input(), github_env, "credential",
                    ours=True),
            Variant("ccweb-helper store", [*helper, "store"], store_input(), {**ours, "CCWEB_TOKEN": env_token},
                    "nothing", ours=True),
            Variant("ccweb-helper erase", [*helper, "erase"], store_input(), {**ours, "CCWEB_TOKEN": env_token},
                    "nothing", ours=True),
            Variant("aws codecommit credential-helper get", [str(aws), "codecommit", "credential-helper", "get"],
                    get_input(), aws_env, "credential", ours=False),
            Variant("python -c pass", [interpreter, "-c", "pass"], b"", base, "exit 0", ours=False),
            Variant("python: TLS set-up of an https service", [interpreter, "-c",
                    "from ccweb_helper.transport import tls_context; tls_context()"], b"", base, "exit 0", ours=False,
                    judged=False),
            Variant("ccweb-helper.sh get (CCWEB_TOKEN)", [*shell, "get"], get_input(),
                    {**ours, "CCWEB_TOKEN": env_token}, "credential", ours=True),
            Variant("ccweb-helper.sh get (GitHub Actions)", [*shell, "get"], get_input(), github_env, "credential",
                    ours=True),
        ]  # fmt: skip
        hidden = [env_token, login_token, ci_token, github.request_token]

        log(f"{args.warmup} untimed round(s), then {args.rounds} timed rounds of {len(variants)} processes")
        for _ in range(args.warmup):
            for variant in variants:
                check(variant, run_once(variant)[1], hidden)
        samples: dict[str, list[float]] = {v.name: [] for v in variants}
        started = time.monotonic()
        for _ in range(args.rounds):
            for variant in variants:
                elapsed, result = run_once(variant)
                check(variant, result, hidden)
                samples[variant.name].append(elapsed)
        log(f"timed rounds took {time.monotonic() - started:.1f} s; GitHub stand-in served {github.served} tokens")

        figures = {name: summary(values) for name, values in samples.items()}
        aws_median = figures[variants[5].name]["median_ms"]
        bare_median = figures[variants[6].name]["median_ms"]
        goals: dict[str, dict[str, Any]] = {}
        for variant in [*variants[:3], *variants[8:]]:  # every get: the Python helper's and the shell helper's
            value = figures[variant.name]["median_ms"]
            goals[f"{variant.name} <= {GOAL_RATIO:.2f} x aws get"] = {
                "value_ms": value, "limit_ms": GOAL_RATIO * aws_median, "pass": value <= GOAL_RATIO * aws_median,
            }  # fmt: skip
        for variant in variants[3:5]:
            value = figures[variant.name]["median_ms"]
            goals[f"{variant.name} <= python -c pass + {GOAL_STORE_MS:g} ms"] = {
                "value_ms": value, "limit_ms": bare_median + GOAL_STORE_MS,
                "pass": value <= bare_median + GOAL_STORE_MS,
            }  # fmt: skip
        passed = all(g["pass"] for g in goals.values())

        aws_version = subprocess.run([str(aws), "--version"], capture_output=True, text=True, env=aws_env, check=False)
        context = {
            "commit": describe_commit(),
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "helper": helper[0],
            "helper_interpreter": interpreter,
            "shell_helper": " ".join(shell),
            "awscli": (aws_version.stdout or aws_version.stderr).strip(),
            "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()),
            "rounds": args.rounds,
            "warmup": args.warmup,
            "service": f"ccweb serve --workers 1 on {HOST} (http)",
        }
        print()
        print(
            f"commit {context['commit']}; {context['python']}; {context['awscli']}; {context['cpus']} CPUs, "
            f"load {context['load_average'][0]:.2f}; {args.rounds} rounds"
        )
        print()
        print(f"| {'process':<46} | {'median':>9} | {'p90':>9} | {'min':>9} | {'/ aws get':>9} | {'- bare':>9} |")
        print(f"| {'-' * 46} | {'-' * 8}: | {'-' * 8}: | {'-' * 8}: | {'-' * 8}: | {'-' * 8}: |")
        for variant in variants:
            f = figures[variant.name]
            name = variant.name + ("" if variant.judged else " (info)")
            print(
                f"| {name:<46} | {f['median_ms']:6.1f} ms | {f['p90_ms']:6.1f} ms | {f['min_ms']:6.1f} ms "
                f"| {f['median_ms'] / aws_median:9.3f} | {f['median_ms'] - bare_median:+6.1f} ms |"
            )
        print()
        for name, goal in goals.items():
            verdict = "pass" if goal["pass"] else "FAIL"
            print(f"{verdict}  {name}: {goal['value_ms']:.1f} ms (limit {goal['limit_ms']:.1f} ms)")
        print("PASS" if passed else "FAIL")
        if args.json:
            result = {
                "context": context,
                "figures": figures,
                "samples_ms": {k: [round(s * 1000, 3) for s in v] for k, v in samples.items()},
                "goals": goals,
                "pass": passed,
            }
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0 if passed else 1
    except Failed as exc:
        print(f"bench/helper: FAIL: {exc}", file=sys.stderr)
        return 1
    finally:
        if service is not None:
            stop_service(service)
        if github is not None:
            github.stop()
        if runner is not None:
            runner.stop()


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
