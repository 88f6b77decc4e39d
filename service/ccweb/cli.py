"""The ``ccweb`` command: serve, check-config, dev."""

from __future__ import annotations

import argparse
import os
import sys

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
    os.environ["CCWEB_LOG_LEVEL"] = args.log_level
    os.environ["CCWEB_LOG_FORMAT"] = args.log_format
    from ccweb import logs  # noqa: PLC0415

    logs.setup(args.log_level, args.log_format)
    uvicorn.run(
        "ccweb.server:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
    )
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from ccweb.config import ConfigError, load_config  # noqa: PLC0415

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for line in exc.messages:
            print(line, file=sys.stderr)
        return 1
    print(
        f"{args.file}: valid ({len(config.issuers)} issuer(s), {len(config.rules)} rule(s), "
        f"{len(config.git_endpoints)} git endpoint(s))"
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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ccweb", description=__doc__)
    root.add_argument("--version", action="version", version=f"ccweb {__version__}")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the API")
    serve.add_argument("--config", help="the policy file (default: $CCWEB_CONFIG)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
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
