"""``ccweb-helper doctor``'s checks that need the ccweb service: it answers, the clocks agree, the token is
accepted and some rule grants a repository. Each says how it reached the service: through which proxy (and the
variable that set it), or directly because NO_PROXY lists the host or because it is loopback; a proxy setting
that cannot be used is a failure naming the variable. The token and the proxy's password are never printed.
"""

from __future__ import annotations

import sys
from email.utils import parsedate_to_datetime

from ccweb_helper.client import HelperError, Response, ServiceURL, error_sentence
from ccweb_helper.doctor_report import SAMPLES, Report
from ccweb_helper.transport import PROXY_VARIABLES

SKEW_WARN, SKEW_FAIL = 60, 300  # seconds between this computer's clock and the service's


def _text(value: object) -> str:
    """A field of the service's answer for a sentence: a string as it is, anything else as ``?``."""
    return value if isinstance(value, str) else "?"


def _strings(value: object) -> list[str]:
    """The strings of a list in the service's answer; nothing for any other shape."""
    return [item for item in (value if isinstance(value, list) else []) if isinstance(item, str)]


class ServiceChecks(Report):
    """The checks of the service, the clock and the token."""

    bypass_text = ""  # for a failed request that NO_PROXY sent directly: the sentence that says so

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
        except HelperError as exc:
            self.say("FAIL", exc.message)
            return None
        route = self.route(self.service)
        if route is None:
            return None
        try:
            started = self.clock()
            answer = request(self.service, "GET", "/.well-known/ccweb", timeout=seconds, env=self.env)
            finished = self.clock()
        except HelperError as exc:
            self.say("FAIL", exc.message + self.bypass_text)
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
                       f", {how}{route}.")
        self.compare_clocks(answer, (started + finished) / 2)
        return seconds

    def route(self, service: ServiceURL) -> str | None:
        """How requests to ``service`` go, to end its line: ``, via proxy http://… (HTTPS_PROXY)``, ``, directly
        (…)`` when a proxy is set but not used for it, nothing when none is set. A proxy setting that cannot be
        used is a FAIL line naming the variable; None when the service cannot be asked because of it."""
        if not any(self.env.get(name) for name in PROXY_VARIABLES):
            return ""
        from ccweb_helper import proxy  # noqa: PLC0415 (only when a proxy is set)

        found = proxy.proxy_variable("https", self.env)
        if found is None:  # set to spaces only: unset
            return ""
        try:
            proxy.parse_proxy(found[1], found[0])
            problem = ""
        except proxy.ProxySettingError as exc:
            problem = str(exc)
        skip = proxy.no_proxy_variable(self.env)
        host = proxy.decided_host(service.host)  # as the request decides: its ASCII form
        if service.scheme != "https" or proxy.loopback(host):  # plain http is for loopback only
            how = ", directly (loopback is never proxied)"
        elif skip is not None and proxy.bypassed(host, service.port, skip[1]):
            how = f", directly ({skip[0]} bypasses the proxy for {host})"
            self.bypass_text = f" It was asked directly: {skip[0]} bypasses the proxy for {host}."
        elif problem:
            self.say("FAIL", problem)
            return None
        else:
            chosen = proxy.choose(service.scheme, service.host, service.port, self.env)
            how = f", via proxy {chosen.url} ({chosen.variable})" if chosen is not None else ""
        if problem:
            self.say("FAIL", f"{problem} The service is reached without it, but requests to other hosts (your "
                             "identity provider, a CI token service) would fail.")
        self.route_text = how
        return how

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
            answer = request(self.service, "GET", "/v1/whoami", timeout=seconds, token=found.token, env=self.env)
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
        asked = f"; asked {self.route_text[2:]}" if self.route_text else ""
        self.say("ok", f"the token from {found.source} is accepted: you are {identity} (issuer {issuer}, {url}), "
                       f"valid until {expires}{left}{asked}.")
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
