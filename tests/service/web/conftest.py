"""The sign-in's tests: ``idp``, the development issuer on loopback (one per module, reset for each test), and
``web`` / ``make_web``, the app signing in there (tests/websignin.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support import serve
from websignin import SESSION_SECRET, IdP, Web, web_policy


@pytest.fixture(scope="module")
def idp_server() -> Iterator[IdP]:
    idp = IdP()
    with serve(idp) as url:
        idp.issuer.issuer_url = idp.issuer.login.issuer_url = url
        yield idp


@pytest.fixture
def idp(idp_server: IdP) -> Iterator[IdP]:
    idp_server.reset()
    yield idp_server
    idp_server.reset()


@pytest.fixture
def make_web(tmp_path: Path, idp: IdP) -> Iterator[Callable[..., Web]]:
    """``make_web(secret=…, **web)``: an app signing in at ``idp`` with ``web:`` changed by ``web``; or
    ``make_web(policy=…)`` for a policy of the test's own."""
    made: list[Web] = []

    def make(*, policy: dict[str, Any] | None = None, secret: bytes | None = SESSION_SECRET, **web: Any) -> Web:
        chosen = policy if policy is not None else web_policy(idp.url, tmp_path, idp.client_secret, **web)
        opened = Web(chosen, secret)
        made.append(opened)
        return opened

    yield make
    for opened in made:
        opened.close()


@pytest.fixture
def web(make_web: Callable[..., Web]) -> Web:
    """The sandbox's policy and web: block, signing in at the development issuer."""
    return make_web()
