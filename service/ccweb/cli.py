"""The ``ccweb`` command: serve, check-config, dev."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ccweb import __version__


def _serve(args: argparse.Namespace) -> int:
    from ccweb.config import ConfigError, load_config  # noqa: PLC0415

    path = args.config or os.environ.get("CCWEB_CONFIG")
    if not path:
        print("ccweb serve: name the policy file with --config FILE or CCWEB_CONFIG.", file=sys.stderr)
        return 2
    try:
        load_config(path)  # refuse to start on a bad file, before any worker is forked
    except ConfigError as exc:
        print(f"ccweb serve: {path} is not valid:", file=sys.stderr)
        for line in exc.messages:
            print(f"  {line}", file=sys.stderr)
        return 1
    import uvicorn  # noqa: PLC0415

    os.environ["CCWEB_CONFIG"] = os.path.abspath(path)
    os.environ["CCWEB_RELOAD_INTERVAL"] = str(args.reload_interval)
    os.environ["CCWEB_LOG_LEVEL"] = args.log_level
    os.environ["CCWEB_LOG_FORMAT"] = args.log_format
    from ccweb import limits, logs  # noqa: PLC0415
    from ccweb.server import APP, run_workers  # noqa: PLC0415

    logs.setup(args.log_level, args.log_format)
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "log_config": None,
        "access_log": False,
        "proxy_headers": True,
        "server_header": False,
        "http": "h11",  # the parser whose head limit limits.SERVER_OPTIONS raises (httptools has none)
        **limits.SERVER_OPTIONS,
    }
    if args.workers > 1:
        run_workers(**options)  # SIGHUP to this process reaches every worker
    else:
        uvicorn.run(APP, factory=True, **options)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from ccweb.config import ConfigError, load_config  # noqa: PLC0415

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for line in exc.messages:
            print(line, file=sys.stderr)
        return 1
    limit = config.rate_limit
    rate = (f"{limit.requests_per_minute} requests a minute per identity, bursts of {limit.burst}"
            if limit.requests_per_minute else "no rate limit")
    print(
        f"{args.file}: valid ({len(config.issuers)} issuer(s), {len(config.rules)} rule(s), "
        f"{len(config.git_endpoints)} git endpoint(s), {len(config.deny)} deny entry(ies); {rate})"
    )
    return 0


def _dev(args: argparse.Namespace) -> int:
    from ccweb_helper.hosts import is_loopback  # noqa: PLC0415

    if not is_loopback(args.host):
        print(
            f"ccweb dev: refusing to listen on {args.host}: the sandbox listens on loopback only "
            "(127.0.0.1, localhost or ::1), because it is for this machine alone.",
            file=sys.stderr,
        )
        return 2
    from ccweb import logs  # noqa: PLC0415
    from ccweb.sandbox.dev import run  # noqa: PLC0415

    logs.setup(args.log_level, "text")
    return run(args.host, args.port)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 3600")
    return value


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ccweb", description=__doc__)
    root.add_argument("--version", action="version", version=f"ccweb {__version__}")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the API")
    serve.add_argument("--config", help="the policy file (default: $CCWEB_CONFIG)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--reload-interval", type=_seconds, default=2.0, metavar="SECONDS",
        help="how often each worker checks the policy file for changes (default 2; 0: reload on SIGHUP only)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", default="json", choices=["json", "text"])
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check-config", help="validate a policy file")
    check.add_argument("file")
    check.set_defaults(run=_check_config)

    dev = commands.add_parser("dev", help="run the local sandbox (loopback only, nothing from AWS)")
    dev.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=8700, help="API port (default 8700; 0 picks one)")
    dev.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    dev.set_defaults(run=_dev)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
