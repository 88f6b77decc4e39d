"""``ccweb-helper doctor``'s checks that need the ccweb service: it answers, the clocks agree, the token is
accepted and some rule grants a repository. The token is never printed.
"""

from __future__ import annotations

import sys
from email.utils import parsedate_to_datetime

from ccweb_helper.client import HelperError, Response, error_sentence
from ccweb_helper.doctor_report import SAMPLES, Report

SKEW_WARN, SKEW_FAIL = 60, 300  # seconds between this computer's clock and the service's


def _text(value: object) -> str:
    """A field of the service's answer for a sentence: a string as it is, anything else as ``?``."""
    return value if isinstance(value, str) else "?"


def _strings(value: object) -> list[str]:
    """The strings of a list in the service's answer; nothing for any other shape."""
    return [item for item in (value if isinstance(value, list) else []) if isinstance(item, str)]


class ServiceChecks(Report):
    """The checks of the service, the clock and the token."""

    def check_service(self) -> float | None:
        """The service check; returns the timeout to use for the next requests, None when they cannot run."""
        from ccweb_helper.client import parse_service_url, request  # noqa: PLC0415
        from ccweb_helper.sources import service_url, timeout  # noqa: PLC0415

        try:
            configured = service_url(self.env, SAMPLES[0][1])
        except HelperError as exc:  # a URL with a user name or password, not repeated
            self.say("FAIL", exc.message)
            return None
        if configured is None:
            self.say("FAIL", "no ccweb service is configured: run `ccweb-helper setup --url https://<your ccweb "
                             "service>` (it writes ccweb.url), or set CCWEB_URL.")
            return None
        try:
            seconds = min(timeout(self.env), 10.0)
            self.service = parse_service_url(*configured)
            started = self.clock()
            answer = request(self.service, "GET", "/.well-known/ccweb", timeout=seconds)
            finished = self.clock()
        except HelperError as exc:
            self.say("FAIL", exc.message + self._proxy_hint())
            return None
        endpoints = answer.body.get("git_endpoints")
        if answer.status != 200 or not isinstance(endpoints, list):
            self.say("FAIL", f"{self.service.url} ({configured[1]}) answered HTTP {answer.status} without ccweb's "
                             "discovery document; check that it names the ccweb service.")
            return None
        self.endpoints = tuple(
            str(e.get("host", "")).lower() for e in endpoints if isinstance(e, dict) and e.get("host")
        )
        self.service_ok = True
        how = "TLS certificate verified" if self.service.scheme == "https" else "plain http on loopback"
        version = answer.body.get("version")
        self.say("ok", f"service {self.service.url} ({configured[1]}) answers{f' (ccweb {version})' if version else ''}"
                       f", {how}.")
        self.compare_clocks(answer, (started + finished) / 2)
        return seconds

    def _proxy_hint(self) -> str:
        if any(self.env.get(n) for n in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
            return " (A proxy is set in this shell: ccweb-helper does not use proxies, so the service must be " \
                   "reachable directly.)"
        return ""

    def compare_clocks(self, answer: Response, local: float) -> None:
        """This computer's clock (``local``, when the service answered) against the answer's Date header."""
        date = answer.headers.get("date")
        try:
            server = parsedate_to_datetime(date).timestamp() if date else None
        except (TypeError, ValueError):
            server = None
        if server is None:
            self.say("note", "the service sent no usable Date header, so the clock was not compared.")
            return
        skew = round(local - server)
        if abs(skew) <= SKEW_WARN:
            self.say("ok", f"this computer's clock is within {max(abs(skew), 1)} s of the service's.")
            return
        direction = "ahead of" if skew > 0 else "behind"
        amount = f"about {round(abs(skew) / 60)} min" if abs(skew) >= 90 else f"{abs(skew)} s"
        dropped = " (more than the 15 minutes a password lives: git 2.41+ would discard every one at once)" \
            if skew > 900 else ""
        self.say("FAIL" if abs(skew) > SKEW_FAIL else "warn",
                 f"this computer's clock is {amount} {direction} the service's{dropped}: git discards a password "
                 "whose password_expiry_utc it believes past, and CodeCommit refuses one signed outside its window; "
                 "turn on automatic time synchronisation (NTP).")

    def check_token(self, seconds: float) -> None:
        from ccweb_helper.client import request  # noqa: PLC0415
        from ccweb_helper.sources import find_token  # noqa: PLC0415

        assert self.service is not None  # noqa: S101 (check_service succeeded)
        try:
            found = find_token(self.env, self.service, seconds, stderr=sys.stderr, interactive=False)
            answer = request(self.service, "GET", "/v1/whoami", timeout=seconds, token=found.token)
        except HelperError as exc:
            self.say("FAIL", exc.message)
            return
        if answer.status != 200:
            self.say("FAIL", f"the service refused the token from {found.source}: {error_sentence(answer)}")
            return
        body = answer.body
        identity, issuer, url, expires = (_text(body.get(k)) for k in ("identity", "issuer", "issuer_url",
                                                                          "expires_at"))
        left = _minutes_left(expires, self.clock())
        self.say("ok", f"the token from {found.source} is accepted: you are {identity} (issuer {issuer}, {url}), "
                       f"valid until {expires}{left}.")
        listed = body.get("rules")
        rules = [rule for rule in (listed if isinstance(listed, list) else []) if isinstance(rule, dict)]
        if not rules:
            self.say("FAIL", f"no ccweb rule grants {identity} any repository: ask the owners of the ccweb policy.")
        for rule in rules:
            repositories = ", ".join(_strings(rule.get("repositories")))
            self.say("ok", f"rule {_text(rule.get('rule'))}: {_text(rule.get('access'))} access to "
                           f"{repositories or 'nothing'} (role {_text(rule.get('role_arn'))}).")


def _minutes_left(expires: str, now: float) -> str:
    """How long until ``expires`` (ISO 8601), for a sentence; nothing when it is not a time."""
    try:
        from datetime import datetime  # noqa: PLC0415

        when = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return ""
    minutes = int((when - now) // 60)
    return f" (in {minutes} min)" if minutes >= 0 else " (already expired)"
