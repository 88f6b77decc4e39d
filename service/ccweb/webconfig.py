"""The policy file's ``web:`` settings: the service's own page and its single sign-on.

Without ``web.issuer`` the page still shows set-up and CI snippets, with no sign-in. With it, the page signs
people in with the authorization code flow (PKCE) at that issuer, as the client ``client_id``, which must be one
of the issuer's audiences: the ID token is checked by the API's own verifier. Secrets are never in the policy
file: ``client_secret`` and ``session_secret`` name where they are (a file or an environment variable), read
once when the service starts (``read_secret``), the same on every replica.

Pure models and checks; ``read_secret`` is the one edge that reads a file or the environment. ``Config`` checks
the references with ``web_problems`` (each line names its key).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ccweb.configbase import ConfigError, oauth_scopes
from ccweb_helper.hosts import is_loopback

MIN_SESSION_SECRET_BYTES = 32
"""What ``read_secret`` needs at least for the session secret (which signs the session cookie)."""
MAX_SECRET_BYTES = 4096
"""What ``read_secret`` reads at most: far more than any secret, far less than a device file named by mistake."""
CALLBACK_PATH = "/auth/callback"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IssuerLike(Protocol):
    """An ``issuers[]`` entry: its name and the audiences its tokens may carry."""

    @property
    def name(self) -> str: ...

    @property
    def audiences(self) -> list[str]: ...


class SecretSource(_Model):
    """Where a secret is: ``{file: /absolute/path}`` or ``{env: VARIABLE}``, exactly one."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    file: str | None = Field(default=None, json_schema_extra={"pattern": "^/"})
    env: Annotated[str, Field(pattern=ENV_NAME.pattern.join("^$"))] | None = None

    @field_validator("file")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or "\x00" in value):
            raise ValueError(f"{value!r} is not an absolute path (a relative one would depend on the directory "
                             "the service starts in)")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretSource:
        if (self.file is None) == (self.env is None):
            raise ValueError("name exactly one of file (a path) or env (an environment variable)")
        return self


def _public_url(value: str) -> str:
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError(f"{value!r} is not a URL of printable ASCII characters without spaces")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r} is not an https URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"{value!r} must be https (http is allowed only on loopback: 127.0.0.1, localhost, [::1]), "
                         "or the session cookie would travel in the clear")
    if parts.query or parts.fragment or parts.username or parts.password or "?" in value or "#" in value:
        raise ValueError(f"{value!r} must not carry a query, fragment or user name (a path prefix is fine)")
    if "\\" in value or urlsplit(value.rstrip("/")).path.startswith("//"):
        raise ValueError(f"{value!r} has a path that starts with // or holds a backslash: the page's links and "
                         "redirects would lead browsers to another host (write the path with single slashes)")
    return value.rstrip("/")


class WebSettings(_Model):
    """``web:``: the service's page; with ``issuer``, sign-in there as the client ``client_id``."""

    issuer: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    """The name of an ``issuers[]`` entry people sign in at; unset: the page has no sign-in."""
    client_id: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[\x21-\x7e]+$")] | None = None
    """The page's client at that issuer; one of the issuer's audiences."""
    client_secret: SecretSource | None = None
    """A confidential client's secret; unset: a public client (PKCE alone)."""
    scopes: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: ["openid", "email", "profile"])
    public_url: str | None = Field(default=None, json_schema_extra={"pattern": "^https?://[^?#]+$"})
    """The URL people open, which the redirect URI is made of (``<public_url>/auth/callback``); also what the
    page's snippets name; unset (and without sign-in): the URL of each request."""
    session_secret: SecretSource | None = None
    """What signs the session cookie: the same on every replica."""
    session_max_seconds: Annotated[int, Field(strict=True, ge=300, le=86400)] = 28800
    """The longest a session lasts; the ID token's expiry ends it sooner."""

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        return oauth_scopes(value, "sign-in asks for an ID token")

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _public_url(value)

    @model_validator(mode="after")
    def _sign_in_keys(self) -> WebSettings:
        problems = []
        if self.issuer is not None:
            problems += [f"{key}: required with issuer (sign-in)" for key in ("client_id", "public_url",
                                                                              "session_secret")
                         if getattr(self, key) is None]
        else:
            problems += [f"{key}: only used for sign-in: set issuer too, or remove it"
                         for key in ("client_id", "client_secret", "scopes", "session_secret", "session_max_seconds")
                         if key in self.model_fields_set]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def sign_in(self) -> bool:
        return self.issuer is not None


def web_problems(web: WebSettings, issuers: Sequence[IssuerLike]) -> list[str]:
    """``web.<key>: …`` lines for what ``web:`` refers to and cannot find (empty when all is well)."""
    if web.issuer is None:
        return []
    issuer = next((i for i in issuers if i.name == web.issuer), None)
    if issuer is None:
        return [f"web.issuer: no issuer is named {web.issuer!r}"]
    if web.client_id not in issuer.audiences:
        return [f"web.client_id: {web.client_id!r} is not one of the audiences of issuer {issuer.name!r} (the ID "
                "token's aud is the client id it was issued to, and the service checks it as any token's)"]
    return []


def redirect_uri(web: WebSettings) -> str:
    """The URI to register at the issuer, and to send it as ``redirect_uri``: ``<public_url>/auth/callback``."""
    if web.public_url is None:
        raise ValueError("web.public_url is not set")
    return web.public_url + CALLBACK_PATH


def read_secret(source: SecretSource, key: str, env: Mapping[str, str] = os.environ, *, minimum: int = 1) -> bytes:
    """The secret ``source`` names, as bytes; ConfigError with one sentence naming ``key`` (``web.session_secret``)
    and the file or variable, never the value. A file's one trailing newline (``echo`` writes one) is not part of
    the secret. ``minimum``: the fewest bytes accepted (``MIN_SESSION_SECRET_BYTES`` for the session secret)."""
    if source.env is not None:
        where = f"the environment variable {source.env}"
        if source.env not in env:
            raise ConfigError([f"{key}: {where} is not set"])
        value = os.fsencode(env[source.env])
    elif source.file is None:  # pragma: no cover - exactly one, validated when the model was built
        raise ValueError(source)
    else:
        where = f"the file {source.file}"
        try:
            with open(source.file, "rb") as handle:
                value = handle.read(MAX_SECRET_BYTES + 1)
        except FileNotFoundError:
            raise ConfigError([f"{key}: {where} does not exist"]) from None
        except OSError as exc:
            raise ConfigError([f"{key}: cannot read {where}: {exc.strerror}"]) from None
        value = value.removesuffix(b"\n").removesuffix(b"\r") if value.endswith(b"\n") else value
    if not value:
        raise ConfigError([f"{key}: {where} is empty"])
    if len(value) > MAX_SECRET_BYTES:
        raise ConfigError([f"{key}: {where} holds more than {MAX_SECRET_BYTES} bytes; no secret is that long"])
    if len(value) < minimum:
        raise ConfigError([f"{key}: {where} holds fewer than {minimum} bytes; make one with "
                           f"`openssl rand -base64 {minimum + minimum // 2}`"])
    return value
