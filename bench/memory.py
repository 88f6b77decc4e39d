"""bench/memory: resident memory of each ``ccweb serve --workers 2`` worker once every identity has a session.

Everything runs on 127.0.0.1 and stops by itself:

1. a loopback runner in this process serves the development OIDC issuer and the STS stand-in (which mints
   session tokens as long as real ones);
2. ``--identities`` tokens (default 10,000) are minted, half under each policy rule;
3. ``ccweb serve --workers 2`` starts; each worker's VmRSS and RssAnon are read from /proc when idle;
4. requests go out on fresh connections (the kernel hands each to either worker) until *both* workers
   hold a session for every identity: first for ``--warm`` identities (the first request of each kind
   loads code and data a worker keeps anyway), then for all. Which worker made each ``AssumeRole`` call
   is known exactly: the stand-in records the address of every call and the bench maps it to the worker
   that owns that connection. The stand-in must end with exactly identities x 2 calls, one per
   (worker, identity), and ``/readyz`` must report that many cached sessions from both workers;
5. memory is read again; the cost per identity is (after - warm) / (identities - warm).

Pass: every request answered 200, exactly one ``AssumeRole`` per (worker, identity), and each worker's
VmRSS at most ``--max-mib`` (default 200). Also reported: what the session cache's bound (``max_entries``)
implies at the measured cost per identity. Exit status 0 = pass, 1 = fail, 2 = could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from burst import (
    ConnectionOwners,
    Identity,
    _read_answer,
    mint_identities,
    raise_open_files,
    request_bytes,
    service_pids,
    start_service,
)
from common import (
    HOST,
    READ_REPOS,
    WRITE_REPOS,
    LoopbackRunner,
    log,
    memory_kib,
    run_bench,
    server_outcomes,
    stop_service,
)

TIME_BOUND_SECONDS = 1800
MAX_ROUNDS = 60


def readings(pids: list[int]) -> dict[int, dict[str, int]]:
    return {pid: memory_kib(pid) for pid in pids}


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


async def send_all(port: int, requests: list[bytes], concurrency: int, timeout: float) -> Counter[str]:
    """Each request on a fresh connection, ``concurrency`` at once; the statuses."""
    statuses: Counter[str] = Counter()
    limit = asyncio.Semaphore(concurrency)

    async def one(data: bytes) -> None:
        async with limit:
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
            except OSError as exc:
                statuses[type(exc).__name__] += 1
                return
            try:
                writer.write(data)
                answer = await _read_answer(reader, time.perf_counter(), timeout)
            finally:
                writer.close()
            statuses[str(answer.status) if answer.status else answer.error or "error"] += 1

    await asyncio.gather(*(one(data) for data in requests))
    return statuses


async def readyz_sessions(port: int, probes: int) -> Counter[int]:
    """``cached_sessions`` from ``/readyz``, asked on ``probes`` fresh connections (either worker answers)."""
    seen: Counter[int] = Counter()
    for _ in range(probes):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(f"GET /readyz HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            seen[int(json.loads(await reader.readexactly(length))["cached_sessions"])] += 1
        finally:
            writer.close()
    return seen


class Coverage:
    """Which worker holds a session for which identity, from the stand-in's calls and their owners."""

    def __init__(self, runner: LoopbackRunner, owners: ConnectionOwners) -> None:
        self.runner = runner
        self.owners = owners
        self.seen = 0
        self.held: Counter[tuple[int, str]] = Counter()
        self.unattributed = 0

    def update(self) -> None:
        self.owners.poll()
        calls = self.runner.sts.calls[self.seen :]
        self.seen += len(calls)
        for call in calls:
            pid = self.owners.owner(call.caller)
            if pid is None:
                self.unattributed += 1
            else:
                self.held[(pid, call.source_identity)] += 1


def sts_name_of(identity: Identity) -> str:
    return f"burst{identity.name.rsplit('burst', 1)[1]}@example.com"


