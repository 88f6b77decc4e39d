"""What ``ccweb-helper doctor`` found, and how it is shown: one line per check, then the verdict.

The checks (``doctor_git``, ``doctor_service``) share this state: what one learns, a later one uses (the
service's git endpoints, the helper commands git would run).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import IO, NamedTuple

from ccweb_helper import gitconfig
from ccweb_helper.client import ServiceURL, one_line
from ccweb_helper.hosts import HOST_FORMS

# One CodeCommit URL of each host form: what git is asked about.
SAMPLES: tuple[tuple[str, str], ...] = tuple((form.what, f"https://{form.sample}/v1/repos/example")
                                             for form in HOST_FORMS)


class Line(NamedTuple):
    status: str  # ok, note (advice), warn, FAIL
    text: str


class Report:
    """The lines said so far, and what the checks learnt on the way; ``clock`` tells the time (seconds)."""

    def __init__(self, env: Mapping[str, str], out: IO[str], clock: Callable[[], float] = time.time) -> None:
        self.env = env
        self.out = out
        self.clock = clock
        self.lines: list[Line] = []
        self.entries: list[gitconfig.Entry] = []
        self.endpoints: tuple[str, ...] = ()
        self.service: ServiceURL | None = None
        self.service_ok = False
        self.route_text = ""  # how the service was reached: ", via proxy http://… (HTTPS_PROXY)", or nothing
        self.ccweb_values: dict[str, gitconfig.Entry] = {}
        self.git: tuple[int, ...] = gitconfig.CREDENTIAL_WILDCARDS

    def say(self, status: str, text: str) -> None:
        line = Line(status, one_line(text, 2000))
        self.lines.append(line)
        self.out.write(f"{line.status:<5} {line.text}\n")
        self.out.flush()

    def verdict(self) -> int:
        """Write the closing sentence; the exit status: 0 when nothing is ``warn`` or ``FAIL``, else 1."""
        problems = sum(1 for line in self.lines if line.status in ("warn", "FAIL"))
        if problems:
            self.out.write(f"\n{problems} problem{'s' if problems != 1 else ''} found: fix the FAIL and warn lines "
                           "above, then run `ccweb-helper doctor` again.\n")
            return 1
        self.out.write("\nEverything ccweb-helper needs is in place.\n")
        return 0
