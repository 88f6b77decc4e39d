"""``ccweb-helper``: git runs it with ``get``, ``store`` or ``erase``.

Only ``sys`` is imported up front: ``store`` and ``erase`` return at once (ccweb passwords are short-lived
and never stored), and ``get`` imports what it needs when it runs.
"""

from __future__ import annotations

import sys

USAGE = """usage: ccweb-helper <command>

A git credential helper for AWS CodeCommit through a ccweb service.

  setup [--url URL]   configure git for every CodeCommit host (run once; see setup --help)
  login [--device] [--url URL]
                      sign in with your company's single sign-on, for one ccweb service
  status [--url URL]  who you are, until when, and what you may reach
  logout [--url URL]  forget the logins (with --url: only that service's)
  doctor              check the whole chain and explain what to fix
  get | store | erase what git runs
  grc <remote> <address>
                      what git runs for the console's GRC URLs (codecommit::<region>://<repo>)

Settings:
  CCWEB_URL (or git config ccweb.url)   the ccweb service, e.g. https://ccweb.example.com
  CCWEB_TOKEN or CCWEB_TOKEN_FILE       an OIDC token (CI platforms' own tokens are found without it)
  CCWEB_TIMEOUT                         network timeout in seconds (default 10)
"""

COMMANDS = {
    "login": "ccweb_helper.account", "logout": "ccweb_helper.account", "status": "ccweb_helper.account",
    "setup": "ccweb_helper.setup", "doctor": "ccweb_helper.doctor", "grc": "ccweb_helper.grc",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else ""
    if command in ("store", "erase"):
        return 0
    try:
        if command == "get":
            from ccweb_helper.get import run  # noqa: PLC0415 (keep store/erase instant)

            return run(sys.stdin, sys.stdout, sys.stderr)
        if command in COMMANDS:
            import importlib  # noqa: PLC0415

            module = importlib.import_module(COMMANDS[command])
            return int(module.main(command, args[1:]))
    except KeyboardInterrupt:
        sys.stderr.write("\nccweb: cancelled.\n")
        if command == "get":
            sys.stdout.write("quit=1\n")  # git must not prompt, nor try a stored password, after Ctrl-C
        return 130
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