def cover(
    identities: list[Identity],
    *,
    pids: list[int],
    coverage: Coverage,
    port: int,
    concurrency: int,
    timeout: float,
) -> tuple[int, Counter[str], int]:
    """Send each identity not yet held by every worker once more, until all are; rounds, statuses, requests."""
    statuses: Counter[str] = Counter()
    sent = 0
    for round_ in range(1, MAX_ROUNDS + 1):
        coverage.update()
        missing = [who for who in identities if any((pid, sts_name_of(who)) not in coverage.held for pid in pids)]
        if not missing:
            return round_ - 1, statuses, sent
        data = []
        for k, who in enumerate(missing):
            repos = WRITE_REPOS if who.group == "engineering" else READ_REPOS
            data.append(request_bytes(who.token, repos[(k + round_) % len(repos)], "us-east-1", port))
        statuses += asyncio.run(send_all(port, data, concurrency, timeout))
        sent += len(data)
        time.sleep(0.1)
    raise RuntimeError(f"after {MAX_ROUNDS} rounds some identities still lack a session in a worker")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/memory", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--identities", type=int, default=10_000, help="identities (default 10000)")
    parser.add_argument("--warm", type=int, default=200, help="identities cached before the baseline (200)")
    parser.add_argument("--max-mib", type=float, default=200.0, help="goal: VmRSS per worker in MiB (200)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight at once (default 64)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout in seconds (default 30)")
    parser.add_argument("--port", type=int, default=0, help="service port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (policy, service log)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.warm < args.identities <= 100_000 or args.concurrency < 1:
        parser.error("need 1 <= --warm < --identities <= 100000 and --concurrency >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("bench/memory", lambda workdir: run(args, workdir), keep=args.keep, bound=TIME_BOUND_SECONDS)


def run(args: argparse.Namespace, workdir: Path) -> int:
    from ccweb.sessions import SessionCache  # noqa: PLC0415 (installed: run_bench checked)

    runner: LoopbackRunner | None = None
    service: subprocess.Popen[bytes] | None = None
    try:
        raise_open_files(4 * args.concurrency + 1024)
        runner = LoopbackRunner()
        runner.start()
        log(f"issuer {runner.issuer_url}, STS stand-in {runner.sts_url}")
        started = time.monotonic()
        identities = mint_identities(runner, args.identities, ttl=TIME_BOUND_SECONDS + 600)
        mint_seconds = time.monotonic() - started
        log(f"minted {len(identities)} RS256 tokens (one key) in {mint_seconds:.1f} s")

        service, url, service_log, command = start_service(runner, workdir, 2, args.port)
        port = int(url.rsplit(":", 1)[1])
        pids = service_pids(service)
        time.sleep(2)
        idle = readings(pids)
        log("idle after start: " + ", ".join(f"worker {p} VmRSS {mib(m['VmRSS'])}" for p, m in idle.items()))
        sts_port = int(runner.sts_url.rsplit(":", 1)[1])
        with ConnectionOwners(pids, sts_port, interval=0.05) as owners:
            coverage = Coverage(runner, owners)
            options = {"pids": pids, "coverage": coverage, "port": port}
            options |= {"concurrency": args.concurrency, "timeout": args.timeout}
            rounds_warm, statuses, sent = cover(identities[: args.warm], **options)  # type: ignore[arg-type]
            time.sleep(1)
            warm = readings(pids)
            log(
                f"{args.warm} identities cached in both workers ({sent} requests, {rounds_warm} rounds): "
                + ", ".join(f"worker {p} VmRSS {mib(m['VmRSS'])}" for p, m in warm.items())
            )
            started = time.monotonic()
            rounds, more, sent_more = cover(identities, **options)  # type: ignore[arg-type]
            fill_seconds = time.monotonic() - started
            statuses += more
            sent += sent_more
            time.sleep(1)
            coverage.update()
        after = readings(pids)
        log(
            f"{args.identities} identities cached in both workers ({sent} requests in all, {rounds} more rounds, "
            f"{fill_seconds:.0f} s): " + ", ".join(f"worker {p} VmRSS {mib(m['VmRSS'])}" for p, m in after.items())
        )
        reported = asyncio.run(readyz_sessions(port, 40))
        same_workers = service_pids(service) == pids
        stop_service(service)
        outcomes, problems = server_outcomes(service_log)

        calls = len(runner.sts.calls)
        per_worker = Counter(pid for pid, _ in coverage.held.elements())
        repeated = sum(n - 1 for n in coverage.held.values())
        cached_max = SessionCache.__init__.__kwdefaults__["max_entries"]  # type: ignore[index]
        memory = []
        for pid in pids:
            grown = after[pid]["VmRSS"] - warm[pid]["VmRSS"]
            per_identity = grown * 1024 / (args.identities - args.warm)
            implied = warm[pid]["VmRSS"] + per_identity * cached_max / 1024
            memory.append(
                {
                    "pid": pid,
                    "idle_kib": idle[pid],
                    "warm_kib": warm[pid],
                    "after_kib": after[pid],
                    "bytes_per_identity": per_identity,
                    "implied_at_bound_kib": implied,
                }
            )
        checks = {
            "every request answered 200": set(statuses) == {"200"},
            f"STS calls = identities x 2 workers ({args.identities * 2})": calls == args.identities * 2,
            "one call per (worker, identity), every call attributed": (
                repeated == 0 and coverage.unattributed == 0 and len(coverage.held) == args.identities * 2
            ),
            f"/readyz: both workers report {args.identities} cached sessions": set(reported) == {args.identities}
            and len(per_worker) == 2,
            f"each worker's VmRSS <= {args.max_mib:g} MiB": all(
                m["after_kib"]["VmRSS"] <= args.max_mib * 1024 for m in memory
            ),
            "no error lines in the service log": not problems,
            "the same workers throughout": same_workers,
        }
        result = {
            "command": " ".join(command),
            "identities": args.identities,
            "warm_identities": args.warm,
            "mint_seconds": mint_seconds,
            "requests": sent,
            "statuses": dict(statuses),
            "fill_seconds": fill_seconds,
            "sts_calls": calls,
            "sts_calls_by_worker": {str(k): v for k, v in per_worker.items()},
            "readyz_cached_sessions": {str(k): v for k, v in reported.items()},
            "session_token_chars": runner.sts.session_token_chars,
            "session_cache_max_entries": cached_max,
            "memory": memory,
            "audit_outcomes": outcomes,
            "error_lines": problems,
            "checks": checks,
            "pass": all(checks.values()),
        }
        print()
        print(
            f"memory: {args.identities} identities ({mint_seconds:.0f} s to mint their tokens), {sent} requests, "
            f"{calls} STS AssumeRole calls (by worker {dict(per_worker)}); /readyz cached_sessions {dict(reported)}; "
            f"session tokens of {runner.sts.session_token_chars} characters"
        )
        for m in memory:
            print(
                f"worker {m['pid']}: VmRSS idle {mib(m['idle_kib']['VmRSS'])}, {args.warm} identities "
                f"{mib(m['warm_kib']['VmRSS'])}, {args.identities} identities {mib(m['after_kib']['VmRSS'])} "
                f"(RssAnon {mib(m['after_kib']['RssAnon'])}, peak {mib(m['after_kib']['VmHWM'])}); "
                f"{m['bytes_per_identity']:.0f} bytes per cached identity; at the session cache's bound "
                f"({cached_max} sessions) about {mib(m['implied_at_bound_kib'])}"
            )
        print(f"service audit outcomes {outcomes}; error lines {len(problems)}")
        for line in problems:
            print(f"  {line}")
        for name, ok in checks.items():
            print(f"{'pass' if ok else 'FAIL'}  {name}")
        print("PASS" if result["pass"] else "FAIL")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0 if result["pass"] else 1
    finally:
        if service is not None:
            stop_service(service)
        if runner is not None:
            runner.stop()


if __name__ == "__main__":
    sys.exit(main())
