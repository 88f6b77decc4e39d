"""What the benchmarks share: the loopback issuer and STS stand-in, the workload, the service under test, wrk.

Everything here binds 127.0.0.1 only and everything it starts can be stopped by the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LUA = HERE / "soak.lua"  # wrk script: rotating requests, optional pacing
HOST = "127.0.0.1"
ACCOUNT = "111122223333"
REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
WRITE_REPOS = [f"svc-{n:02d}" for n in range(12)] + [f"app-{n:02d}" for n in range(8)]
READ_REPOS = [f"app-{n:02d}" for n in range(8)]
MAX_MINUTES = 120


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the loopback runner: development issuer and STS stand-in --------------------------------------


class LoopbackRunner:
    """The dev issuer and the STS stand-in, each a uvicorn server on 127.0.0.1, in a background thread."""

    def __init__(self) -> None:
        import uvicorn  # noqa: PLC0415

        from ccweb.sandbox.issuer import DevIssuer  # noqa: PLC0415
        from ccweb.sandbox.sts import DevSTSStore, create_sts_app  # noqa: PLC0415

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:  # the driver owns the signals
                yield

        self._sockets = {name: _listen() for name in ("issuer", "sts")}
        self.issuer_url = f"http://{HOST}:{self._sockets['issuer'].getsockname()[1]}"
        self.sts_url = f"http://{HOST}:{self._sockets['sts'].getsockname()[1]}"
        self.issuer = DevIssuer(self.issuer_url)
        self.sts = DevSTSStore()
        apps = {"issuer": self.issuer.app(), "sts": create_sts_app(self.sts)}
        self._servers = [
            (Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")), self._sockets[name])
            for name, app in apps.items()
        ]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in self._servers))

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not all(server.started for server, _ in self._servers):
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the loopback issuer and STS stand-in did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        for server, _ in self._servers:
            server.should_exit = True
        self._thread.join(15)
        for sock in self._sockets.values():
            sock.close()


def _listen() -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP (else Nagle holds answers ~40 ms)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --- the workload: policy, identities, tokens, requests -------------------------------------------


def policy(issuer_url: str) -> dict[str, Any]:
    """Two rules, as in a real deployment: engineers write everywhere, contractors read app-* only."""
    return {
        "issuers": [{"name": "bench", "issuer": issuer_url, "audiences": ["ccweb"]}],
        "rules": [
            {
                "name": "engineering",
                "issuer": "bench",
                "claims": {"groups": "engineering"},
                "role_arn": f"arn:aws:iam::{ACCOUNT}:role/ccweb-bench-write",
                "repositories": ["*"],
                "access": "write",
            },
            {
                "name": "contractors",
                "issuer": "bench",
                "claims": {"groups": "contractors", "email": {"pattern": r".+@example\.com"}},
                "role_arn": f"arn:aws:iam::{ACCOUNT}:role/ccweb-bench-read",
                "repositories": ["app-*"],
                "access": "read",
            },
        ],
        "aws": {"session_duration": 3600},
    }


def write_requests(path: Path, issuer: Any, identities: int, ttl: int, seed: int = 4) -> int:
    """One line per request, ``<token>\\t<body>``; every identity appears, each with several repositories."""
    rng = random.Random(seed)  # noqa: S311 (a repeatable workload, not a secret)
    tokens = []
    for n in range(identities):
        group = "engineering" if n % 2 == 0 else "contractors"
        claims = {"sub": f"bench|user{n:05d}", "email": f"user{n:05d}@example.com", "groups": [group]}
        tokens.append((group, issuer.mint(claims, ttl=ttl)))
    lines = max(4096, identities * 4)
    with path.open("w", encoding="ascii") as out:
        for k in range(lines):
            group, token = tokens[k % identities]
            repo = rng.choice(WRITE_REPOS if group == "engineering" else READ_REPOS)
            region = rng.choice(REGIONS)
            path_value = f"{'/' if rng.random() < 0.5 else ''}v1/repos/{repo}"
            body = json.dumps(
                {"protocol": "https", "host": f"git-codecommit.{region}.amazonaws.com", "path": path_value},
                separators=(",", ":"),
            )
            out.write(f"{token}\t{body}\n")
    return lines


# --- the service under test -------------------------------------------------------------------------


def ccweb_command() -> list[str]:
    script = Path(sys.executable).parent / "ccweb"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ccweb"]


def service_environment(sts_url: str) -> dict[str, str]:
    """This environment minus proxies and AWS settings, plus throwaway keys and the loopback STS."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("AWS_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "AKIABENCHEXAMPLE0000",
            "AWS_SECRET_ACCESS_KEY": "bench-not-a-secret",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_STS": sts_url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def start_logged(command: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``command`` in a process group of its own (``stop_service`` stops it whole), stdin closed, its output
    in ``log_path``."""
    with log_path.open("wb") as handle:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=handle, stderr=handle, env=env, start_new_session=True
        )


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return sorted(found)


def workers(master: int) -> list[int]:
    """uvicorn's worker processes: children of the master, not multiprocessing's resource tracker."""
    result = []
    for pid in children(master):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"resource_tracker" not in cmdline:
            result.append(pid)
    return result


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile and VmHWM of ``pid`` in KiB, from /proc/<pid>/status (OSError once it is gone)."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def rss_kib(pid: int) -> int | None:
    try:
        return memory_kib(pid).get("VmRSS")
    except OSError:
        return None


def wait_until_up(service: subprocess.Popen[bytes], url: str, service_log: Path, count: int = 2) -> None:
    up_by = time.monotonic() + 60
    while not (http_ok(url + "/healthz") and len(workers(service.pid)) == count):
        if service.poll() is not None or time.monotonic() > up_by:
            print(service_log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise RuntimeError("ccweb serve did not start")
        time.sleep(0.2)


def http_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class Sampler:
    """Samples each worker's VmRSS every ``interval`` seconds into a CSV and memory."""

    master: int
    interval: float
    csv: Path
    phase: str = "start"
    rows: list[tuple[float, str, int, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    started: float = field(default_factory=time.monotonic)

    def sample(self) -> dict[int, int]:
        now = time.monotonic() - self.started
        taken = {}
        for pid in workers(self.master):
            value = rss_kib(pid)
            if value is not None:
                taken[pid] = value
        with self._lock:
            for pid, value in taken.items():
                self.rows.append((now, self.phase, pid, value))
        return taken

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 5)
        with self._lock, self.csv.open("w") as out:
            out.write("seconds,phase,pid,rss_kib\n")
            for row in self.rows:
                out.write(f"{row[0]:.1f},{row[1]},{row[2]},{row[3]}\n")


# --- wrk ------------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    target_rate: float  # 0 = full speed
    requests: int
    seconds: float
    errors: dict[str, int]
    latency_us: dict[str, float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def line(self) -> str:
        lat = self.latency_us
        errors = ", ".join(f"{k} {v}" for k, v in self.errors.items() if v) or "none"
        target = f" (target {self.target_rate:.0f})" if self.target_rate else " (full speed)"
        return (
            f"{self.name:<12} {self.requests:>8} req in {self.seconds:6.1f} s = {self.rate:7.1f} req/s{target}; "
            f"latency p50 {lat['p50'] / 1000:.1f} ms, p99 {lat['p99'] / 1000:.1f} ms, "
            f"max {lat['max'] / 1000:.1f} ms; errors: {errors}"
        )


class Wrk:
    def __init__(self, url: str, requests_file: Path, threads: int, timeout: int, deadline: float) -> None:
        self.url = url
        self.requests_file = requests_file
        self.threads = threads
        self.timeout = timeout
        self.deadline = deadline
        self.process: subprocess.Popen[str] | None = None

    def run(self, name: str, seconds: int, connections: int, rate: float = 0) -> Run:
        if time.monotonic() + seconds > self.deadline:
            raise TimeoutError(f"{name}: the run would pass the time bound; stopping")
        command = [
            "wrk",
            "-t",
            str(self.threads),
            "-c",
            str(max(connections, self.threads)),
            "-d",
            f"{seconds}s",
            "--timeout",
            f"{self.timeout}s",
            "-s",
            str(LUA),
            self.url,
            "--",
            str(self.requests_file),
            f"{rate:.3f}",
            str(self.threads),
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        try:
            output, _ = self.process.communicate(timeout=seconds + self.timeout + 30)
        finally:
            self.kill()
        for text in output.splitlines():
            if text.startswith("SOAK_RESULT "):
                data = json.loads(text.removeprefix("SOAK_RESULT "))
                return Run(name, rate, data["requests"], data["duration_us"] / 1e6, data["errors"], data["latency_us"])
        raise RuntimeError(f"wrk gave no result for {name}:\n{output}")

    def kill(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


# --- the run --------------------------------------------------------------------------------------


def stop_service(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the service's own process group (the master and its workers), then SIGKILL."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def server_outcomes(log_path: Path) -> tuple[dict[str, int], list[str]]:
    """Audit outcomes counted from the service's JSON log, and the first error lines."""
    outcomes: dict[str, int] = {}
    problems: list[str] = []
    with log_path.open(encoding="utf-8", errors="replace") as handle:
        for text in handle:
            try:
                entry = json.loads(text)
            except ValueError:
                if text.strip() and len(problems) < 5:
                    problems.append(text.strip()[:300])
                continue
            if entry.get("event") == "credential_decision":
                outcome = str(entry.get("outcome"))
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            elif entry.get("level") in ("error", "critical") and len(problems) < 5:
                problems.append(text.strip()[:300])
    return outcomes, problems


# --- a run: checks, a work directory, signals, exit status ----------------------------------------------


class CouldNotRun(Exception):
    """The benchmark could not run (exit status 2); the message says why."""


def run_bench(
    name: str,
    body: Callable[[Path], int],
    *,
    keep: bool = False,
    bound: float | None = None,
    needs_wrk: bool = False,
) -> int:
    """Run ``body(workdir)`` and return its exit status, or 2 when it could not run.

    Before: wrk (``needs_wrk``) and ccweb must be installed. Around: a fresh work directory, removed after
    unless ``keep``; SIGINT, SIGTERM and, after ``bound`` seconds, SIGALRM raise KeyboardInterrupt, so that
    every ``finally`` in ``body`` stops what it started.
    """
    if needs_wrk and shutil.which("wrk") is None:
        print(
            f"{name} needs wrk: sudo apt-get install -y wrk (Debian/Ubuntu), brew install wrk (macOS).", file=sys.stderr
        )
        return 2
    try:
        import ccweb  # noqa: F401, PLC0415
    except ImportError:
        print(f"{name}: ccweb is not installed for {sys.executable}; run: pip install .", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix=f"ccweb-{name.rsplit('/', 1)[-1]}-"))
    signals = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGALRM,) if bound else ())
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def interrupted(signum: int, _: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in signals:
        signal.signal(sig, interrupted)
    if bound:
        signal.alarm(math.ceil(bound))  # a bound on everything: SIGALRM stops it like Ctrl-C
    try:
        return body(workdir)
    except KeyboardInterrupt as exc:
        print(f"{name}: interrupted ({exc}); stopping everything it started.", file=sys.stderr)
        return 2
    except (CouldNotRun, RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    finally:
        if bound:
            signal.alarm(0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if keep:
            print(f"{name}: kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
