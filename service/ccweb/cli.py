"""The ``ccweb`` command: serve, check-config, schema, explain, test-policy, sts-name, dev."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from ccweb import __version__
from ccweb.display import printable


def _serve(args: argparse.Namespace) -> int:
    from ccweb.config import ConfigError, load_config  # noqa: PLC0415

    path = args.config or os.environ.get("CCWEB_CONFIG")
    if not path:
        print("ccweb serve: name the policy file with --config FILE or CCWEB_CONFIG.", file=sys.stderr)
        return 2
    try:
        config = load_config(path)  # refuse to start on a bad file, before any worker is forked
    except ConfigError as exc:
        print(printable(f"ccweb serve: {path} is not valid:"), file=sys.stderr)
        for line in exc.messages:
            print(printable(f"  {line}"), file=sys.stderr)
        return 1
    from ccweb.outbound import ProxySettingError, check_proxy_environment  # noqa: PLC0415

    try:
        check_proxy_environment(os.environ)  # the proxy for issuers and STS: refused now, not at the first token
    except ProxySettingError as exc:
        print(printable(f"ccweb serve: {exc}"), file=sys.stderr)
        return 1
    from ccweb.credential_endpoints import keep_credentials_direct  # noqa: PLC0415

    kept = keep_credentials_direct(os.environ)  # before botocore first runs: instance metadata never via HTTP_PROXY
    from ccweb import logs  # noqa: PLC0415
    from ccweb.server import ServeSettings, serve, web_secrets  # noqa: PLC0415

    try:
        web_secrets(config)  # the web page's secrets: refused now, not when a worker starts or someone signs in
    except ConfigError as exc:
        print(printable(f"ccweb serve: {exc.messages[0]}"), file=sys.stderr)
        return 1

    metrics = None if args.metrics_port is None else (args.metrics_host or args.host, args.metrics_port)
    if metrics is None and args.metrics_host is not None:
        print("ccweb serve: --metrics-host needs --metrics-port.", file=sys.stderr)
        return 2
    if metrics is not None and metrics[1] == args.port != 0:
        print(f"ccweb serve: --metrics-port {args.port} is the API's --port: choose another port for /metrics.",
              file=sys.stderr)
        return 2
    settings = ServeSettings(config_path=os.path.abspath(path), reload_interval=args.reload_interval,
                             log_level=args.log_level, log_format=args.log_format, public_metrics=metrics is None)
    logs.setup(settings.log_level, settings.log_format)
    if kept is not None:
        logging.getLogger("ccweb.outbound").info("%s", kept)
    serve(settings, args.host, args.port, args.workers, metrics)  # every worker builds its app from these settings
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from ccweb.config import ConfigError, load_config  # noqa: PLC0415
    from ccweb.policy import compile_policy  # noqa: PLC0415

    try:
        config = compile_policy(load_config(args.file)).config  # what serve would run, compiled the same way
    except ConfigError as exc:
        for line in exc.messages:
            print(printable(line), file=sys.stderr)
        return 1
    limit = config.rate_limit
    rate = (f"{limit.requests_per_minute} requests a minute per identity, bursts of {limit.burst}"
            if limit.requests_per_minute else "no rate limit")
    web = f"; web sign-in at {config.web.issuer} as {config.web.client_id}" if config.web.issuer else ""
    print(printable(
        f"{args.file}: valid ({len(config.issuers)} issuer(s), {len(config.rules)} rule(s), "
        f"{len(config.git_endpoints)} git endpoint(s), {len(config.deny)} deny entry(ies); {rate}{web})"
    ))
    return 0


def config_schema() -> dict[str, Any]:
    """The policy file's JSON Schema, from the models that validate it, for editors and linters.

    The schema checks keys, types and ranges; ``ccweb check-config`` also checks what a schema cannot say
    (issuer references, regular expressions that compile, session-policy sizes, session tag keys in STS's
    alphabet and unique without regard to case, transitive keys among the session tags).
    """
    import re  # noqa: PLC0415

    from ccweb.claimpath import MAX_KEY  # noqa: PLC0415
    from ccweb.claims import CLAIM_NAME  # noqa: PLC0415
    from ccweb.config import REPOSITORY_GLOB, ROLE_ARN, Config  # noqa: PLC0415
    from ccweb.tags import MAX_KEY_LENGTH, MAX_SESSION_TAGS  # noqa: PLC0415

    def ecma(pattern: re.Pattern[str]) -> str:  # JSON Schema regexes know no (?P<name>…)
        return "^" + re.sub(r"\(\?P<\w+>", "(?:", pattern.pattern) + "$"

    # A claim: one top-level name, or a JSON Pointer (RFC 6901: '/', then tokens where '~' is only '~0' or '~1').
    claim = {"type": "string", "maxLength": MAX_KEY,
             "pattern": f"^(?:(?!/){CLAIM_NAME.pattern}|/(?:[^/~]|~[01])(?:[^~]|~[01])*)$"}
    tag_key = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "not": {"pattern": "^[aA][wW][sS]:"}}
    schema = Config.model_json_schema()
    rule = schema["$defs"]["Rule"]["properties"]
    rule["role_arn"]["pattern"] = ecma(ROLE_ARN)
    rule["repositories"]["items"]["pattern"] = ecma(REPOSITORY_GLOB)
    rule["source_identity"]["anyOf"] = [claim, {"type": "null"}]
    rule["session_tags"].update(propertyNames=tag_key, additionalProperties=claim, maxProperties=MAX_SESSION_TAGS)
    rule["transitive_session_tags"].update(items=tag_key, maxItems=MAX_SESSION_TAGS, uniqueItems=True)
    for model in ("Rule", "DenyEntry"):
        schema["$defs"][model]["properties"]["claims"]["propertyNames"] = claim
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "ccweb policy",
        "description": "The ccweb policy file: issuers, an emergency deny list, rules (first match wins), git "
        "endpoints, AWS settings, the rate limit and the web page. Unknown keys are errors. Validate fully with "
        "`ccweb check-config FILE`.",
    }


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(config_schema(), indent=2, ensure_ascii=False))
    return 0


MAX_CLAIMS_CHARACTERS = 1 << 20
"""What ``ccweb explain --claims`` reads at most, from a file or stdin: far more than any token's claims."""


