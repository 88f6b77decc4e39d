"""CodeCommit host forms, host names and repository paths, shared by the helper and the service.

Pure functions, standard library only, no I/O. ``HOST_FORMS`` is the one table of the names AWS gives
CodeCommit's git endpoints. Each form has the anchored pattern that recognises it (the service signs for these
hosts and no other CodeCommit-looking name; the helper answers for them), the git URL pattern
``ccweb-helper setup`` writes for it, and a sample host ``doctor`` asks git about.

The two columns agree by construction: git's ``*`` in a credential URL matches exactly one label of any
content, and each ``*`` stands where the pattern allows exactly one label (the region, the endpoint's id);
every other label and the suffix are spelled the same in both; git matches the port exactly (the default
dropped), so a CodeCommit host is recognised only on https's own port (none, or ``:443``). Only forms AWS
has are recognised: FIPS endpoints and ``.amazonaws.com`` outside China, ``.amazonaws.com.cn`` in China
(``cn-`` regions), which has no FIPS endpoints. tests/helper/test_host_table.py checks both directions with
the real git.

Anything else (``git-codecommit.us-east-1.amazonaws.com.evil.example``, ``evil-git-codecommit.us-east-1
.amazonaws.com``, a trailing dot, userinfo, another port) is not a CodeCommit host.
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

_PORT = r"(?::(?P<port>443))?"
_AWS = r"(?!cn-)"  # the aws partitions: every region but China's
_CHINA = r"(?=cn-)"
# A VPC endpoint's DNS name: its id, a suffix of its own, and for a zonal name the availability zone, whose
# region is the endpoint's (``(?(zone)…)``: the region label must then repeat it).
_VPCE = r"vpce-[0-9a-z]{8,17}-[0-9a-z]{8}(?:-(?P<zone>" + REGION_PATTERN + r")[a-z])?"


def _region(partition: str, *, zonal: bool = False) -> str:
    """The ``region`` group: a region of ``partition`` (``_AWS`` or ``_CHINA``); for a zonal VPC endpoint name,
    its zone's region."""
    if zonal:
        return f"(?P<region>{partition}(?(zone)(?P=zone)|{REGION_PATTERN}))"
    return f"(?P<region>{partition}{REGION_PATTERN})"


if TYPE_CHECKING:

    class HostForm(NamedTuple):
        """One form of CodeCommit host name."""

        name: str  # "standard", "fips", "china", "vpce", "vpce-fips", "vpce-china"
        what: str  # for people: "CodeCommit FIPS VPC endpoint"
        pattern: str  # regular-expression source of ``host[:port]``, lower case, full match; groups region, port
        git_url: str  # the credential URL pattern `ccweb-helper setup` writes
        sample: str  # a host of this form, for `doctor` and the tests

    class CodeCommitHost(NamedTuple):
        """A recognised CodeCommit endpoint: the host name without port (what is signed) and its region."""

        hostname: str
        port: int | None
        region: str
        form: str

else:  # the same tuples at run time, without typing, nor the 0.1 ms collections.namedtuple takes per class
    from operator import itemgetter

    class HostForm(tuple):
        __slots__ = ()
        name = property(itemgetter(0))
        what = property(itemgetter(1))
        pattern = property(itemgetter(2))
        git_url = property(itemgetter(3))
        sample = property(itemgetter(4))

        def __new__(cls, name, what, pattern, git_url, sample):
            return tuple.__new__(cls, (name, what, pattern, git_url, sample))

    class CodeCommitHost(tuple):
        __slots__ = ()
        hostname = property(itemgetter(0))
        port = property(itemgetter(1))
        region = property(itemgetter(2))
        form = property(itemgetter(3))

        def __new__(cls, hostname, port, region, form):
            return tuple.__new__(cls, (hostname, port, region, form))


