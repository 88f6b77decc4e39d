"""CodeCommit git passwords: SigV4 over the ``GIT`` pseudo-request, exactly as the AWS CLI computes them.

Pure: the clock is a parameter. The canonical request is ``GIT\\n<path>\\n\\nhost:<host>\\n\\nhost\\n`` with
the host name *without* its port, the string-to-sign timestamp has no trailing ``Z``, and the password is
``<timestamp>Z<hex signature>``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

SERVICE = "codecommit"
PASSWORD_LIFETIME_SECONDS = 15 * 60


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    expiration: datetime | None = None

    def __repr__(self) -> str:  # never let a secret reach a log through repr()
        return f"AwsCredentials(access_key_id={self.access_key_id!r}, expiration={self.expiration!r})"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.digest(key, message.encode(), "sha256")


def git_username(credentials: AwsCredentials) -> str:
    if credentials.session_token:
        return f"{credentials.access_key_id}%{credentials.session_token}"
    return credentials.access_key_id


def git_password(secret_access_key: str, *, hostname: str, path: str, region: str, now: datetime) -> str:
    """The password for ``hostname`` (no port) and the repository ``path`` (``/v1/repos/<name>``)."""
    if not path.startswith("/"):
        path = "/" + path
    timestamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    day = timestamp[:8]
    canonical_request = f"GIT\n{path}\n\nhost:{hostname}\n\nhost\n"
    scope = f"{day}/{region}/{SERVICE}/aws4_request"
    string_to_sign = "\n".join(
        ("AWS4-HMAC-SHA256", timestamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
    )
    key = _hmac(("AWS4" + secret_access_key).encode(), day)
    key = _hmac(key, region)
    key = _hmac(key, SERVICE)
    key = _hmac(key, "aws4_request")
    signature = _hmac(key, string_to_sign).hex()
    return f"{timestamp}Z{signature}"


def parse_password_time(password: str) -> datetime | None:
    """The signing time encoded in a CodeCommit password, or None if it is not one."""
    timestamp, sep, signature = password.partition("Z")
    if not sep or len(signature) != 64:
        return None
    try:
        return datetime.strptime(timestamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