def _explain(args: argparse.Namespace) -> int:
    from ccweb.config import ConfigError, load_config  # noqa: PLC0415
    from ccweb.explain import ExplainError, explain, parse_claims, repository_target  # noqa: PLC0415
    from ccweb.policy import compile_policy  # noqa: PLC0415

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _invalid("explain", args.config, exc.messages)
    try:
        if args.claims == "-":
            text = sys.stdin.read(MAX_CLAIMS_CHARACTERS + 1)
        else:
            with open(args.claims, encoding="utf-8") as handle:
                text = handle.read(MAX_CLAIMS_CHARACTERS + 1)
    except (OSError, UnicodeDecodeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        print(printable(f"ccweb explain: --claims {args.claims}: cannot read: {problem}"), file=sys.stderr)
        return 2
    if len(text) > MAX_CLAIMS_CHARACTERS:
        print(f"ccweb explain: --claims {printable(args.claims)}: larger than {MAX_CLAIMS_CHARACTERS} characters; "
              "no token's claims are", file=sys.stderr)
        return 2
    try:
        claims = parse_claims(text)
    except ExplainError as exc:
        print(printable(f"ccweb explain: --claims {args.claims}: {exc}"), file=sys.stderr)
        return 2
    try:
        repository, region, default = repository_target(config, args.repo, args.region)
        result = explain(compile_policy(config), claims, repository, region, args.issuer)
    except ExplainError as exc:
        print(printable(f"ccweb explain: {exc}"), file=sys.stderr)
        return 2
    lines = result.lines()
    if default:
        lines[0] = lines[0].replace(f" in {region}", f" in {region} (the default; choose with --region)", 1)
    print("\n".join(map(printable, lines)))  # a claim's control characters escaped, never sent to the terminal
    return 0 if result.granted else 1


def _invalid(command: str, what: str, problems: list[str]) -> int:
    print(printable(f"ccweb {command}: {what} is not valid:"), file=sys.stderr)
    for line in problems:
        print(printable(f"  {line}"), file=sys.stderr)
    return 2


def _test_policy(args: argparse.Namespace) -> int:
    from ccweb.config import ConfigError, load_config  # noqa: PLC0415
    from ccweb.policy import compile_policy  # noqa: PLC0415
    from ccweb.policytest import differences, load_cases  # noqa: PLC0415

    try:
        policy = compile_policy(load_config(args.config))
    except ConfigError as exc:
        return _invalid("test-policy", args.config, exc.messages)
    try:
        cases = load_cases(args.cases, policy)
    except ConfigError as exc:
        return _invalid("test-policy", args.cases, exc.messages)
    lines = differences(policy, cases)
    for line in lines:
        print(printable(line))
    held = f"{len(cases) - len(lines)} of {len(cases)} case(s) hold"
    if lines:
        print(f"ccweb test-policy: {held}", file=sys.stderr)
        return 1
    print(f"{held}: the policy decides as expected")
    return 0


def _sts_name(args: argparse.Namespace) -> int:
    from ccweb.iam import sts_name  # noqa: PLC0415

    for identity in args.identity:
        print(sts_name(identity))  # in STS's alphabet: nothing to escape
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


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 0 to 65535")
    return int(text)


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
        "--metrics-port", type=_port, metavar="PORT",
        help="serve /metrics on this port, on a listener of its own, and not on --port (default: on --port)",
    )
    serve.add_argument("--metrics-host", metavar="HOST",
                       help="address the --metrics-port listener binds to (default: --host)")
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

    schema = commands.add_parser(
        "schema", help="print the policy file's JSON Schema (for editors: # yaml-language-server: $schema=…)"
    )
    schema.set_defaults(run=_schema)

    why = commands.add_parser(
        "explain", help="show which deny entry or rule decides for a token's claims, and why the others do not"
    )
    why.add_argument("--config", required=True, help="the policy file")
    why.add_argument(
        "--claims", required=True, metavar="FILE",
        help="the token's claims as a JSON object, or the token itself (not verified); - reads stdin",
    )
    why.add_argument("--repo", required=True, metavar="NAME", help="repository name, or a clone URL")
    why.add_argument("--region", help="the repository's region (default us-east-1; a clone URL names it)")
    why.add_argument("--issuer", metavar="NAME", help="the issuer entry the token is from (default: by its iss)")
    why.set_defaults(run=_explain)

    cases = commands.add_parser(
        "test-policy", help="check a policy against a table of cases (exit 1 when any case decides otherwise)"
    )
    cases.add_argument("--config", required=True, help="the policy file")
    cases.add_argument("cases", metavar="CASES.yaml",
                       help="the cases: name, issuer, claims, repository, region, expect")
    cases.set_defaults(run=_test_policy)

    names = commands.add_parser(
        "sts-name", help="print the SourceIdentity and RoleSessionName ccweb gives each identity (IAM, CloudTrail)"
    )
    names.add_argument("identity", nargs="+", metavar="IDENTITY",
                       help="a verified email, a sub or a rule's source_identity claim value (-- before one that "
                            "starts with -)")
    names.set_defaults(run=_sts_name)

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