# The most common first: `get` compiles a form's pattern only when a host gets that far (``_compiled``).
HOST_FORMS: tuple[HostForm, ...] = (
    HostForm(
        "standard", "CodeCommit",
        r"git-codecommit\." + _region(_AWS) + r"\.amazonaws\.com" + _PORT,
        "https://git-codecommit.*.amazonaws.com",
        "git-codecommit.us-east-1.amazonaws.com",
    ),
    HostForm(
        "fips", "CodeCommit FIPS",
        r"git-codecommit-fips\." + _region(_AWS) + r"\.amazonaws\.com" + _PORT,
        "https://git-codecommit-fips.*.amazonaws.com",
        "git-codecommit-fips.us-east-1.amazonaws.com",
    ),
    HostForm(
        "china", "CodeCommit China",
        r"git-codecommit\." + _region(_CHINA) + r"\.amazonaws\.com\.cn" + _PORT,
        "https://git-codecommit.*.amazonaws.com.cn",
        "git-codecommit.cn-north-1.amazonaws.com.cn",
    ),
    HostForm(
        "vpce", "CodeCommit VPC endpoint",
        _VPCE + r"\.git-codecommit\." + _region(_AWS, zonal=True) + r"\.vpce\.amazonaws\.com" + _PORT,
        "https://*.git-codecommit.*.vpce.amazonaws.com",
        "vpce-0123456789abcdef0-abcdefgh.git-codecommit.us-east-1.vpce.amazonaws.com",
    ),
    HostForm(
        "vpce-fips", "CodeCommit FIPS VPC endpoint",
        _VPCE + r"\.git-codecommit-fips\." + _region(_AWS, zonal=True) + r"\.vpce\.amazonaws\.com" + _PORT,
        "https://*.git-codecommit-fips.*.vpce.amazonaws.com",
        "vpce-0123456789abcdef0-abcdefgh.git-codecommit-fips.us-east-1.vpce.amazonaws.com",
    ),
    HostForm(
        "vpce-china", "CodeCommit China VPC endpoint",
        _VPCE + r"\.git-codecommit\." + _region(_CHINA, zonal=True) + r"\.vpce\.amazonaws\.com\.cn" + _PORT,
        "https://*.git-codecommit.*.vpce.amazonaws.com.cn",
        "vpce-0123456789abcdef0-abcdefgh.git-codecommit.cn-north-1.vpce.amazonaws.com.cn",
    ),
)
_REPO_PATH = r"/?v1/repos/(?P<name>" + REPOSITORY_NAME_PATTERN + r")/?"
_patterns: dict[str, re.Pattern[str]] = {}


def _compiled(source: str) -> re.Pattern[str]:
    pattern = _patterns.get(source)
    if pattern is None:
        pattern = _patterns[source] = re.compile(source)
    return pattern


def _may_match(form: HostForm, name: str) -> bool:
    """Whether ``name`` (no port) starts and ends as the form's git URL pattern does: a cheap test that spares
    compiling the patterns of forms a host cannot have (every host a pattern accepts passes it)."""
    literal = form.git_url.partition("://")[2].split("*")
    return name.startswith(literal[0]) and name.endswith(literal[-1])


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


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = _LABEL + r"(?:\." + _LABEL + r")*"


def git_endpoint_host(host: str) -> tuple[str, int | None]:
    """``split_host`` for a host a ccweb service names as one of its git endpoints, which ``ccweb-helper setup``
    writes into git URLs and shows: the name must also be a DNS name of letters, digits and hyphens (at most
    253 characters) or an IP address (``127.0.0.1``, ``[::1]``).

    Raises ValueError for anything else: a ``*`` (git takes it as a wildcard: ``*.com`` would silence the
    person's own credential helpers for every .com host), a control character, an ``_``, a trailing dot.
    """
    name, port = split_host(host)
    if name.startswith("["):
        import ipaddress  # noqa: PLC0415 (only setup and the service's configuration get here)

        try:
            ipaddress.IPv6Address(name[1:-1] if "%" not in name else "")  # no zone: it could hold anything
        except ValueError:
            raise ValueError("not an IPv6 address") from None
    elif len(name) > 253 or _compiled(_HOST_NAME).fullmatch(name) is None:
        raise ValueError("not a host name of letters, digits, hyphens and dots")
    return name, port


def parse_codecommit_host(host: str) -> CodeCommitHost | None:
    """Return the CodeCommit endpoint named by ``host`` (``name[:port]``), or None if it is not one."""
    text = host.strip()
    if not text.isascii():  # lower() would turn e.g. U+212A (Kelvin sign) into "k"
        return None
    text = text.lower()
    hostname = text.partition(":")[0]
    for form in HOST_FORMS:
        if not _may_match(form, hostname):
            continue
        match = _compiled(form.pattern).fullmatch(text)
        if match:
            return CodeCommitHost(hostname, 443 if match.group("port") else None, match.group("region"), form.name)
    return None


def parse_repository_path(path: str) -> str | None:
    """Return the repository name of a ``v1/repos/<name>`` path (leading/trailing slash allowed), or None."""
    match = _compiled(_REPO_PATH).fullmatch(path.strip())
    if match is None:
        return None
    name = match.group("name")
    return None if name in (".", "..") else name


