"""``ccweb-helper doctor``: check the whole chain — git, its helper configuration, the service, the token,
the clock — and say what to fix. One line per check: ``ok``, ``note`` (advice), ``warn`` or ``FAIL``.
Exit status 0 when nothing is ``warn`` or ``FAIL``, else 1.

The checks of git live in ``doctor_git``, those that need the service in ``doctor_service``, the lines and
the verdict in ``doctor_report``. The token is never printed, nor a user name from a remote URL beyond a
short prefix.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from ccweb_helper.doctor_git import GitChecks
from ccweb_helper.doctor_grc import GrcChecks
from ccweb_helper.doctor_service import ServiceChecks


class Doctor(GitChecks, GrcChecks, ServiceChecks):
    """Every check, sharing one report."""


def run(env: Mapping[str, str], out: IO[str], clock: Callable[[], float] = time.time) -> int:
    doctor = Doctor(env, out, clock)
    if doctor.git_version() and doctor.read_config():
        seconds = doctor.check_service()
        doctor.helper_lists()
        doctor.helper_for_all_hosts()
        doctor.runnable()
        doctor.module_form()
        doctor.grc_urls()
        doctor.remote_users()
        doctor.stored()
        doctor.tls_and_proxies()
        if seconds is not None:
            doctor.check_token(seconds)
        else:
            doctor.say("note", "the token, your rules and the clock were not checked: they need the service.")
    return doctor.verdict()


def main(command: str, argv: Sequence[str]) -> int:
    argparse.ArgumentParser(
        prog=f"ccweb-helper {command}",
        description="Check git's helper configuration, the ccweb service, your token and the clock; explain "
                    "each problem with its fix. Exit status 0 when nothing is wrong, else 1.",
    ).parse_args(list(argv))
    return run(os.environ, sys.stdout)
