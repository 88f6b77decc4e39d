"""``ccweb-helper``: git runs it with ``get``, ``store`` or ``erase``.

Only ``sys`` is imported up front: ``store`` and ``erase`` return at once (ccweb passwords are short-lived
and never stored), and ``get`` imports what it needs when it runs.
"""

import sys
from typing import Optional

USAGE = """usage: ccweb-helper <get|store|erase|--version>

A git credential helper for AWS CodeCommit through a ccweb service. Configure git with
  git config --global credential.https://git-codecommit.us-east-1.amazonaws.com.helper '!ccweb-helper'
  git config --global credential.useHttpPath true
and tell it the service and a token:
  CCWEB_URL (or git config ccweb.url)   the ccweb service, e.g. https://ccweb.example.com
  CCWEB_TOKEN or CCWEB_TOKEN_FILE       an OIDC token of your identity provider or CI platform
  CCWEB_TIMEOUT                         network timeout in seconds (default 10)
"""


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else ""
    if command in ("store", "erase"):
        return 0
    if command == "get":
        from ccweb_helper.get import run  # noqa: PLC0415 (keep store/erase instant)

        return run(sys.stdin, sys.stdout, sys.stderr)
    if command in ("--version", "version"):
        from ccweb_helper import __version__  # noqa: PLC0415

        print(f"ccweb-helper {__version__}")
        return 0
    if command in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if not command or sys.stdin.isatty():
        sys.stderr.write(USAGE)
        return 2
    return 0  # git's protocol: a helper silently ignores operations it does not know