def is_loopback(hostname: str) -> bool:
    """True for this machine's loopback, whatever the caller connects with: the name ``localhost``, an IPv4
    address of 127.0.0.0/8 written as four decimal numbers, and an IPv6 address (with or without brackets, in
    any spelling, no zone) that is ``::1`` or an IPv4-mapped ``::ffff:127.x.y.z``. Plain http is allowed to
    these only, and the helper never sends them to a proxy.

    Nothing else counts, so no resolver can send a request elsewhere: not a non-ASCII spelling (full-width
    digits or dots), nor another spelling of an IPv4 address (``127.1``, ``0x7f.1``, ``0177.0.0.1``, which some
    resolvers read as 127.0.0.1 and others look up as names), nor ``localhost.`` or ``*.localhost`` (names a
    resolver may ask DNS about). The helper first writes a URL's host in its one ASCII form (``ascii_host``), in
    which the addresses among those are four decimal numbers again, and asks about that.
    """
    name = hostname.lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if not name.isascii():
        return False
    if name in ("localhost", "::1"):
        return True
    if ":" in name:
        return _ipv6_loopback(name)
    parts = name.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(_decimal_byte(part) for part in parts)


def _decimal_byte(part: str) -> bool:
    """``0`` to ``255`` in ASCII decimal without a leading zero: the only spelling every reader agrees on."""
    return part.isdigit() and len(part) <= 3 and (part == "0" or part[0] != "0") and int(part) < 256


def _ipv6_loopback(name: str) -> bool:
    import ipaddress  # noqa: PLC0415 (only for an IPv6 address)

    try:
        address = ipaddress.IPv6Address(name if "%" not in name else "")  # a zone could name any interface
    except ValueError:
        return False
    mapped = address.ipv4_mapped
    return address == ipaddress.IPv6Address("::1") or (mapped is not None and mapped.packed[0] == 127)


def ascii_host(hostname: str) -> str:
    """The one ASCII form of a URL's host: the form a request is decided on (loopback, a proxy, ``NO_PROXY``),
    connected to, named in a proxy's ``CONNECT`` and checked against in TLS, so no two of them can read the host
    differently (pure).

    Brackets of an IPv6 address are dropped; an international name becomes its IDNA form, as Python's socket and
    ssl modules would encode it (full-width letters, digits and dots become ASCII ones: 127.0.0.1 written in
    full-width characters is 127.0.0.1); ASCII letters are lower-cased. A host that ends in a number is an IPv4
    address, read as the URL standard (and browsers, and curl) read it: one to four parts, each decimal, octal
    (``0177``) or hexadecimal (``0x7f``), the last filling the bytes left, one trailing dot allowed; it is written
    as four decimal numbers (``127.1`` is 127.0.0.1). ValueError for a host that ends in a number but is no such
    address (``1.2.3.4.5``, ``256.0.0.1``), UnicodeError (a ValueError too) for a name that has no IDNA form.
    """
    name = hostname[1:-1] if hostname.startswith("[") and hostname.endswith("]") else hostname
    if not name.isascii():
        name = name.encode("idna").decode("ascii")
    name = name.lower()
    if ":" in name:
        return name
    parts = name.split(".")
    if len(parts) > 1 and not parts[-1]:
        parts.pop()  # one trailing dot
    if not parts[-1] or (_ipv4_part(parts[-1]) is None and not parts[-1].isdigit()):
        return name  # a name: it does not end in a number
    numbers = [_ipv4_part(part) for part in parts]
    if len(numbers) > 4 or None in numbers:
        raise ValueError("a host that ends in a number but is not an IPv4 address")
    *first, last = [number for number in numbers if number is not None]
    if any(number > 255 for number in first) or last >= 256 ** (5 - len(numbers)):
        raise ValueError("an IPv4 address with a part out of range")
    value = last
    for index, number in enumerate(first):
        value += number << (8 * (3 - index))
    return ".".join(str(value >> shift & 255) for shift in (24, 16, 8, 0))


def _ipv4_part(part: str) -> int | None:
    """One part of an IPv4 address as the URL standard's IPv4 number parser reads it, or None."""
    digits, base = part, 10
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        digits, base = part[1:], 8
    if not digits:
        return 0 if part else None
    allowed = "0123456789abcdefABCDEF"[: 22 if base == 16 else base]
    if not all(c in allowed for c in digits):
        return None
    return int(digits, base)
