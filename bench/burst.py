"""bench/burst: a cold storm of concurrent requests against ``ccweb serve``; STS calls and latency.

Everything runs on 127.0.0.1 and stops by itself:

1. a loopback runner in this process serves the development OIDC issuer and the STS stand-in, which
   answers each ``AssumeRole`` after ``--sts-latency`` seconds (default 0.2);
2. ``ccweb serve --workers N`` starts with cold caches (no key set fetched, no session cached);
3. ``--requests`` connections (default 1000) are opened first, then every request is sent at once:
   ``--identities`` identities (default 100), half under each policy rule, the same number of requests
   each, every one to a repository its rule grants;
4. a second burst, the same, finds the caches warm.

Reported per burst: the ``AssumeRole`` calls the stand-in received (and how many it answered at once),
the distinct (identity, rule) pairs, the statuses, and p50/p99/max latency from the moment a request is
sent to the end of its response. Each worker process has its own session cache (the service keeps no
shared state), so with N workers a pair costs one call in each worker that received it: the stand-in
records the address of every call, and the bench maps it to the worker that owns that connection.

Pass, per run: every status 200; no worker called STS twice for a pair; with one worker, STS calls equal
the pairs; with N, at most pairs x N; the warm burst adds no call (with N, none for a pair a worker
already held); cold and warm p99 at most ``--max-p99`` (default 1 s). Exit status 0 = pass, 1 = fail, 2 = could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    HOST,
    READ_REPOS,
    WRITE_REPOS,
    LoopbackRunner,
    ccweb_command,
    free_port,
    http_ok,
    log,
    policy,
    run_bench,
    server_outcomes,
    service_environment,
    start_logged,
    stop_service,
    workers,
)

TIME_BOUND_SECONDS = 600


# --- what bench/memory shares (candidates for common.py) -------------------------------------------


def raise_open_files(needed: int) -> None:
    """Raise this process's (and so the service's) soft limit on open files to ``needed``, if allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise RuntimeError(f"needs {needed} open files, the limit is {soft} (ulimit -n)")


def start_service(
    runner: LoopbackRunner, workdir: Path, worker_count: int, port: int = 0
) -> tuple[subprocess.Popen[bytes], str, Path, list[str]]:
    """``ccweb serve`` on 127.0.0.1 with the bench policy, in its own process group; waits for its workers."""
    config = workdir / "policy.yaml"
    config.write_text(json.dumps(policy(runner.issuer_url), indent=2))  # JSON is YAML
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    service_log = workdir / f"service-{worker_count}w.log"
    command = [*ccweb_command(), "serve", "--config", str(config), "--host", HOST, "--port", str(port)]
    command += ["--workers", str(worker_count)]
    service = start_logged(command, service_log, service_environment(runner.sts_url))
    try:
        _wait_up(service, url, service_log, worker_count)
    except BaseException:
        stop_service(service)
        raise
    return service, url, service_log, command


