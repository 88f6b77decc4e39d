"""``FastRoutes``: the innermost of the app's middlewares, serving a few routes ahead of FastAPI's own layers.

A request for one of ``routes`` (``POST /v1/credentials``, the call behind every git command) goes from the
app's middlewares straight to its route, skipping what FastAPI puts between them and the router (the exception
layer, a per-request exit stack) and the router's scan: those cost more than the rest of a warm request. Added
first, it stays the innermost: every middleware added later with ``add_middleware`` wraps these routes too. The
routes stay in the router as well, which answers the same (a 405 for another method, for instance).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send


class FastRoutes:
    def __init__(self, app: ASGIApp, *, routes: Sequence[Route]) -> None:
        self.app = app
        self.routes = tuple(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)  # names the route, as the router would (the metrics label it by)
                    await route.app(scope, receive, send)
                    return
        await self.app(scope, receive, send)
