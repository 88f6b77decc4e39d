"""Where the helper finds the service URL and the token.

Service URL: ``CCWEB_URL``, else git config ``credential.<url>.ccwebUrl`` (most specific URL match), else
``ccweb.url``. Token, first found: ``CCWEB_TOKEN``, the file named by ``CCWEB_TOKEN_FILE``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from ccweb_helper.client import HelperError

MAX_TOKEN_BYTES = 64 * 1024


def _git_config(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "config", *args], capture_output=True, text=True, timeout=5, check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = result.stdout.strip()
    return value if result.returncode == 0 and value else None


def service_url(env: Mapping[str, str], url: str) -> tuple[str, str] | None:
    """``(url, where it came from)`` for the git remote ``url``, or None when nothing names a service."""
    value = env.get("CCWEB_URL", "").strip()
    if value:
        return value, "CCWEB_URL"
    value = _git_config("--get-urlmatch", "credential.ccweburl", url) or ""
    if value:
        return value, "git config credential.<url>.ccwebUrl"
    value = _git_config("--get", "ccweb.url") or ""
    if value:
        return value, "git config ccweb.url"
    return None


def _checked(token: str, source: str) -> str:
    token = token.strip()
    if not token:
        raise HelperError(f"{source} is empty; it must hold an OIDC token (a JWT).")
    if not token.isascii() or any(c.isspace() or not c.isprintable() for c in token):
        raise HelperError(f"{source} does not hold a single OIDC token (a JWT has no spaces or line breaks).")
    return token


def find_token(env: Mapping[str, str]) -> str:
    if env.get("CCWEB_TOKEN", "").strip():
        return _checked(env["CCWEB_TOKEN"], "CCWEB_TOKEN")
    path = env.get("CCWEB_TOKEN_FILE", "").strip()
    if path:
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_TOKEN_BYTES + 1)
        except OSError as exc:
            raise HelperError(
                f"cannot read the token file {path} named by CCWEB_TOKEN_FILE ({exc.strerror or exc})."
            ) from None
        if len(raw) > MAX_TOKEN_BYTES:
            raise HelperError(f"the token file {path} named by CCWEB_TOKEN_FILE is too large to hold a token.")
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise HelperError(f"the token file {path} named by CCWEB_TOKEN_FILE does not hold a token.") from None
        return _checked(text, f"the token file {path} named by CCWEB_TOKEN_FILE")
    raise HelperError(
        "no OIDC token found: set CCWEB_TOKEN to a token of your identity provider, or CCWEB_TOKEN_FILE to a "
        "file that holds one."
    )


def timeout(env: Mapping[str, str]) -> float:
    text = env.get("CCWEB_TIMEOUT", "").strip()
    if not text:
        return 10.0
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 600:
        raise HelperError(f"CCWEB_TIMEOUT must be a number of seconds between 0 and 600, not {text!r}.")
    return value
