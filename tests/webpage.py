"""The service's page (``ccweb.web.page``) in one process for its tests: ``home`` and the static files behind
Starlette's ``SessionMiddleware``, a running policy, a clock the test moves, and a way to be signed in as a set of
claims (``ccweb.web.session.begin``, as the sign-in does) without an identity provider; and a reader of the HTML
that answers what a person or a screen reader would notice."""

from __future__ import annotations

import asyncio
import html.parser
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ccweb.config import parse_config
from ccweb.reload import RunningPolicy
from ccweb.sessions import SessionCache
from ccweb.web import session
from ccweb.web.page import home
from ccweb.web.static import static_file
from support import RecordingSTS

ISSUER_URL = "https://idp.example.com"
ROLE = "arn:aws:iam::111122223333:role/ccweb-"
T0 = 1_800_000_000.0

PEOPLE: dict[str, dict[str, Any]] = {
    "alice": {"sub": "u-alice", "email": "alice@example.com", "email_verified": True, "groups": ["engineering"]},
    "bob": {"sub": "u-bob", "email": "bob@example.com", "email_verified": True, "groups": ["contractors"]},
    "mallory": {"sub": "u-mallory", "email": "mallory@example.net", "email_verified": True, "groups": []},
}


def policy(**extra: Any) -> dict[str, Any]:
    """The sandbox's policy, at a company: engineering writes everywhere, contractors read ``demo``."""
    return {
        "issuers": [{"name": "corp", "issuer": ISSUER_URL, "audiences": ["ccweb", "ccweb-web"],
                     "login": {"client_id": "ccweb-web"}}],
        "rules": [
            {"name": "developers", "issuer": "corp", "claims": {"groups": "engineering"},
             "role_arn": ROLE + "developers", "repositories": ["*"], "access": "write"},
            {"name": "contractors", "issuer": "corp",
             "claims": {"groups": "contractors", "email": {"pattern": r".+@example\.com"}},
             "role_arn": ROLE + "readers", "repositories": ["demo"], "access": "read"},
        ],
        **extra,
    }


@dataclass
class Context:
    """What ``home`` is given: the running policy and the clock."""

    running: RunningPolicy
    clock: Callable[[], float]


@dataclass
class PageClient:
    """The page app and an httpx client for it with its own cookie jar (one browser)."""

    config: dict[str, Any]
    now: float = T0
    base_url: str = "http://ccweb.test"
    root_path: str = ""
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    def __post_init__(self) -> None:
        self._http = httpx.AsyncClient()  # the verifier's (no token is verified here)
        self.running = RunningPolicy(parse_config(self.config), http=self._http,
                                     sessions=SessionCache(RecordingSTS()), clock=lambda: self.now)
        self.context = Context(self.running, lambda: self.now)
        self.app = page_app(self.context)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app, root_path=self.root_path),
                                        base_url=self.base_url)

    def get(self, path: str = "/", **params: str) -> httpx.Response:
        return self.loop.run_until_complete(self.client.get(path, params=params))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.request(method, path, **kwargs))

    def sign_in(self, claims: dict[str, Any] | str, *, lasting: float = 3600, digest: str | None = None) -> str:
        """Be signed in with ``claims`` (or a person of ``PEOPLE``) of issuer ``corp``, kept as the sign-in keeps
        them (``Policy.kept_claims``); returns the csrf token."""
        held = PEOPLE[claims] if isinstance(claims, str) else claims
        csrf = secrets.token_urlsafe(16)
        kept = self.running.current.policy.kept_claims("corp", {"iss": ISSUER_URL, "aud": "ccweb-web", **held})
        signed = session.SignedIn(
            issuer="corp", subject=str(held["sub"]), claims=kept,
            expires_at=self.now + lasting, signed_in_at=self.now,
            claims_digest=digest or self.running.current.policy.kept_claims_digest("corp"), csrf=csrf)
        response = self.request("POST", "/test/sign-in", json=signed.stored())
        assert response.status_code == 204, response.text
        return csrf

    def reload(self, config: dict[str, Any]) -> None:
        assert self.running.apply(parse_config(config))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self._http.aclose())
        self.loop.close()


def page_app(context: Context) -> Starlette:
    """``GET /`` and ``/static/{name}`` as the service serves them, and ``POST /test/sign-in`` (a session
    begun as the sign-in begins one)."""

    async def page(request: Request) -> Response:
        return await home(request, context)

    async def test_sign_in(request: Request) -> Response:
        signed = session.SignedIn.restored(await request.json())
        assert signed is not None
        session.begin(request, signed)
        return Response(status_code=204)

    return Starlette(routes=[
        Route("/", page, methods=["GET", "HEAD"]),
        Route("/static/{name}", static_file, methods=["GET", "HEAD"]),
        Route("/test/sign-in", test_sign_in, methods=["POST"]),
    ], middleware=[Middleware(SessionMiddleware, secret_key="a test secret of 32 bytes or more!", same_site="lax",
                              https_only=False)])


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    text: str = ""
    children: list[Element] = field(default_factory=list)
    parent: Element | None = field(default=None, repr=False)

    def get(self, name: str) -> str | None:
        return self.attrs.get(name)

    def walk(self) -> list[Element]:
        found = [self]
        for child in self.children:
            found += child.walk()
        return found

    @property
    def all_text(self) -> str:
        """The text a person reads in it, whitespace collapsed."""
        return " ".join(("".join(self._texts())).split())

    def _texts(self) -> list[str]:
        parts = [self.text]
        for child in self.children:
            parts += child._texts()
        return parts


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Tree(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs), parent=self.current)
        self.current.children.append(element)
        if tag not in VOID:
            self.current = element

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        text = Element("#text", {}, data, parent=self.current)
        self.current.children.append(text)


@dataclass
class Page:
    """A parsed page: find elements by id, tag, attribute."""

    root: Element

    @classmethod
    def of(cls, response: httpx.Response) -> Page:
        tree = _Tree()
        tree.feed(response.text)
        tree.close()
        return cls(tree.root)

    def all(self, tag: str | None = None, **attrs: str | None) -> list[Element]:
        """Elements of ``tag`` (any, if None) whose attributes hold ``attrs`` (a value of None: present)."""
        names = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [e for e in self.root.walk() if not e.tag.startswith("#") and (tag is None or e.tag == tag)
                and all(n in e.attrs and (v is None or e.attrs[n] == v) for n, v in names.items())]

    def by_id(self, id_: str) -> Element | None:
        found = self.all(id=id_)
        assert len(found) <= 1, f"id {id_!r} is used {len(found)} times"
        return found[0] if found else None

    def text_of(self, id_: str) -> str:
        element = self.by_id(id_)
        assert element is not None, f"no #{id_}"
        return element.all_text
