"""A development OIDC issuer: discovery, a key set, tokens minted for demo users, and interactive login
(authorization code + PKCE, device flow, refresh) for the public client ``ccweb-cli`` and the confidential
client ``ccweb-web`` (the web page's sign-in). Loopback only."""

from __future__ import annotations

import secrets
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ccweb.sandbox.oauth import CLIENT_ID, WEB_CLIENT_ID, DevLogin, sandbox_clients

__all__ = ["CLIENT_ID", "DEMO_USERS", "WEB_CLIENT_ID", "DevIssuer"]

DEMO_USERS: dict[str, dict[str, Any]] = {
    "alice": {"email": "alice@example.com", "name": "Alice Developer", "groups": ["engineering"]},
    "bob": {"email": "bob@example.com", "name": "Bob Contractor", "groups": ["contractors"]},
    "mallory": {"email": "mallory@example.net", "name": "Mallory Outsider", "groups": []},
}


class DevIssuer:
    """``web_client_secret``: the confidential client ``ccweb-web``'s secret (random when not given)."""

    def __init__(self, issuer_url: str, audience: str = "ccweb", *, web_client_secret: str | None = None) -> None:
        self.issuer_url = issuer_url.rstrip("/")
        self.audience = audience
        self.key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8), "use": "sig"})
        self.web_client_secret = web_client_secret or secrets.token_urlsafe(32)
        self.login = DevLogin(self.issuer_url, DEMO_USERS, self._mint_login, sandbox_clients(self.web_client_secret))

    def mint(self, claims: dict[str, Any], *, ttl: int = 3600, now: float | None = None,
             audience: str | None = None) -> str:
        """A signed RS256 ID token with ``claims`` over the standard ones (iss, aud, iat, nbf, exp)."""
        issued = int(time.time() if now is None else now)
        payload = {
            "iss": self.issuer_url, "aud": audience or self.audience, "iat": issued, "nbf": issued,
            "exp": issued + ttl, **claims,
        }
        return jwt.encode({"alg": "RS256", "kid": self.key.kid, "typ": "JWT"}, payload, self.key)

    def mint_user(self, user: str, *, ttl: int = 3600, now: float | None = None) -> str:
        return self.mint({"sub": f"dev|{user}", **DEMO_USERS[user]}, ttl=ttl, now=now)

    def _mint_login(self, user: str, audience: str, nonce: str | None) -> str:
        claims = {"sub": f"dev|{user}", **DEMO_USERS[user], **({"nonce": nonce} if nonce else {})}
        return self.mint(claims, ttl=self.login.id_token_ttl, audience=audience)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False)]}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer_url,
            "jwks_uri": f"{self.issuer_url}/jwks",
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            **self.login.metadata(),
        }

    def app(self) -> Starlette:
        async def configuration(_: Request) -> JSONResponse:
            return JSONResponse(self.discovery())

        async def jwks(_: Request) -> JSONResponse:
            return JSONResponse(self.jwks())

        async def demo_token(request: Request) -> JSONResponse:
            user = request.query_params.get("user", "alice")
            if user not in DEMO_USERS:
                return JSONResponse(
                    {"error": "invalid_request", "detail": f"demo users are: {', '.join(DEMO_USERS)}"}, 400
                )
            return JSONResponse({"id_token": self.mint_user(user), "token_type": "Bearer"})

        return Starlette(routes=[
            Route("/.well-known/openid-configuration", configuration),
            Route("/jwks", jwks),
            Route("/demo-token", demo_token),
            *self.login.routes(),
        ])
