"""What the page's session holds, and its rules: who is signed in, until when, and a one-time notice.

The session is Starlette's signed cookie (``SessionMiddleware``, wrapped around the web routes only by
``ccweb.web``). It holds what the page needs and nothing else: the issuer's name, the subject, the claims the
policy decides on (``Policy.kept_claims``), when the sign-in ends, the digest of what decided which claims were
kept (``Policy.kept_claims_digest``) and the token that a state-changing form must carry back (``csrf``); never
a token, a code or a git credential. The cookie is signed, not encrypted: it holds nothing the person signed in
may not see (their own claims).

    signed_in(request, now)    → SignedIn | None   an ended one is cleared here, with a notice saying so
    recheck(request, policy)                        ends a session the running policy no longer vouches for
    take_notice(request)       → str | None        the one-time sentence the page shows once
    begin(request, signed)                          a new session: whatever the browser held before is dropped
    end(request, notice)                            signed out (the notice, if any, is shown once)
    unholdable(claims)         → str | None        why a session cannot hold these claims

A session ends (``recheck``, before every web route) when a reload turned sign-in off, changed ``web.issuer`` or
``web.client_id``, or took the client out of the issuer's audiences (``SIGN_IN_CHANGED``); and when it changed
what the claims kept depend on (``POLICY_CHANGED``): a deny entry on a claim the session did not keep would be
missed. A reload of anything else (repositories, roles, access) keeps it: the decisions on the kept claims are
then the decisions on the token's own.

Pure but for the session dictionary it reads and writes; the time is passed in. Nothing here revokes a copy of
the cookie: it is signed, not stored, so a copy taken before sign-out signs in until ``expires_at``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from starlette.requests import HTTPConnection

from ccweb.explain import MAX_CLAIMS_DEPTH
from ccweb.policy import Policy

SIGNED_IN: Final = "signed_in"
NOTICE: Final = "notice"
SESSION_ENDED = "Your session ended when your sign-in expired; sign in again to see your access."
SIGNED_OUT = "You are signed out."
POLICY_CHANGED = "The policy changed since you signed in; sign in again to see your access under it."
SIGN_IN_CHANGED = "This page's sign-in changed since you signed in (its issuer or client); you are signed out."


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A person signed in: what the page shows and decides on."""

    issuer: str
    """The ``issuers[]`` name the ID token came from."""
    subject: str
    claims: dict[str, Any]
    """``Policy.kept_claims`` of the ID token: what ``decide`` and ``explain`` need, nothing else."""
    expires_at: float
    """When the session ends: the ID token's ``exp``, or sooner when ``web.session_max_seconds`` says so."""
    signed_in_at: float
    claims_digest: str
    """``Policy.kept_claims_digest(issuer)`` at sign-in: what decided which claims were kept."""
    csrf: str
    """What a state-changing form (sign-out) must send back."""

    def stored(self) -> dict[str, Any]:
        """As the session cookie holds it (JSON)."""
        return asdict(self)

    @classmethod
    def restored(cls, value: object) -> SignedIn | None:
        """From what the cookie held; None for anything that is not what ``stored`` wrote (a cookie of an older
        version, say: the signature vouches that the service wrote it, not which version did)."""
        if not isinstance(value, Mapping):
            return None
        texts = ("issuer", "subject", "claims_digest", "csrf")
        times = ("expires_at", "signed_in_at")
        if (set(value) != {*texts, *times, "claims"} or not all(isinstance(value[k], str) for k in texts)
                or not all(_finite(value[k]) for k in times) or not isinstance(value["claims"], dict)):
            return None
        return cls(issuer=value["issuer"], subject=value["subject"], claims=value["claims"],
                   expires_at=float(value["expires_at"]), signed_in_at=float(value["signed_in_at"]),
                   claims_digest=value["claims_digest"], csrf=value["csrf"])


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _session(connection: HTTPConnection) -> dict[str, Any] | None:
    """The request's session; None where the route has none (no sign-in configured)."""
    if "session" not in connection.scope:
        return None
    session: dict[str, Any] = connection.session
    return session


def signed_in(connection: HTTPConnection, now: float) -> SignedIn | None:
    """Who is signed in, or None. A session that has ended (``expires_at`` passed) is cleared, and the page's
    next notice says so; one the service cannot read is cleared without a word."""
    session = _session(connection)
    if session is None or SIGNED_IN not in session:
        return None
    signed = SignedIn.restored(session[SIGNED_IN])
    if signed is None:
        end(connection, None)
        return None
    if now >= signed.expires_at:
        end(connection, SESSION_ENDED)
        return None
    return signed


def ended_by(policy: Policy, signed: SignedIn) -> str | None:
    """The notice that ends ``signed`` under the running ``policy``, or None while it holds (see the module)."""
    web, issuers = policy.config.web, policy.config.issuers
    issuer = next((i for i in issuers if i.name == signed.issuer), None)
    aud = signed.claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if (issuer is None or web.issuer != signed.issuer or web.client_id not in issuer.audiences
            or web.client_id not in audiences):
        return SIGN_IN_CHANGED
    if signed.claims_digest != policy.kept_claims_digest(signed.issuer):
        return POLICY_CHANGED
    return None


def recheck(connection: HTTPConnection, policy: Policy) -> None:
    """End the connection's session, with its notice, when ``ended_by`` says the running ``policy`` ends it."""
    session = _session(connection)
    if session is None or SIGNED_IN not in session:
        return
    signed = SignedIn.restored(session[SIGNED_IN])
    notice = None if signed is None else ended_by(policy, signed)
    if notice is not None:
        end(connection, notice)


def unholdable(claims: Mapping[str, Any]) -> str | None:
    """Why a session cannot hold ``claims`` (and the page could not show them), or None: text that is not Unicode
    (a lone surrogate, which JSON may escape and UTF-8 cannot encode) or nesting deeper than ``MAX_CLAIMS_DEPTH``.
    Iterative: a deep value costs no recursion."""
    level: list[tuple[object, int]] = [(dict(claims), 0)]
    while level:
        item, depth = level.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "text that is not valid Unicode"
        elif isinstance(item, dict | list):
            if depth >= MAX_CLAIMS_DEPTH:
                return f"values nested more than {MAX_CLAIMS_DEPTH} deep"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            level.extend((child, depth + 1) for child in children)
    return None


def take_notice(connection: HTTPConnection) -> str | None:
    """The one-time sentence for the page (``You are signed out.``), removed as it is taken."""
    session = _session(connection)
    notice = None if session is None else session.pop(NOTICE, None)
    return notice if isinstance(notice, str) else None


def give_notice(connection: HTTPConnection, notice: str) -> None:
    """Show ``notice`` once, on the next page."""
    session = _session(connection)
    if session is not None:
        session[NOTICE] = notice


def begin(connection: HTTPConnection, signed: SignedIn) -> None:
    """Sign ``signed`` in: the session starts afresh (a sign-in in progress, an earlier person, a notice: gone)."""
    session = _session(connection)
    if session is None:
        raise RuntimeError("the web routes have no session: sign-in needs web.session_secret")
    session.clear()
    session[SIGNED_IN] = signed.stored()


def end(connection: HTTPConnection, notice: str | None) -> None:
    """Sign out: the whole session goes (a sign-in in progress too); ``notice``, if any, is shown once."""
    session = _session(connection)
    if session is None:
        return
    session.clear()
    if notice is not None:
        session[NOTICE] = notice
