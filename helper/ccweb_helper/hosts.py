"""CodeCommit host and repository-path parsing, shared by the helper and the service.

Pure functions, standard library only, no I/O. A host is recognised only when the whole name matches one
of the anchored forms below; anything else (``git-codecommit.us-east-1.amazonaws.com.evil.example``,
``evil-git-codecommit.us-east-1.amazonaws.com``, a trailing dot, userinfo) is not a CodeCommit host.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple

REGION_PATTERN = r"[a-z]{2}(?:-[a-z]{3,5})?-[a-z]+-[1-9][0-9]?"
"""An AWS region name (``us-east-1``, ``us-gov-west-1``, ``cn-north-1``): regular-expression source, no anchors."""
REPOSITORY_NAME_CHARACTERS = "A-Za-z0-9._-"
"""The characters of a CodeCommit repository name, as the inside of a regular-expression character class."""
REPOSITORY_NAME_MAX = 100
REPOSITORY_NAME_PATTERN = f"[{REPOSITORY_NAME_CHARACTERS}]{{1,{REPOSITORY_NAME_MAX}}}"
"""A repository name: regular-expression source, no anchors (``.`` and ``..`` are refused separately)."""

_REGION = r"(?P<region>" + REGION_PATTERN + ")"
_PORT = r"(?::(?P<port>[0-9]{1,5}))?"

# Compiled when first needed (``_compiled``): the helper starts for every git command and usually needs one.
_HOST_FORMS: tuple[tuple[str, str], ...] = (
    ("standard", r"git-codecommit\." + _REGION + r"\.amazonaws\.com" + _PORT),
    ("fips", r"git-codecommit-fips\." + _REGION + r"\.amazonaws\.com" + _PORT),
    ("china", r"git-codecommit\.(?P<region>cn-[a-z]+-[1-9])\.amazonaws\.com\.cn" + _PORT),
    (
        "vpce",
        r"vpce-[0-9a-z]{8,17}-[0-9a-z]{8}(?:-[a-z]{2}(?:-[a-z]+)?-[a-z]+-[1-9][a-z])?"
        r"\.git-codecommit(?:-fips(?![^:]*\.cn(?::|$)))?\."  # no FIPS endpoints in China
        + _REGION + r"\.vpce\.amazonaws\.com(?:\.cn)?" + _PORT,
    ),
)
_REPO_PATH = r"/?v1/repos/(?P<name>" + REPOSITORY_NAME_PATTERN + r")/?"
_patterns: dict[str, re.Pattern[str]] = {}


def _compiled(source: str) -> re.Pattern[str]:
    pattern = _patterns.get(source)
    if pattern is None:
        pattern = _patterns[source] = re.compile(source)
    return pattern


if TYPE_CHECKING:

    class CodeCommitHost(NamedTuple):
        """A recognised CodeCommit endpoint: the host name without port (what is signed) and its region."""

        hostname: str
        port: int | None
        region: str
        form: str

else:  # the same tuple without importing typing at run time
    from collections import namedtuple

    CodeCommitHost = namedtuple("CodeCommitHost", "hostname port region form")


def split_host(host: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 in brackets) into a lower-case name and a port.

    Raises ValueError for anything that is not a plain host name with an optional numeric port.
    """
    host = host.strip().lower()
    if not host or not host.isascii() or any(c in host for c in "/@?#\\ \t\r\n"):
        raise ValueError("not a host name")
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise ValueError("unterminated IPv6 address")
        name, rest = host[: end + 1], host[end + 1 :]
    else:
        name, sep, port_text = host.partition(":")
        rest = sep + port_text
    if not rest:
        return name, None
    if not rest.startswith(":") or not rest[1:].isdigit() or len(rest) > 6:
        raise ValueError("not a numeric port")
    port = int(rest[1:])
    if not 0 < port < 65536:
        raise ValueError("port out of range")
    return name, port


def parse_codecommit_host(host: str) -> CodeCommitHost | None:
    """Return the CodeCommit endpoint named by ``host`` (``name[:port]``), or None if it is not one."""
    text = host.strip()
    if not text.isascii():  # lower() would turn e.g. U+212A (Kelvin sign) into "k"
        return None
    text = text.lower()
    for form, source in _HOST_FORMS:
        match = _compiled(source).fullmatch(text)
        if match:
            port_text = match.group("port")
            port = int(port_text) if port_text else None
            if port is not None and not 0 < port < 65536:
                return None
            hostname = text.split(":", 1)[0]
            return CodeCommitHost(hostname, port, match.group("region"), form)
    return None


def parse_repository_path(path: str) -> str | None:
    """Return the repository name of a ``v1/repos/<name>`` path (leading/trailing slash allowed), or None."""
    match = _compiled(_REPO_PATH).fullmatch(path.strip())
    if match is None:
        return None
    name = match.group("name")
    return None if name in (".", "..") else name


def is_loopback(hostname: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost (names without port, IPv6 with or without brackets)."""
    name = hostname.lower().strip("[]")
    if name in ("localhost", "::1"):
        return True
    parts = name.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and int(p) < 256 for p in parts)
