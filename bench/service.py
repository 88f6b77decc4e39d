"""bench/service: throughput and latency of ``POST /v1/credentials`` under ``ccweb serve --workers 2``, beside a
bare ASGI app that only echoes JSON, served by the same uvicorn with the same settings (``bench/echo.py``).

Everything runs on 127.0.0.1 and stops by itself:

1. the development OIDC issuer and the STS stand-in (``bench/common.py``) serve on loopback in this process;
2. ``ccweb serve --workers 2`` and ``bench/echo.py --workers 2`` start as subprocesses, each in its own
   process group;
3. wrk (``soak.lua``) POSTs ``/v1/credentials`` with RS256 tokens of many identities, rotating repositories,
   hosts and regions; the echo app gets exactly the same requests;
4. priming: full-speed runs until every identity has its session in both workers (the STS stand-in has seen
   one AssumeRole per identity and worker), so the measured runs are the warm path;
5. ``--rounds`` rounds, each a full-speed run of the echo app, then of ccweb (interleaved, so both see the
   same machine); requests/s are the medians of the rounds, and their ratio is the figure of merit;
6. last, ccweb paced at ``--target`` (0.35) x the echo app's rate: its p99 is the latency "at that rate".

Goals: ratio ≥ ``--target``, zero errors (wrk's and the service's audit lines), and p99 ≤ ``--p99-ms`` (50)
in the paced run. Exit status 0 = goals met, 1 = missed, 2 = could not run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    HERE,
    HOST,
    LoopbackRunner,
    Run,
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
        prog="bench/service", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=15, help="length of each full-speed run (default 15)")
    parser.add_argument("--rounds", type=int, default=3, help="echo/ccweb round pairs (default 3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections at full speed (64)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--identities", type=int, default=4000, help="distinct token identities (default 4000)")
    parser.add_argument("--target", type=float, default=0.35, help="goal: ccweb/echo requests/s (0.35)")
    parser.add_argument("--p99-ms", type=float, default=50.0, help="goal: p99 in the paced run (50 ms)")
    parser.add_argument("--paced-seconds", type=int, default=30, help="length of the paced run (default 30)")
    parser.add_argument("--timeout", type=int, default=5, help="wrk's per-request timeout, seconds (default 5)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also record each ccweb worker with py-spy during one more full-speed run (raw stacks in DIR)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (policy, requests, log)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.seconds < 3 or args.rounds < 1 or args.connections < 1 or args.identities < 1:
        parser.error("--seconds must be at least 3; --rounds, --connections and --identities positive")
    if args.profile and shutil.which("py-spy") is None:
        parser.error("--profile needs py-spy on PATH: pip install py-spy")
    return args


def prime(wrk: Wrk, runner: LoopbackRunner, identities: int, connections: int, deadline: float) -> list[Run]:
    """Full-speed runs until each worker holds a session for every identity (one AssumeRole each)."""
    runs = []
    wanted = 2 * identities
    while len(runner.sts.calls) < wanted:
        if time.monotonic() > deadline:
            raise RuntimeError(f"priming: {len(runner.sts.calls)} of {wanted} sessions after the time allowed")
        runs.append(wrk.run("prime", 10, connections))
        log(runs[-1].line() + f"; AssumeRole calls so far {len(runner.sts.calls)} of {wanted}")
    return runs


def profile(wrk: Wrk, pids: list[int], seconds: int, connections: int, out: Path) -> Run:
    out.mkdir(parents=True, exist_ok=True)
    recorders = [
        subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(seconds),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(out / f"worker-{pid}.txt"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        for pid in pids
    ]
    try:
        run = wrk.run("profile", seconds, connections)
    finally:
        for recorder in recorders:
            try:
                recorder.wait(seconds + 30)
            except subprocess.TimeoutExpired:
                recorder.kill()
    return run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("bench/service", lambda workdir: run(args, workdir), keep=args.keep, needs_wrk=True)


def run(args: argparse.Namespace, workdir: Path) -> int:
    planned = 120 + args.rounds * 2 * args.seconds + args.paced_seconds + (args.seconds if args.profile else 0)
    deadline = time.monotonic() + planned + 240
    runner: LoopbackRunner | None = None
    processes: list[subprocess.Popen[bytes]] = []
    wrks: list[Wrk] = []
    try:
        runner = LoopbackRunner()
        runner.start()
        config = workdir / "policy.yaml"
        config.write_text(json.dumps(policy(runner.issuer_url), indent=2))
        requests_file = workdir / "requests.tsv"
        started = time.monotonic()
        lines = write_requests(requests_file, runner.issuer, args.identities, ttl=planned + 1800)
        log(f"{args.identities} identities, {lines} distinct requests ({time.monotonic() - started:.1f} s to mint)")

        env = service_environment(runner.sts_url)
        ccweb_port, echo_port = free_port(), free_port()
        ccweb_url, echo_url = f"http://{HOST}:{ccweb_port}", f"http://{HOST}:{echo_port}"
        service_log, echo_log = workdir / "service.log", workdir / "echo.log"
        command = [
            *ccweb_command(),
            "serve",
            "--config",
            str(config),
            "--host",
            HOST,
            "--port",
            str(ccweb_port),
            "--workers",
            "2",
        ]
        service = start_logged(command, service_log, env)
        processes.append(service)
        echo = start_logged(
            [sys.executable, str(HERE / "echo.py"), "--port", str(echo_port), "--workers", "2"], echo_log, env
        )
        processes.append(echo)
        wait_until_up(service, ccweb_url, service_log)
        wait_until_up(echo, echo_url, echo_log)  # its /healthz is the echo too (GET, empty body: JSON null)
        log(f"ccweb serve on {ccweb_url} (workers {workers(service.pid)}), echo app on {echo_url}")

        ccweb_wrk = Wrk(ccweb_url, requests_file, args.threads, args.timeout, deadline)
        echo_wrk = Wrk(echo_url, requests_file, args.threads, args.timeout, deadline)
        wrks += [ccweb_wrk, echo_wrk]
        primes = prime(ccweb_wrk, runner, args.identities, 128, deadline)
        warm = echo_wrk.run("echo warm", 3, args.connections)
        log(warm.line())

        echo_runs: list[Run] = []
        ccweb_runs: list[Run] = []
        for n in range(1, args.rounds + 1):
            echo_runs.append(echo_wrk.run(f"echo {n}", args.seconds, args.connections))
            log(echo_runs[-1].line())
            ccweb_runs.append(ccweb_wrk.run(f"ccweb {n}", args.seconds, args.connections))
            log(ccweb_runs[-1].line())
        echo_rate = statistics.median(r.rate for r in echo_runs)
        ccweb_rate = statistics.median(r.rate for r in ccweb_runs)
        ratio = ccweb_rate / echo_rate if echo_rate else 0.0

        paced_rate = round(args.target * echo_rate)
        paced_connections = max(16, round(paced_rate * 0.1))  # each connection idle ~100 ms, like many clients
        paced = ccweb_wrk.run("ccweb paced", args.paced_seconds, paced_connections, paced_rate)
        log(paced.line() + f" ({paced_connections} connections)")
        profiled = None
        if args.profile:
            profiled = profile(ccweb_wrk, workers(service.pid), args.seconds, args.connections, args.profile)
            log(profiled.line() + f" (py-spy raw stacks in {args.profile})")

        sts_calls = len(runner.sts.calls)
        for process in processes:
            stop_service(process)
        outcomes, problems = server_outcomes(service_log)
        measured = [*ccweb_runs, paced]
        errors = sum(r.error_count for r in [*echo_runs, *measured])
        not_issued = {k: v for k, v in outcomes.items() if k != "issued"}
        checks = {
            f"ccweb ≥ {args.target:g} x the echo app's requests/s": ratio >= args.target,
            "zero errors (wrk; every audit line 'issued', no error lines)": errors == 0
            and not not_issued
            and not problems,
            f"p99 ≤ {args.p99_ms:g} ms at {paced_rate} req/s": paced.latency_us["p99"] / 1000 <= args.p99_ms,
            "the paced run kept within 5 % of its rate": paced.rate >= 0.95 * paced_rate,
            "no AssumeRole after priming (warm caches)": sts_calls == 2 * args.identities,
        }
        print()
        print("| run | req/s | p50 | p99 | errors |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for run in [*echo_runs, *ccweb_runs, paced, *([profiled] if profiled else [])]:
            lat = run.latency_us
            print(
                f"| {run.name} | {run.rate:.0f} | {lat['p50'] / 1000:.1f} ms | {lat['p99'] / 1000:.1f} ms | "
                f"{run.error_count} |"
            )
        print()
        print(
            f"echo app {echo_rate:.0f} req/s, ccweb {ccweb_rate:.0f} req/s (medians of {args.rounds}): "
            f"ratio {ratio:.3f} (goal ≥ {args.target:g})"
        )
        print(
            f"paced at {paced_rate} req/s: achieved {paced.rate:.0f}, p50 {paced.latency_us['p50'] / 1000:.1f} ms, "
            f"p99 {paced.latency_us['p99'] / 1000:.1f} ms (goal ≤ {args.p99_ms:g} ms)"
        )
        print(
            f"server: audit outcomes {outcomes}; AssumeRole calls {sts_calls} "
            f"({args.identities} identities x 2 workers); error lines {len(problems)}"
        )
        for line in problems:
            print(f"  {line}")
        for name, ok in checks.items():
            print(f"{'pass' if ok else 'FAIL'}  {name}")
        passed = all(checks.values())
        print("PASS" if passed else "FAIL")
        if args.json:
            result = {
                "command": " ".join(command),
                "identities": args.identities,
                "connections": args.connections,
                "prime": [r.__dict__ for r in primes],
                "echo": [r.__dict__ for r in echo_runs],
                "ccweb": [r.__dict__ for r in ccweb_runs],
                "paced": paced.__dict__,
                "echo_rate": echo_rate,
                "ccweb_rate": ccweb_rate,
                "ratio": ratio,
                "server": {"audit_outcomes": outcomes, "error_lines": problems, "sts_calls": sts_calls},
                "checks": checks,
                "pass": passed,
            }
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0 if passed else 1
    finally:
        for wrk in wrks:
            wrk.kill()
        for process in processes:
            stop_service(process)
        if runner is not None:
            runner.stop()


if __name__ == "__main__":
    sys.exit(main())