def _wait_up(service: subprocess.Popen[bytes], url: str, service_log: Path, worker_count: int) -> None:
    up_by = time.monotonic() + 60
    while not (http_ok(url + "/healthz") and len(service_pids(service)) == worker_count):
        if service.poll() is not None or time.monotonic() > up_by:
            print(service_log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise RuntimeError("ccweb serve did not start")
        time.sleep(0.2)


def service_pids(service: subprocess.Popen[bytes]) -> list[int]:
    """The processes that serve requests: the uvicorn workers, or (``--workers 1``, which serves in the
    ``ccweb serve`` process itself) that process."""
    return workers(service.pid) or [service.pid]


class ConnectionOwners:
    """Which process owns each TCP connection to ``port`` on loopback, by the connection's local port.

    Polls ``/proc/net/tcp`` and the processes' descriptors every ``interval`` seconds in a thread, and
    remembers what it saw, so connections that close later are still attributed."""

    def __init__(self, pids: list[int], port: int, interval: float = 0.02) -> None:
        self.pids = pids
        self.port = port
        self.interval = interval
        self.owners: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def poll(self) -> None:
        inodes: dict[str, int] = {}
        for pid in self.pids:
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        target = os.readlink(f"/proc/{pid}/fd/{fd}")
                        if target.startswith("socket:["):
                            inodes[target[8:-1]] = pid
        with contextlib.suppress(OSError), open("/proc/net/tcp", encoding="ascii") as table:
            next(table)
            for line in table:
                cols = line.split()
                local_port = int(cols[1].rsplit(":", 1)[1], 16)
                remote_port = int(cols[2].rsplit(":", 1)[1], 16)
                if remote_port == self.port and cols[9] in inodes:
                    self.owners[local_port] = inodes[cols[9]]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def __enter__(self) -> ConnectionOwners:
        self.poll()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.poll()

    def owner(self, caller: str) -> int | None:
        try:
            return self.owners.get(int(caller.rsplit(":", 1)[1]))
        except (IndexError, ValueError):
            return None


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * share // 100))
    return ordered[int(rank) - 1]


# --- the burst ------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    seconds: float
    rule: str | None = None
    error: str | None = None


@dataclass
class Burst:
    name: str
    answers: list[Answer]
    connect_seconds: float
    send_seconds: float
    sts_calls: int
    sts_max_in_flight: int
    sts_by_worker: dict[int, int]
    unattributed: int
    repeated_in_a_worker: int
    pairs: int
    pairs_in_both: int = 0
    worker_pairs: int = 0
    assumed: frozenset[tuple[int, str, str]] = frozenset()
    """(worker, source identity, role) of every call."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def statuses(self) -> dict[str, int]:
        return dict(sorted(Counter(str(a.status) if a.status else (a.error or "error") for a in self.answers).items()))

    def latency_ms(self) -> dict[str, float]:
        seconds = [a.seconds for a in self.answers if a.status]
        if not seconds:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        return {
            "p50": statistics.median(seconds) * 1000,
            "p99": percentile(seconds, 99) * 1000,
            "max": max(seconds) * 1000,
        }

    def line(self) -> str:
        lat = self.latency_ms()
        statuses = ", ".join(f"{k} x{v}" for k, v in self.statuses.items())
        workers_text = ", ".join(f"{pid}: {n}" for pid, n in sorted(self.sts_by_worker.items()))
        return (
            f"{self.name}: {len(self.answers)} requests (connected in {self.connect_seconds:.2f} s, sent in "
            f"{self.send_seconds * 1000:.0f} ms); statuses {statuses}; latency p50 {lat['p50']:.0f} ms, "
            f"p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms; STS AssumeRole calls {self.sts_calls} "
            f"(by worker {{{workers_text}}}, at most {self.sts_max_in_flight} at once) for {self.pairs} "
            "distinct (identity, rule) pairs"
        )


def request_bytes(token: str, repo: str, region: str, port: int) -> bytes:
    body = json.dumps(
        {"protocol": "https", "host": f"git-codecommit.{region}.amazonaws.com", "path": f"v1/repos/{repo}"},
        separators=(",", ":"),
    ).encode()
    head = (
        f"POST /v1/credentials HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _read_answer(reader: asyncio.StreamReader, started: float, timeout: float) -> Answer:
    try:
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length)
            elapsed = time.perf_counter() - started
    except TimeoutError:
        return Answer(0, time.perf_counter() - started, error="timeout")
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
        return Answer(0, time.perf_counter() - started, error=type(exc).__name__)
    rule = None
    with contextlib.suppress(ValueError, AttributeError):
        rule = json.loads(body).get("rule")
    return Answer(status, elapsed, rule=rule)


async def fire(port: int, requests: list[bytes], timeout: float) -> tuple[list[Answer], float, float]:
    """Open one connection per request, then send every request at once; the answers, in order, and the
    seconds it took to connect all and to send all."""
    started = time.perf_counter()
    connections = await asyncio.gather(*(asyncio.open_connection(HOST, port) for _ in requests))
    connected = time.perf_counter() - started
    try:
        sent_at: list[float] = []
        for (_, writer), data in zip(connections, requests, strict=True):
            sent_at.append(time.perf_counter())
            writer.write(data)
        sending = time.perf_counter() - sent_at[0]
        answers = await asyncio.gather(
            *(_read_answer(reader, at, timeout) for (reader, _), at in zip(connections, sent_at, strict=True))
        )
    finally:
        for _, writer in connections:
            writer.close()
    return list(answers), connected, sending


@dataclass(frozen=True)
class Identity:
    name: str
    group: str
    token: str


def mint_identities(runner: LoopbackRunner, count: int, ttl: int) -> list[Identity]:
    identities = []
    for n in range(count):
        group = "engineering" if n % 2 == 0 else "contractors"
        claims = {"sub": f"bench|burst{n:05d}", "email": f"burst{n:05d}@example.com", "groups": [group]}
        identities.append(Identity(claims["sub"], group, runner.issuer.mint(claims, ttl=ttl)))
    return identities


def workload(identities: list[Identity], requests: int, port: int) -> tuple[list[bytes], list[Identity]]:
    """``requests`` requests, the identities in turn, each to a repository its rule grants."""
    data, whose = [], []
    for k in range(requests):
        who = identities[k % len(identities)]
        repos = WRITE_REPOS if who.group == "engineering" else READ_REPOS
        repo = repos[(k // len(identities)) % len(repos)]
        region = ("us-east-1", "us-west-2", "eu-west-1")[k % 3]
        data.append(request_bytes(who.token, repo, region, port))
        whose.append(who)
    return data, whose


def run_burst(
    name: str,
    runner: LoopbackRunner,
    *,
    pids: list[int],
    port: int,
    data: list[bytes],
    whose: list[Identity],
    timeout: float,
) -> Burst:
    calls_before = len(runner.sts.calls)
    runner.sts.max_in_flight = 0
    sts_port = int(runner.sts_url.rsplit(":", 1)[1])
    with ConnectionOwners(pids, sts_port) as owners:
        answers, connected, sending = asyncio.run(fire(port, data, timeout))
    calls = runner.sts.calls[calls_before:]
    pairs = {(who.name, answer.rule) for who, answer in zip(whose, answers, strict=True) if answer.status == 200}
    by_worker: Counter[int] = Counter()
    per_worker_pairs: Counter[tuple[int, str, str]] = Counter()
    unattributed = 0
    for call in calls:
        pid = owners.owner(call.caller)
        if pid is None:
            unattributed += 1
            continue
        by_worker[pid] += 1
        per_worker_pairs[(pid, call.source_identity, call.role_arn)] += 1
    repeated = sum(n - 1 for n in per_worker_pairs.values())
    assumed_by: dict[tuple[str, str], set[int]] = {}
    for pid, identity, role in per_worker_pairs:
        assumed_by.setdefault((identity, role), set()).add(pid)
    return Burst(
        name,
        answers,
        connected,
        sending,
        len(calls),
        runner.sts.max_in_flight,
        dict(by_worker),
        unattributed,
        repeated,
        len(pairs),
        pairs_in_both=sum(1 for owners_ in assumed_by.values() if len(owners_) > 1),
        worker_pairs=len(per_worker_pairs),
        assumed=frozenset(per_worker_pairs),
    )


def run_one(args: argparse.Namespace, runner: LoopbackRunner, workdir: Path, worker_count: int) -> dict[str, Any]:
    identities = mint_identities(runner, args.identities, ttl=3600)
    service, url, service_log, command = start_service(runner, workdir, worker_count, args.port)
    try:
        port = int(url.rsplit(":", 1)[1])
        pids = service_pids(service)
        log(f"ccweb serve --workers {worker_count} is up (pid {service.pid}, serving {pids}); caches cold")
        data, whose = workload(identities, args.requests, port)
        cold = run_burst("cold burst", runner, pids=pids, port=port, data=data, whose=whose, timeout=args.timeout)
        log(cold.line())
        time.sleep(0.5)
        warm = run_burst("warm burst", runner, pids=pids, port=port, data=data, whose=whose, timeout=args.timeout)
        log(warm.line())
        same_workers = service_pids(service) == pids
    finally:
        stop_service(service)
    outcomes, problems = server_outcomes(service_log)
    max_calls = cold.pairs * worker_count
    max_p99 = args.max_p99 * 1000
    checks = {
        "every status 200 (cold and warm)": set(cold.statuses) == {"200"} and set(warm.statuses) == {"200"},
        "every STS call attributed to a worker": cold.unattributed == 0 and warm.unattributed == 0,
        "no worker called STS twice for one (identity, rule) pair": cold.repeated_in_a_worker == 0,
        (
            f"STS calls = distinct (identity, rule) pairs ({cold.pairs})"
            if worker_count == 1
            else f"STS calls <= pairs x workers ({cold.pairs} x {worker_count} = {max_calls})"
        ): (cold.sts_calls == cold.pairs if worker_count == 1 else cold.sts_calls <= max_calls),
        # With several workers, a pair the cold burst sent to one worker only may reach another one now: that
        # worker's first call for it. A call again for a pair a worker already holds is the failure.
        (
            "the warm burst made no STS call"
            if worker_count == 1
            else "the warm burst made no STS call for a pair a worker already held"
        ): (
            warm.sts_calls == 0
            if worker_count == 1
            else not warm.assumed & cold.assumed
            and warm.repeated_in_a_worker == 0
            and cold.sts_calls + warm.sts_calls <= max_calls
        ),
        f"cold p99 <= {max_p99:.0f} ms": cold.latency_ms()["p99"] <= max_p99,
        f"warm p99 <= {max_p99:.0f} ms": warm.latency_ms()["p99"] <= max_p99,
        "no error lines in the service log": not problems,
        "the same workers throughout": same_workers,
    }
    print()
    print(f"--workers {worker_count}: {cold.line()}")
    print(f"--workers {worker_count}: {warm.line()}")
    if worker_count > 1:
        print(
            f"  each of the {worker_count} worker processes caches sessions in its own memory (the service keeps "
            "no shared state), so a pair costs one STS call in every worker that received a request for it: "
            f"{cold.pairs_in_both} of {cold.pairs} pairs reached more than one worker; "
            f"(worker, pair) combinations = {cold.worker_pairs}, each one call"
        )
    print(f"  service audit outcomes {outcomes}; error lines {len(problems)}")
    for line in problems:
        print(f"    {line}")
    for name, ok in checks.items():
        print(f"  {'pass' if ok else 'FAIL'}  {name}")

    def summary(burst: Burst) -> dict[str, Any]:
        return {
            "requests": len(burst.answers),
            "statuses": burst.statuses,
            "latency_ms": burst.latency_ms(),
            "connect_seconds": burst.connect_seconds,
            "send_seconds": burst.send_seconds,
            "sts_calls": burst.sts_calls,
            "sts_calls_by_worker": {str(k): v for k, v in burst.sts_by_worker.items()},
            "sts_max_in_flight": burst.sts_max_in_flight,
            "sts_calls_unattributed": burst.unattributed,
            "sts_calls_repeated_in_a_worker": burst.repeated_in_a_worker,
            "pairs": burst.pairs,
            "pairs_in_more_than_one_worker": burst.pairs_in_both,
            "worker_pair_combinations": burst.worker_pairs,
        }

    return {
        "workers": worker_count,
        "command": " ".join(command),
        "cold": summary(cold),
        "warm": summary(warm),
        "audit_outcomes": outcomes,
        "error_lines": problems,
        "checks": checks,
        "pass": all(checks.values()),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/burst", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workers", choices=("1", "2", "both"), default="both", help="ccweb serve --workers: 1, 2 or both (default)"
    )
    parser.add_argument("--requests", type=int, default=1000, help="requests in one burst (default 1000)")
    parser.add_argument("--identities", type=int, default=100, help="distinct identities (default 100)")
    parser.add_argument("--sts-latency", type=float, default=0.2, help="STS stand-in's answer time, s (0.2)")
    parser.add_argument("--max-p99", type=float, default=1.0, help="the p99 goal in seconds (default 1)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds (default 30)")
    parser.add_argument("--port", type=int, default=0, help="service port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (policy, service logs)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.identities <= args.requests <= 10_000:
        parser.error("need 1 <= --identities <= --requests <= 10000")
    if args.sts_latency < 0 or args.timeout <= 0 or args.max_p99 <= 0:
        parser.error("--sts-latency must be at least 0, --timeout and --max-p99 above 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("bench/burst", lambda workdir: run(args, workdir), keep=args.keep, bound=TIME_BOUND_SECONDS)


def run(args: argparse.Namespace, workdir: Path) -> int:
    runner: LoopbackRunner | None = None
    runs: list[dict[str, Any]] = []
    try:
        raise_open_files(2 * args.requests + 512)
        runner = LoopbackRunner()
        runner.sts.latency = args.sts_latency
        runner.start()
        log(f"issuer {runner.issuer_url}, STS stand-in {runner.sts_url} answering in {args.sts_latency * 1000:.0f} ms")
        counts = [1, 2] if args.workers == "both" else [int(args.workers)]
        for worker_count in counts:
            runs.append(run_one(args, runner, workdir, worker_count))
        result = {
            "requests": args.requests,
            "identities": args.identities,
            "sts_latency_s": args.sts_latency,
            "runs": runs,
            "pass": all(run["pass"] for run in runs),
        }
        print()
        print("PASS" if result["pass"] else "FAIL")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0 if result["pass"] else 1
    finally:
        if runner is not None:
            runner.stop()


if __name__ == "__main__":
    sys.exit(main())
