"""The interactive login's decisions as tables, the loopback callback server, and renewal and device-flow
polling against a loopback stand-in identity provider that answers as scripted (outages included)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import pytest

from ccweb_helper import callback, login_idp
from ccweb_helper.audience import service_key
from ccweb_helper.cache import Cache
from ccweb_helper.client import HelperError, Response, http_json, parse_service_url
from ccweb_helper.discovery import LoginIssuer
from ccweb_helper.login import EXPIRED, can_prompt, locked, token_for
from ccweb_helper.login_flows import pkce_pair, prefers_device, sign_in
from ccweb_helper.login_tokens import check_id_token, entry_key, logins, usable

CLIENT_ID = "ccweb-cli"
LOGIN = LoginIssuer("corp", "https://login.example.com", CLIENT_ID, ("openid",))
NOW = 1_800_000_000
SERVICE = "https://ccweb.example.com"  # the service the logins below were made for


def _part(value: dict[str, Any] | str) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def jwt(issuer: str = LOGIN.issuer, now: float = NOW, **claims: Any) -> str:
    body = {"iss": issuer, "aud": CLIENT_ID, "sub": "alice", "exp": int(now) + 600, "nonce": "n1", **claims}
    return f"{_part({'alg': 'RS256'})}.{_part({k: v for k, v in body.items() if v is not None})}.c2ln"


def raw_jwt(payload: str) -> str:
    """A JWT whose payload is this exact text (a number JSON can write but Python's json.dumps would not)."""
    return f"{_part({'alg': 'RS256'})}.{_part(payload)}.c2ln"


def _claims_text(exp: str) -> str:
    return f'{{"iss": "{LOGIN.issuer}", "aud": "{CLIENT_ID}", "sub": "alice", "nonce": "n1", "exp": {exp}}}'


# ---------------------------------------------------------------------- the pure decisions, as tables


@pytest.mark.parametrize(
    ("token", "nonce", "subject", "refused"),
    [
        (jwt(), "n1", None, None),
        (jwt(iss="https://login.example.com/"), "n1", None, None),
        (jwt(aud=[CLIENT_ID, "other"], azp=CLIENT_ID), "n1", None, None),
        (jwt(nonce=None), None, "alice", None),
        (jwt(iss="https://evil.example.com"), "n1", None, "another issuer"),
        (jwt(aud="other"), "n1", None, "another client"),
        (jwt(aud=[CLIENT_ID, "other"], azp="other"), "n1", None, "another client"),
        (jwt(nonce="n2"), "n1", None, "nonce mismatch"),
        (jwt(nonce=None), "n1", None, "nonce mismatch"),
        (jwt(sub="bob"), None, "alice", "another account"),
        (jwt(exp=NOW - 1), "n1", None, "already expired"),
        (jwt(exp="soon"), "n1", None, "without an expiry"),
        (jwt(exp=True), "n1", None, "without an expiry"),
        (jwt(exp=None), "n1", None, "without an expiry"),
        (raw_jwt(_claims_text("1e999")), "n1", None, "expiry \\(exp\\) is not a time"),
        (raw_jwt(_claims_text("-1e999")), "n1", None, "expiry \\(exp\\) is not a time"),
        (raw_jwt(_claims_text("NaN")), "n1", None, "expiry \\(exp\\) is not a time"),
        (raw_jwt(_claims_text("1e300")), "n1", None, "expiry \\(exp\\) is not a time"),
        (raw_jwt(_claims_text("1" + "0" * 400)), "n1", None, "expiry \\(exp\\) is not a time"),
        ("not-a-jwt", "n1", None, "not a JWT"),
        (jwt() + "\r\nX-Injected: 1", "n1", None, "not a JWT"),
        (jwt() + " " + jwt(), "n1", None, "not a JWT"),
        (None, "n1", None, "no ID token"),
        ("", "n1", None, "no ID token"),
    ],
    ids=["valid", "issuer-trailing-slash", "azp", "refresh-same-subject", "wrong-iss", "wrong-aud", "wrong-azp",
         "wrong-nonce", "missing-nonce", "other-subject", "expired", "bad-exp", "bool-exp", "no-exp",
         "exp-1e999", "exp-minus-1e999", "exp-NaN", "exp-1e300", "exp-huge-integer", "not-jwt",
         "header-injection", "two-tokens", "missing", "empty"],
)
def test_id_token_checks(token: object, nonce: str | None, subject: str | None, refused: str | None) -> None:
    if refused is None:
        assert check_id_token(token, LOGIN, now=NOW, nonce=nonce, subject=subject)["sub"]
    else:
        with pytest.raises(HelperError, match=refused):
            check_id_token(token, LOGIN, now=NOW, nonce=nonce, subject=subject)


def entry(id_token: object = None, expires_at: object = NOW + 600, **changes: Any) -> dict[str, Any]:
    return {"name": "corp", "issuer": LOGIN.issuer, "client_id": CLIENT_ID, "service": SERVICE,
            "id_token": jwt() if id_token is None else id_token, "expires_at": expires_at, **changes}


@pytest.mark.parametrize(
    ("cached", "found"),
    [
        (entry(), True),
        (entry(issuer=LOGIN.issuer + "/"), True),
        (entry(expires_at=NOW + 61.5), True),
        (entry(expires_at=NOW + 60), False),
        (entry(expires_at=NOW - 1), False),
        (entry(issuer="https://evil.example.com"), False),
        (entry(client_id="other"), False),
        (entry(service="https://partner.example.com"), False),
        (entry(service=SERVICE + "/"), False),
        ({k: v for k, v in entry().items() if k != "service"}, False),
        (entry(id_token=jwt() + "\r\nX-Injected: 1"), False),
        (entry(id_token=jwt() + "\n"), False),
        (entry(id_token="a.b.c d"), False),
        (entry(id_token="å.b.c"), False),
        (entry(id_token="a.b"), False),
        (entry(id_token=["a.b.c"]), False),
        (entry(expires_at=float("inf")), False),
        (entry(expires_at=float("nan")), False),
        (entry(expires_at=10**400), False),
        (entry(expires_at=True), False),
        (entry(expires_at="later"), False),
        ("not an entry", False),
    ],
    ids=["valid", "issuer-trailing-slash", "just-outside-the-margin", "inside-the-margin", "expired",
         "other-issuer", "other-client", "other-service", "service-spelled-otherwise", "no-service",
         "header-injection", "trailing-newline", "space", "non-ascii",
         "two-parts", "not-a-string", "exp-infinite", "exp-NaN", "exp-huge", "exp-bool", "exp-string",
         "not-a-dict"],
)
def test_a_cached_token_is_used_only_when_it_is_one_valid_jwt(cached: object, found: bool) -> None:
    got = usable(cached, LOGIN, SERVICE, NOW)
    assert (got is not None) is found
    if found:
        assert isinstance(cached, dict) and got == cached["id_token"]


class Stream(io.StringIO):
    def __init__(self, tty: bool | None) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        if self.tty is None:
            raise ValueError("I/O operation on closed file")
        return self.tty


@pytest.mark.parametrize(
    ("env", "tty", "prompts"),
    [
        ({}, True, True),
        ({}, False, False),
        ({}, None, False),
        ({"GIT_TERMINAL_PROMPT": "1"}, True, True),
        ({"GIT_TERMINAL_PROMPT": "0"}, True, False),
        ({"GIT_TERMINAL_PROMPT": "false"}, True, False),
        ({"GIT_TERMINAL_PROMPT": " Off "}, True, False),
        ({"GIT_TERMINAL_PROMPT": "no"}, True, False),
        ({"CCWEB_LOGIN": "never"}, True, False),
        ({"CCWEB_LOGIN": "Never"}, True, False),
    ],
    ids=["terminal", "stderr-not-a-terminal", "stderr-closed", "GIT_TERMINAL_PROMPT=1", "GIT_TERMINAL_PROMPT=0",
         "GIT_TERMINAL_PROMPT=false", "GIT_TERMINAL_PROMPT=off", "GIT_TERMINAL_PROMPT=no", "CCWEB_LOGIN=never",
         "CCWEB_LOGIN=Never"],
)
def test_a_login_is_offered_only_to_a_person_at_a_terminal(env: dict[str, str], tty: bool | None,
                                                           prompts: bool) -> None:
    assert can_prompt(env, Stream(tty)) is prompts


@pytest.mark.parametrize(
    ("env", "platform", "device"),
    [
        ({"DISPLAY": ":0"}, "linux", False),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", False),
        ({}, "linux", True),
        ({}, "freebsd14", True),
        ({}, "darwin", False),
        ({}, "win32", False),
        ({"SSH_CONNECTION": "1 2 3 4", "DISPLAY": ":0"}, "linux", True),
        ({"SSH_TTY": "/dev/pts/1"}, "darwin", True),
        ({"BROWSER": "w3m"}, "linux", False),
        ({"BROWSER": "firefox", "SSH_CONNECTION": "1 2 3 4"}, "linux", False),
    ],
    ids=["x11", "wayland", "linux-headless", "bsd-headless", "macos", "windows", "ssh-with-display", "ssh-macos",
         "browser-set", "browser-set-over-ssh"],
)
def test_device_flow_is_chosen_where_there_is_no_browser(env: dict[str, str], platform: str, device: bool) -> None:
    assert prefers_device(env, platform) is device


def test_pkce_challenge_is_s256_of_the_verifier() -> None:
    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128 and re.fullmatch(r"[A-Za-z0-9_-]+", verifier)
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert pkce_pair()[0] != verifier


# ---------------------------------------------------------------------- the loopback callback server


def _redirect(port: int, query: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/callback?{query}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


GUARD = 30.0
"""Seconds to wait for what happens at once: a bound against a hang, never a measurement."""


@contextlib.contextmanager
def idle_connection(port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A connection that sends nothing: a port scanner, or a browser's speculative preconnect. Connected before
    anything else, it is first in the server's accept queue; it stays idle for longer than a test waits (were
    the server to answer connections one after the other, it would hold up everything behind it)."""
    monkeypatch.setattr(callback._CallbackHandler, "timeout", 2 * GUARD)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
        yield idle


def test_an_idle_connection_does_not_hold_up_the_redirect(monkeypatch: pytest.MonkeyPatch) -> None:
    with callback.CallbackServer("s1") as server, idle_connection(server.port, monkeypatch):
        answers: list[tuple[int, str]] = []
        browser = threading.Thread(target=lambda: answers.append(_redirect(server.port, "state=s1&code=c1")))
        browser.start()
        result = server.wait(time.monotonic() + GUARD)
        browser.join(GUARD)
    assert result == {"state": "s1", "code": "c1"}, "the idle connection held up the sign-in"
    assert answers and answers[0][0] == 200 and "You can close this window" in answers[0][1]


def test_the_deadline_holds_while_a_connection_sits_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    with callback.CallbackServer("s1") as server, idle_connection(server.port, monkeypatch):
        started = time.monotonic()
        assert server.wait(started + 0.5) is None
        assert time.monotonic() - started < GUARD, "the idle connection held the wait past its deadline"


def test_only_the_first_answer_with_this_sign_ins_state_is_taken() -> None:
    with callback.CallbackServer("s1") as server:
        serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        serving.start()
        try:
            assert _redirect(server.port, "state=other&code=evil")[0] == 400
            assert _redirect(server.port, "state=s1&error=access_denied")[0] == 400
            assert _redirect(server.port, "state=s1&code=late")[0] == 400
        finally:
            server.shutdown()
        assert server.wait(time.monotonic() + 5) == {"state": "s1", "error": "access_denied"}


def test_giving_up_ends_the_wait() -> None:
    asked: list[bool] = []

    def give_up() -> bool:  # the browser could not be started: after one round of waiting, no more
        asked.append(True)
        return len(asked) > 1

    with callback.CallbackServer("s1") as server:
        started = time.monotonic()
        assert server.wait(started + 2 * GUARD, give_up=give_up) is None
        assert time.monotonic() - started < GUARD, "the wait went on to its deadline"


@pytest.mark.skipif(os.name != "posix", reason="fd 1 is redirected on POSIX only")
def test_a_browser_launched_late_still_writes_to_stderr_not_to_git(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    finished, launched = threading.Event(), threading.Event()

    def slow_browser(url: str, outcome: list[bool]) -> None:
        finished.wait(GUARD)  # the sign-in finished (the address opened by hand) before the browser started
        outcome.append(subprocess.run(["sh", "-c", "echo late-browser-noise"], check=False).returncode == 0)
        launched.set()

    monkeypatch.setattr(callback, "_open_browser", slow_browser)
    monkeypatch.setattr(callback, "BROWSER_JOIN_SECONDS", GUARD)  # a launch under way is waited for, however slow
    with callback.browser_started("http://127.0.0.1:1/") as outcome:
        finished.set()
    assert launched.wait(GUARD) and outcome == [True]
    out, err = capfd.readouterr()
    assert "late-browser-noise" not in out, "the browser wrote into git's credential answer"
    assert "late-browser-noise" in err


def test_the_lock_wait_ends_with_a_clear_error(tmp_path: Path) -> None:
    store = Cache(tmp_path)
    stderr = io.StringIO()
    with store.lock():  # another helper, signing in
        started = time.monotonic()
        with (pytest.raises(HelperError, match=r"another ccweb-helper has held the login cache lock .* for over"),
              locked(store, stderr, seconds=0.3)):
            pytest.fail("the lock was held elsewhere")
        assert time.monotonic() - started >= 0.3
    assert "waiting for another ccweb-helper" in stderr.getvalue()
    with locked(store, stderr, seconds=0.3):
        pass


# ---------------------------------------------------------------------- a stand-in identity provider


class Answer(NamedTuple):
    status: int
    body: dict[str, Any] | str  # a dict is sent as JSON, a string as an HTML page
    hang: bool = False  # no answer while the test runs: the helper gives up waiting (after HANG_SECONDS)
    drop: bool = False  # close the connection without an answer


HANG = Answer(200, {}, hang=True)


class StandIn:
    """An identity provider on loopback whose token endpoint answers from a script (the last answer
    repeats), with a device endpoint; it records every form the helper posts."""

    def __init__(self) -> None:
        self.token_answers: list[Answer] = []
        self.device_answer = Answer(200, {})
        self.forms: list[dict[str, str]] = []
        self.ended = threading.Event()  # the test is over: answers held back (``hang``) may go
        self.hung = self.cut = 0  # answers held back; exchanges the helper was told to give up on
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    self._send(Answer(200, {"issuer": stand_in.issuer, "token_endpoint": stand_in.issuer + "/token",
                                            "device_authorization_endpoint": stand_in.issuer + "/device"}))
                else:
                    self._send(Answer(404, {"error": "not_found"}))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                stand_in.forms.append(form)
                if self.path == "/device":
                    self._send(stand_in.device_answer)
                else:
                    answers = stand_in.token_answers
                    self._send(answers.pop(0) if len(answers) > 1 else answers[0])

            def _send(self, answer: Answer) -> None:
                if answer.hang:
                    stand_in.hung += 1
                    stand_in.ended.wait(GUARD)
                if answer.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(answer.body, dict):
                    content, kind = json.dumps(answer.body).encode(), "application/json"
                else:
                    content, kind = answer.body.encode(), "text/html"
                with contextlib.suppress(OSError):  # the helper may have given up waiting
                    self.send_response(answer.status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.login = LoginIssuer("corp", self.issuer, CLIENT_ID, ("openid", "offline_access"))

    def grants(self, kind: str) -> int:
        return sum(f.get("grant_type") == kind for f in self.forms)

    def will_hang(self, url: str) -> bool:
        """Whether the next request to ``url`` gets an answer held back (requests come one at a time)."""
        path = urlsplit(url).path
        if path == "/device":
            return self.device_answer.hang
        return path == "/token" and bool(self.token_answers) and self.token_answers[0].hang


SECONDS = 30.0
"""The helper's timeout for each exchange with the stand-in: one that answers always does so well within it."""
HANG_SECONDS = 0.5
"""The helper's timeout for an exchange the stand-in holds back (``HANG``): only that one times out."""


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    idp = StandIn()
    def timed(url: str, what: str, *, timeout: float, **options: Any) -> Response:
        if idp.will_hang(url):
            idp.cut += 1
            timeout = HANG_SECONDS
        return http_json(url, what, timeout=timeout, **options)

    monkeypatch.setattr(login_idp, "http_json", timed)
    thread = threading.Thread(target=idp.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        idp.ended.set()
        idp.server.shutdown()
        idp.server.server_close()
    assert idp.cut == idp.hung, "an answer was held back from an exchange with the full timeout"


def clock() -> float:
    """The time the helper is told: ``NOW``, whatever the machine's clock says."""
    return NOW


def plant(store: Cache, idp: StandIn, *, seconds_left: float) -> dict[str, Any]:
    planted = {"name": "corp", "issuer": idp.issuer, "client_id": CLIENT_ID, "service": SERVICE,
               "id_token": jwt(issuer=idp.issuer, exp=int(NOW + seconds_left)),
               "expires_at": int(NOW + seconds_left), "refresh_token": "rt-1"}
    store.write({"version": 1, "logins": {entry_key(idp.login, SERVICE): planted}})
    return planted


def cached_entry(store: Cache, idp: StandIn) -> Any:
    return logins(store.read()).get(entry_key(idp.login, SERVICE))


def renew(idp: StandIn, store: Cache, *, interactive: bool, service: str = SERVICE) -> str | None:
    """The login's token for ``service`` as ``get`` finds it, renewed at ``idp`` where needed."""
    return token_for([idp.login], store, {}, SECONDS, service=service, stderr=io.StringIO(), interactive=interactive,
                     clock=clock)


NOT_NOW = {
    "429": Answer(429, {"error": "too_many_requests"}),
    "500-html": Answer(500, "<html><body>Internal Server Error</body></html>"),
    "502": Answer(502, "<html>Bad Gateway</html>"),
    "503-json": Answer(503, {"error": "temporarily_unavailable"}),
    "400-invalid_request": Answer(400, {"error": "invalid_request"}),
    "401-no-body": Answer(401, ""),
    "timeout": HANG,
    "connection-dropped": Answer(200, {}, drop=True),
}


@pytest.mark.parametrize("answer", list(NOT_NOW.values()), ids=list(NOT_NOW))
def test_a_passing_failure_to_renew_keeps_the_login_and_uses_a_still_valid_token(
    stand_in: StandIn, tmp_path: Path, answer: Answer,
) -> None:
    stand_in.token_answers = [answer]
    store = Cache(tmp_path)
    planted = plant(store, stand_in, seconds_left=30)  # within the renewal margin, not yet expired
    got = renew(stand_in, store, interactive=False)
    assert got == planted["id_token"]
    assert stand_in.grants("refresh_token") == 1
    assert cached_entry(store, stand_in) == planted, "the refresh token was kept"


@pytest.mark.parametrize("answer", list(NOT_NOW.values()), ids=list(NOT_NOW))
def test_a_passing_failure_to_renew_an_expired_token_is_explained_and_the_login_kept(
    stand_in: StandIn, tmp_path: Path, answer: Answer,
) -> None:
    stand_in.token_answers = [answer]
    store = Cache(tmp_path)
    planted = plant(store, stand_in, seconds_left=-10)
    with pytest.raises(HelperError) as raised:
        renew(stand_in, store, interactive=True)
    assert raised.value.message != EXPIRED and "rt-1" not in raised.value.message
    assert cached_entry(store, stand_in) == planted, "the refresh token was kept for the next try"


def test_an_unreachable_identity_provider_keeps_the_login(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    gone = LoginIssuer("corp", f"http://127.0.0.1:{port}", CLIENT_ID, ("openid",))
    store = Cache(tmp_path)
    planted = entry(id_token=jwt(issuer=gone.issuer), issuer=gone.issuer, expires_at=NOW + 30, refresh_token="rt-1")
    store.write({"version": 1, "logins": {entry_key(gone, SERVICE): planted}})
    got = token_for([gone], store, {}, SECONDS, service=SERVICE, stderr=io.StringIO(), interactive=False,
                    clock=clock)
    assert got == planted["id_token"]
    assert logins(store.read())[entry_key(gone, SERVICE)] == planted


@pytest.mark.parametrize("answer", [Answer(400, {"error": "invalid_grant"}), Answer(401, {"error": "invalid_client"})],
                         ids=["invalid_grant", "invalid_client"])
@pytest.mark.parametrize("seconds_left", [30, -10], ids=["still-valid", "expired"])
def test_invalid_grant_or_client_ends_the_login(stand_in: StandIn, tmp_path: Path, answer: Answer,
                                                seconds_left: int) -> None:
    stand_in.token_answers = [answer]
    store = Cache(tmp_path)
    plant(store, stand_in, seconds_left=seconds_left)
    with pytest.raises(HelperError, match="your login has expired"):
        renew(stand_in, store, interactive=False)
    assert cached_entry(store, stand_in) is None


def test_a_renewal_without_an_id_token_keeps_the_rotated_refresh_token(stand_in: StandIn, tmp_path: Path) -> None:
    stand_in.token_answers = [Answer(200, {"access_token": "at", "refresh_token": "rt-2"})]
    store = Cache(tmp_path)
    planted = plant(store, stand_in, seconds_left=-10)
    with pytest.raises(HelperError, match="renewed your login without an ID token"):
        renew(stand_in, store, interactive=False)
    assert cached_entry(store, stand_in) == {**planted, "refresh_token": "rt-2"}


def test_a_renewal_replaces_the_cached_token(stand_in: StandIn, tmp_path: Path) -> None:
    store = Cache(tmp_path)
    plant(store, stand_in, seconds_left=30)
    renewed = jwt(issuer=stand_in.issuer, nonce=None)
    stand_in.token_answers = [Answer(200, {"id_token": renewed, "refresh_token": "rt-2"})]
    got = renew(stand_in, store, interactive=False)
    assert got == renewed
    found = cached_entry(store, stand_in)
    assert (found["id_token"], found["refresh_token"]) == (renewed, "rt-2")
    assert found["service"] == SERVICE, "the renewed login stays with its service"


PARTNER = "https://ccweb.partner.example"


@pytest.mark.parametrize("seconds_left", [3600, 30, -10], ids=["valid", "due-for-renewal", "expired"])
def test_a_login_made_for_another_service_is_neither_sent_nor_renewed(stand_in: StandIn, tmp_path: Path,
                                                                      seconds_left: int) -> None:
    stand_in.token_answers = [Answer(200, {"id_token": jwt(issuer=stand_in.issuer, nonce=None)})]
    store = Cache(tmp_path)
    planted = plant(store, stand_in, seconds_left=seconds_left)
    with pytest.raises(HelperError) as raised:
        renew(stand_in, store, interactive=False, service=PARTNER)
    assert raised.value.message == (
        f"you have not signed in for the ccweb service at {PARTNER} (a login is used only with the service it was "
        f"made for); run `ccweb-helper login --url {PARTNER}`."
    )
    assert stand_in.forms == [], "the refresh token was not used for the other service"
    assert logins(store.read()) == {entry_key(stand_in.login, SERVICE): planted}


def test_a_login_cached_without_a_service_belongs_to_none(stand_in: StandIn, tmp_path: Path) -> None:
    store = Cache(tmp_path)
    old = {k: v for k, v in plant(store, stand_in, seconds_left=3600).items() if k != "service"}
    store.write({"version": 1, "logins": {f"{stand_in.issuer} {CLIENT_ID}": old}})  # how it was once keyed
    for service in (SERVICE, PARTNER):
        with pytest.raises(HelperError, match=f"not signed in for the ccweb service at {service} "):
            renew(stand_in, store, interactive=False, service=service)
    assert stand_in.forms == []


def test_without_any_login_there_is_nothing_to_explain_here(stand_in: StandIn, tmp_path: Path) -> None:
    assert renew(stand_in, Cache(tmp_path), interactive=False) is None  # the caller names every token source


@pytest.mark.parametrize(("url", "key"), [
    ("https://ccweb.example.com", "https://ccweb.example.com"),
    ("https://CCWEB.Example.COM/", "https://ccweb.example.com"),
    ("https://ccweb.example.com:443", "https://ccweb.example.com"),
    ("https://ccweb.example.com:8443/ccweb/", "https://ccweb.example.com:8443/ccweb"),
    ("https://ccweb.example.com/Team", "https://ccweb.example.com/Team"),
    ("http://127.0.0.1:8700", "http://127.0.0.1:8700"),
    ("http://localhost:80/", "http://localhost"),
    ("http://[::1]:8700", "http://[::1]:8700"),
], ids=["plain", "case-and-slash", "default-port", "port-and-path", "path-case-kept", "loopback", "http-default-port",
        "ipv6"])
def test_a_service_is_known_by_its_scheme_host_port_and_path(url: str, key: str) -> None:
    assert service_key(parse_service_url(url, "CCWEB_URL")) == key


# ---------------------------------------------------------------------- device-flow polling


def start_device(idp: StandIn, expires_in: float = 30) -> None:
    idp.device_answer = Answer(200, {"device_code": "dc-1", "user_code": "ABCD-EFGH",
                                     "verification_uri": idp.issuer + "/device", "interval": 0.05,
                                     "expires_in": expires_in})


def test_device_polling_rides_out_outages_until_the_sign_in_completes(stand_in: StandIn) -> None:
    start_device(stand_in)
    signed_in = jwt(issuer=stand_in.issuer, nonce=None)
    stand_in.token_answers = [
        Answer(400, {"error": "authorization_pending"}),
        Answer(503, "<html>Service Unavailable</html>"),
        Answer(200, "<html>a captive portal</html>"),
        HANG,
        Answer(200, {}, drop=True),
        Answer(502, {"message": "bad gateway"}),
        Answer(400, "not json"),
        Answer(400, {"error": "authorization_pending"}),
        Answer(200, {"id_token": signed_in, "refresh_token": "rt-1"}),
    ]
    stderr = io.StringIO()
    found = sign_in(stand_in.login, {}, SECONDS, stderr=stderr, mode="device", clock=clock)
    assert (found["id_token"], found["refresh_token"]) == (signed_in, "rt-1")
    assert stand_in.grants("urn:ietf:params:oauth:grant-type:device_code") == 9
    assert "signed in to corp as alice" in stderr.getvalue()


def test_device_polling_that_never_succeeds_ends_when_the_code_expires(stand_in: StandIn) -> None:
    start_device(stand_in, expires_in=0.6)
    stand_in.token_answers = [Answer(503, "<html>Service Unavailable</html>")]
    started = time.monotonic()
    last = r"expired before it was used \(last: the identity provider 'corp' answered HTTP 503\); run"
    with pytest.raises(HelperError, match=last):
        sign_in(stand_in.login, {}, SECONDS, stderr=io.StringIO(), mode="device")
    assert time.monotonic() - started < GUARD  # with the code (0.6 s), not after LOGIN_SECONDS: a bound


@pytest.mark.parametrize(
    ("answer", "refused"),
    [(Answer(400, {"error": "access_denied"}), "was declined"),
     (Answer(400, {"error": "expired_token"}), "expired before it was used"),
     (Answer(401, {"error": "invalid_client"}), "refused the sign-in \\(invalid_client\\)")],
    ids=["access_denied", "expired_token", "invalid_client"],
)
def test_device_polling_ends_on_a_real_refusal(stand_in: StandIn, answer: Answer, refused: str) -> None:
    start_device(stand_in)
    stand_in.token_answers = [Answer(400, {"error": "authorization_pending"}), answer]
    with pytest.raises(HelperError, match=refused):
        sign_in(stand_in.login, {}, SECONDS, stderr=io.StringIO(), mode="device")
    assert stand_in.grants("urn:ietf:params:oauth:grant-type:device_code") == 2


@pytest.mark.parametrize(("extra", "ending"), [
    ({"source_identity": "repo-acme-app=0123456789abcdef0123", "source_identity_claim": "repository"},
     ", SourceIdentity repo-acme-app=0123456789abcdef0123"),
    ({"source_identity": None, "source_identity_claim": "employee_id"},
     "; refused: it takes the SourceIdentity from the claim 'employee_id', which your token lacks"),
    ({"source_identity": "alice@example.com", "session_tags": {"team": "payments", "cost-center": "42"}},
     ", SourceIdentity alice@example.com, session tags team=payments, cost-center=42"),
    ({"source_identity": "alice@example.com", "session_tags": {},
      "refused": "rule 'staff' sends the session tag team from the claim /org/team, which your token holds as a list"},
     "; refused: rule 'staff' sends the session tag team from the claim /org/team, which your token holds as a list"),
    ({}, ""),
], ids=["named", "claim-missing", "tagged", "refused-by-the-service", "older-service"])
def test_status_names_each_rule_s_source_identity_or_why_it_refuses(extra: dict[str, Any], ending: str) -> None:
    from ccweb_helper.account import _rule_line

    rule = {"rule": "staff", "access": "read", "repositories": ["app"], "role_arn": "arn:aws:iam::1:role/r", **extra}
    assert _rule_line(rule) == f"  rule staff: read access to app as arn:aws:iam::1:role/r{ending}"
