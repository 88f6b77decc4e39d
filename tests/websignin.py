"""For the sign-in's tests (tests/service/web): the app as ``ccweb serve`` builds it (``create_app`` with a
session secret), served in this process over httpx's ASGI transport to one or more ``Browser``s (each with its
own cookies), and the sandbox's development issuer on loopback as the identity provider (``IdP``), whose next ID
tokens a test may change (``IdP.tamper``) and whose answers it records (``IdP.answers``: the secrets a leak test
looks for)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from fastapi import FastAPI
from joserfc import jws

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.outbound import outbound_client
from ccweb.sandbox.dev import sandbox_policy, sandbox_web, write_web_secrets
from ccweb.sandbox.issuer import DEMO_USERS, DevIssuer
from support import RecordingSTS
from webpage import Page

APP_URL = "http://127.0.0.1:8700"
"""Where the browsers think the app is (nothing listens there: the ASGI transport serves it); loopback http, the
only redirect the development issuer allows."""
SESSION_SECRET = b"a session secret for the tests, 48 bytes long!!!"
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cross-origin-opener-policy": "same-origin",
}

Claims = dict[str, Any]


class Clock:
    """The app's clock: this machine's, moved on by the test (the ID tokens are minted on this machine's)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


class IdP:
    """The development issuer, on loopback: the sandbox's sign-in page and token endpoint for ``ccweb-web``.

    ``tamper(claims) -> claims`` changes the claims of the next ID tokens (None: as the sandbox mints them);
    ``audience`` replaces their ``aud``; ``escaped`` signs their payload as JSON written with ``\\u`` escapes, as
    an identity provider may, so that it can carry what UTF-8 cannot (a lone surrogate). Every token endpoint
    answer is kept in ``answers``."""

    def __init__(self) -> None:
        self.issuer = DevIssuer("http://127.0.0.1")  # its real address is known once it listens
        self.issuer.login.mint = self._mint
        self.users: dict[str, Claims] = dict(DEMO_USERS)
        self.tamper: Callable[[Claims], Claims] | None = None
        self.audience: str | None = None
        self.escaped = False
        self.ttl = 3600
        self.answers: list[dict[str, Any]] = []
        self.asked: list[str] = []
        self._inner = self.issuer.app()

    @property
    def url(self) -> str:
        return self.issuer.issuer_url

    @property
    def client_secret(self) -> str:
        return self.issuer.web_client_secret

    def reset(self) -> None:
        self.users, self.tamper, self.audience, self.ttl, self.escaped = dict(DEMO_USERS), None, None, 3600, False
        self.answers.clear()
        self.asked.clear()

    def _mint(self, user: str, audience: str, nonce: str | None) -> str:
        claims: Claims = {"sub": f"dev|{user}", **self.users[user], **({"nonce": nonce} if nonce else {})}
        if self.tamper is not None:
            claims = self.tamper(claims)
        if not self.escaped:
            return self.issuer.mint(claims, ttl=self.ttl, audience=self.audience or audience)
        now, key = int(time.time()), self.issuer.key
        payload = {"iss": self.url, "aud": self.audience or audience, "iat": now, "nbf": now, "exp": now + self.ttl,
                   **claims}
        return jws.serialize_compact({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, json.dumps(payload).encode(), key)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        inner = self._inner
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        self.asked.append(scope["path"])
        body = bytearray()

        async def record(message: Any) -> None:
            if message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if scope["path"] == "/token" and not message.get("more_body"):
                    self.answers.append(json.loads(bytes(body)))
            await send(message)

        await inner(scope, receive, record)


def web_policy(idp_url: str, workdir: Path, client_secret: str, **web: Any) -> dict[str, Any]:
    """The sandbox's policy with its ``web:`` block (the secrets as files in ``workdir``), changed by ``web``."""
    write_web_secrets(workdir, client_secret)
    return sandbox_policy(idp_url, "git.example.com", {**sandbox_web(APP_URL, workdir), **web})


@dataclass
class Web:
    """The app, its clock and loop; ``browser()`` opens one more browser on it."""

    policy: dict[str, Any]
    secret: bytes | None = SESSION_SECRET
    clock: Clock = field(default_factory=Clock)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    browsers: list[Browser] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.http = outbound_client(timeout=httpx.Timeout(5.0))
        self.app: FastAPI = create_app(parse_config(self.policy), sts=RecordingSTS(), http=self.http,
                                       clock=self.clock.now, web_session_secret=self.secret)
        self._lifespan = self.app.router.lifespan_context(self.app)  # started and ended as a server would
        self.run(self._lifespan.__aenter__())

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    def browser(self, base_url: str | None = None) -> Browser:
        opened = Browser(self, base_url or self.policy.get("web", {}).get("public_url") or APP_URL)
        self.browsers.append(opened)
        return opened

    def close(self) -> None:
        for opened in self.browsers:
            self.run(opened.client.aclose())
        self.run(self._lifespan.__aexit__(None, None, None))
        self.run(self.http.aclose())
        self.loop.close()


class Browser:
    """One browser: its own cookies; every answer the app gave it is in ``seen``."""

    def __init__(self, web: Web, base_url: str) -> None:
        self.web = web
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=web.app), base_url=base_url)
        self.seen: list[httpx.Response] = []

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self.web.run(self.client.request(method, url, **kwargs))
        self.seen.append(response)
        return response

    def get(self, url: str = "/", **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def callback(self, user: str = "alice") -> str:
        """Sign in as far as the identity provider's answer: the callback URL it sends the browser to (not visited)."""
        login = self.get("/auth/login")
        assert login.status_code == 302, login.text
        authorize = login.headers["location"]
        parts = urlsplit(authorize)
        with quiet("httpx", "httpcore"), httpx.Client(trust_env=False, timeout=30) as client:
            # the person picks a user on the issuer's page (what their browser and the issuer log is not the app's)
            answer = client.post(f"{parts.scheme}://{parts.netloc}{parts.path}",
                                 data={**dict(parse_qsl(parts.query)), "user": user})
        assert answer.status_code == 303, answer.text
        location: str = answer.headers["location"]
        return location

    def sign_in(self, user: str = "alice") -> httpx.Response:
        """The whole sign-in as ``user``: the callback's answer."""
        return self.get(self.callback(user))

    def page(self) -> Page:
        response = self.get("/")
        assert response.status_code == 200, response.text
        return Page.of(response)

    def who(self) -> str | None:
        """The identity the page shows this browser as signed in (None: signed out)."""
        found = self.page().all(data_identity=None)
        return found[0].get("data-identity") if found else None

    def csrf(self) -> str:
        [field_] = self.page().all("input", name="csrf")
        value = field_.get("value")
        assert value
        return value

    def session(self) -> dict[str, Any]:
        """What this browser's session cookie holds (it is signed, not encrypted: the browser can read it)."""
        value = next((c.value for c in self.client.cookies.jar if c.name in ("ccweb", "__Host-ccweb")), None)
        if value is None:
            return {}
        payload = value.split(".")[0]
        decoded: dict[str, Any] = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
        return decoded


@contextlib.contextmanager
def quiet(*names: str) -> Iterator[None]:
    """The loggers ``names`` at WARNING for a while (what the test's own clients would log at DEBUG)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def app_log(records: list[logging.LogRecord]) -> str:
    """The log lines the app wrote (not the lines httpx writes for the browsers' own requests to it)."""
    return "\n".join(r.getMessage() for r in records
                     if not (r.name == "httpx" and f" {APP_URL}/" in r.getMessage()))


def shown(browser: Browser) -> tuple[str | None, str | None]:
    """(the identity the page shows as signed in, its notice) of one page load (a notice is shown once)."""
    page = browser.page()
    found, notice = page.all(data_identity=None), page.by_id("notice")
    return (found[0].get("data-identity") if found else None), (None if notice is None else notice.all_text)


def message(response: httpx.Response) -> str:
    """The sentence of a message page."""
    return Page.of(response).text_of("message")
