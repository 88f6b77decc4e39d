"""What the page's session holds, and its rules: who is signed in, until when, and a one-time notice.

The session is Starlette's signed cookie (``SessionMiddleware``, wrapped around the web routes only by
``ccweb.web``). It holds what the page needs and nothing else: the issuer's name, the subject, the claims the
policy decides on (``Policy.kept_claims``), when the sign-in ends, the policy's digest at sign-in and the token
that a state-changing form must carry back (``csrf``); never a token, a code or a git credential. The cookie
is signed, not encrypted: it holds nothing the person signed in may not see (their own claims).

    signed_in(request, now)    → SignedIn | None   an ended one is cleared here, with a notice saying so
    take_notice(request)       → str | None        the one-time sentence the page shows once
    begin(request, signed)                          a new session: whatever the browser held before is dropped
    end(request, notice)                            signed out (the notice, if any, is shown once)

Pure but for the session dictionary it reads and writes; the time is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from starlette.requests import HTTPConnection

SIGNED_IN: Final = "signed_in"
NOTICE: Final = "notice"
SESSION_ENDED = "Your session ended when your sign-in expired; sign in again to see your access."
SIGNED_OUT = "You are signed out."


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
    policy_digest: str
    """The policy's digest at sign-in (the page asks to sign in again when the running one differs)."""
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
        texts = ("issuer", "subject", "policy_digest", "csrf")
        times = ("expires_at", "signed_in_at")
        if (set(value) != {*texts, *times, "claims"} or not all(isinstance(value[k], str) for k in texts)
                or not all(_finite(value[k]) for k in times) or not isinstance(value["claims"], dict)):
            return None
        return cls(issuer=value["issuer"], subject=value["subject"], claims=value["claims"],
                   expires_at=float(value["expires_at"]), signed_in_at=float(value["signed_in_at"]),
                   policy_digest=value["policy_digest"], csrf=value["csrf"])


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
