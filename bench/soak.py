"""bench/soak: ``ccweb serve --workers 2`` under constant load for minutes; errors, latency and memory.

Everything runs on 127.0.0.1 and stops by itself:

1. a loopback runner in this process serves the development OIDC issuer (discovery and key set) and the
   STS stand-in, each with uvicorn on 127.0.0.1;
2. ``ccweb serve --config <generated policy> --workers 2`` starts as a subprocess in its own process
   group, with throwaway AWS keys, ``AWS_ENDPOINT_URL_STS`` pointed at the stand-in and no proxies;
3. wrk (``soak.lua``) POSTs ``/v1/credentials`` with RS256 tokens of many identities and rotating
   repositories, hosts and regions: a priming run (cold caches), a calibration run at full speed, a
   warm-up at the soak rate (``--fraction`` of the calibrated rate), then the soak as consecutive
   bounded runs of ``--segment`` seconds, each reported;
4. every ``--sample`` seconds the resident memory (VmRSS) of each uvicorn worker — the children of the
   ``ccweb serve`` process — is read from /proc.

It passes when no request failed (wrk: connect, read, write, timeout or a non-2xx status; the service:
any audit outcome other than ``issued`` or any error line), the soak kept to within 10 % of its rate, no
worker was replaced, and every worker's RSS at the end is less than ``--max-growth`` % above its RSS at
the end of the warm-up. Exit status 0 = pass, 1 = fail, 2 = could not run.

Last, a five-second probe sends requests back to back on one keep-alive connection; it is reported,
not judged: its latency shows whether the workers' connections have Nagle's algorithm on (about 40 ms per
request, waiting for the client's delayed ACK) or off (a few milliseconds).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    HOST,
    MAX_MINUTES,
    LoopbackRunner,
    Run,
    Sampler,
    Wrk,
    ccweb_command,
    free_port,
    log,
    policy,
    run_bench,
    server_outcomes,
    service_environment,
    start_logged,
    stop_service,
    wait_until_up,
    workers,
    write_requests,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="soak length after warm-up (default 5)")
    parser.add_argument("--warmup", type=int, default=60, help="warm-up seconds at the soak rate (default 60)")
    parser.add_argument("--calibrate", type=int, default=20, help="full-speed calibration seconds (default 20)")
    parser.add_argument("--rate", type=float, default=0, help="soak rate in req/s; skips calibration")
    parser.add_argument("--fraction", type=float, default=0.7, help="soak rate as a share of calibrated (0.7)")
    parser.add_argument("--identities", type=int, default=2000, help="distinct token identities (default 2000)")
    parser.add_argument(
        "--connections",
        type=int,
        default=0,
        help="wrk connections while soaking (default: one per 100 ms of the rate, at least 16)",
    )
    parser.add_argument("--max-connections", type=int, default=128, help="wrk connections at full speed (128)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--segment", type=int, default=60, help="seconds per soak run (default 60)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    parser.add_argument("--max-growth", type=float, default=10.0, help="allowed RSS growth in %% (default 10)")
    parser.add_argument("--timeout", type=int, default=5, help="wrk's per-request timeout, seconds (default 5)")
    parser.add_argument("--port", type=int, default=0, help="service port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (policy, log, samples)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be above 0 and at most {MAX_MINUTES}")
    if not 0 < args.fraction <= 1:
        parser.error("--fraction must be in (0, 1]")
    if args.identities < 1 or args.connections < 0 or args.threads < 1 or args.segment < 5:
        parser.error("--identities, --connections and --threads must be positive; --segment at least 5")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("bench/soak", lambda workdir: run(args, workdir), keep=args.keep, needs_wrk=True)


def run(args: argparse.Namespace, workdir: Path) -> int:
    soak_seconds = int(args.minutes * 60)
    planned = 15 + (0 if args.rate else args.calibrate) + args.warmup + soak_seconds
    deadline = time.monotonic() + planned + 240  # everything, with start-up and slack, or stop
    runner: LoopbackRunner | None = None
    service: subprocess.Popen[bytes] | None = None
    sampler: Sampler | None = None
    wrk: Wrk | None = None
    result: dict[str, Any] = {}
    try:
        runner = LoopbackRunner()
        runner.start()
        log(f"issuer {runner.issuer_url}, STS stand-in {runner.sts_url}")
        config = workdir / "policy.yaml"
        config.write_text(json.dumps(policy(runner.issuer_url), indent=2))  # JSON is YAML
        requests_file = workdir / "requests.tsv"
        started = time.monotonic()
        lines = write_requests(requests_file, runner.issuer, args.identities, ttl=planned + 1800)
        log(
            f"{args.identities} identities, {lines} distinct requests "
            f"({time.monotonic() - started:.1f} s to mint the RS256 tokens)"
        )

        port = args.port or free_port()
        url = f"http://{HOST}:{port}"
        service_log = workdir / "service.log"
        command = [
            *ccweb_command(),
            "serve",
            "--config",
            str(config),
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            "2",
        ]
        log("starting: " + " ".join(command))
        service = start_logged(command, service_log, service_environment(runner.sts_url))
        wait_until_up(service, url, service_log)
        first_workers = workers(service.pid)
        log(f"ccweb serve is up: master {service.pid}, workers {first_workers}")

        sampler = Sampler(service.pid, args.sample, workdir / "rss.csv")
        sampler.sample()
        sampler.start()
        wrk = Wrk(url, requests_file, args.threads, args.timeout, deadline)

        sampler.phase = "prime"
        prime = wrk.run("prime", 10, args.max_connections)
        log(prime.line())
        if args.rate:
            calibration = None
            rate = args.rate
        else:
            sampler.phase = "calibrate"
            calibration = wrk.run("calibrate", args.calibrate, args.max_connections)
            log(calibration.line())
            rate = round(calibration.rate * args.fraction)
        # Each connection sends about every 100 ms: the soak measures the service, not the ~40 ms a keep-alive
        # request waits when it follows the previous answer closely (the probe below shows that separately).
        connections = args.connections or max(16, math.ceil(rate * 0.1))
        log(f"soak rate: {rate:.0f} req/s with {connections} connections")

        sampler.phase = "warmup"
        warmup = wrk.run("warm-up", args.warmup, connections, rate)
        log(warmup.line())
        baseline = sampler.sample()
        log("RSS after warm-up: " + ", ".join(f"worker {p} {v / 1024:.1f} MiB" for p, v in baseline.items()))

        sampler.phase = "soak"
        segments: list[Run] = []
        left = soak_seconds
        while left > 0:
            length = min(args.segment, left)
            segments.append(wrk.run(f"soak {len(segments) + 1}", length, connections, rate))
            log(segments[-1].line())
            left -= length
        final = sampler.sample()
        sampler.phase = "probe"
        probe = wrk.run("probe", 5, 1)
        log(probe.line() + " (one keep-alive connection, back to back; information only)")
        sampler.phase = "end"
        sampler.stop()
        last_workers = workers(service.pid)
        soak_rows = [row for row in sampler.rows if row[1] == "soak"]
        stop_service(service)
        outcomes, problems = server_outcomes(service_log)

        memory: list[dict[str, Any]] = []
        for pid, start in baseline.items():
            end = final.get(pid)
            peak = max([r[3] for r in soak_rows if r[2] == pid] + [end or 0])
            growth = None if end is None else 100.0 * (end - start) / start
            memory.append(
                {
                    "pid": pid,
                    "warmup_end_kib": start,
                    "soak_end_kib": end,
                    "soak_peak_kib": peak,
                    "growth_percent": growth,
                    "pass": growth is not None and growth < args.max_growth,
                }
            )
        requests = sum(s.requests for s in segments)
        seconds = sum(s.seconds for s in segments)
        soak_errors = sum(s.error_count for s in segments) + warmup.error_count
        not_issued = {k: v for k, v in outcomes.items() if k != "issued"}
        achieved = requests / seconds if seconds else 0.0
        p50_ms = statistics.median(s.latency_us["p50"] for s in segments) / 1000
        p99_ms = max(s.latency_us["p99"] for s in segments) / 1000
        checks = {
            "no client errors (warm-up and soak)": soak_errors == 0,
            "every audit outcome 'issued', no error lines": not not_issued and not problems,
            "soak kept within 10 % of its rate": achieved >= 0.9 * rate,
            "same two workers throughout": first_workers == last_workers and len(last_workers) == 2,
            f"each worker's RSS grew less than {args.max_growth:g} %": all(m["pass"] for m in memory),
        }
        result = {
            "command": " ".join(command),
            "identities": args.identities,
            "wrk": {
                "threads": args.threads,
                "connections": connections,
                "max_connections": args.max_connections,
                "timeout_s": args.timeout,
            },
            "prime": prime.__dict__,
            "calibration": calibration.__dict__ if calibration else None,
            "rate": rate,
            "warmup": warmup.__dict__,
            "segments": [s.__dict__ for s in segments],
            "probe": probe.__dict__,
            "soak": {
                "requests": requests,
                "seconds": seconds,
                "rate": achieved,
                "p50_ms_median": p50_ms,
                "p99_ms_worst": p99_ms,
                "errors": soak_errors,
            },
            "server": {"audit_outcomes": outcomes, "error_lines": problems, "sts_calls": len(runner.sts.calls)},
            "memory": memory,
            "checks": checks,
            "pass": all(checks.values()),
        }
        print()
        print(
            f"soak: {requests} requests in {seconds:.0f} s = {achieved:.1f} req/s (target {rate:.0f}); "
            f"p50 {p50_ms:.1f} ms (median of runs), "
            f"p99 {p99_ms:.1f} ms (worst run); errors {soak_errors}"
        )
        print(
            f"server: audit outcomes {outcomes}; STS AssumeRole calls {len(runner.sts.calls)}; "
            f"error lines {len(problems)}"
        )
        for line in problems:
            print(f"  {line}")
        for m in memory:
            end_text = "gone" if m["soak_end_kib"] is None else f"{m['soak_end_kib'] / 1024:.1f} MiB"
            growth_text = "n/a" if m["growth_percent"] is None else f"{m['growth_percent']:+.1f} %"
            print(
                f"worker {m['pid']}: RSS {m['warmup_end_kib'] / 1024:.1f} MiB after warm-up -> {end_text} at the "
                f"end (peak {m['soak_peak_kib'] / 1024:.1f} MiB), {growth_text}: "
                f"{'pass' if m['pass'] else 'FAIL'}"
            )
        for name, ok in checks.items():
            print(f"{'pass' if ok else 'FAIL'}  {name}")
        print("PASS" if result["pass"] else "FAIL")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0 if result["pass"] else 1
    finally:
        if wrk is not None:
            wrk.kill()
        if sampler is not None and not sampler._stop.is_set():
            sampler.stop()
        if service is not None:
            stop_service(service)
        if runner is not None:
            runner.stop()


if __name__ == "__main__":
    sys.exit(main())
