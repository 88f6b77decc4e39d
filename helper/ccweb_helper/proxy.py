"""Which proxy a request goes through, read from the environment as curl reads it (pure).

``choose`` names the proxy for one request, or None for a direct connection; ``bypassed`` is ``NO_PROXY``.
The helper and the service both decide here, so the variables mean the same thing to each, and the same as to
curl (and so to git, and to the shell helper):

- for an https URL: ``https_proxy``, then ``HTTPS_PROXY``, then ``all_proxy``, then ``ALL_PROXY``; the first that
  is not empty wins. Plain http is never proxied: ccweb speaks it only to loopback.
- ``no_proxy``, else ``NO_PROXY`` (curl's ``lib/noproxy.c``, see ``bypassed``); as in curl (whose
  ``curl_getenv`` reads an empty variable as an unset one), an empty ``no_proxy`` leaves ``NO_PROXY`` in force.
- then the proxy URL: an ``http://`` proxy (no scheme means http, as in curl), port 1080 when none is given
  (curl's default), a user name and password percent-decoded into a ``Basic`` ``Proxy-Authorization``. SOCKS and
  https:// proxies (TLS to the proxy itself) are refused, as is anything that is not a URL, and a user name or
  password holding an unencoded ``/``, ``?`` or ``#`` (which would make the rest of it read as the proxy's host
  and port): ``ProxySettingError`` names the variable.
- the host is decided on in its one ASCII form (``hosts.ascii_host``: IDNA, an IPv4 address in any spelling
  written as four decimal numbers), the form the helper connects to and names in ``CONNECT``.
- loopback (``hosts.is_loopback``: 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104, localhost) is never proxied, whatever
  the variables say, and neither are the names under ``.localhost`` (RFC 6761: this machine), which a proxy
  would read as its own machine.

No sentence, repr or error ever holds the proxy's password: ``ProxyChoice.url`` is the proxy's address alone,
the value of a variable is never repeated, and the authorization header is hidden from ``repr``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

from ccweb_helper.hosts import ascii_host, is_loopback

PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")  # for https URLs, in curl's order
NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")
DEFAULT_PORT = 1080  # curl's port for an http:// proxy that names none
EXAMPLE = "http://proxy.example.com:3128"


class ProxyChoice(NamedTuple):
    """The proxy for one request."""

    url: str  # for people: "http://proxy.example.com:3128", never a user name or password
    host: str  # the proxy's host (brackets stripped for IPv6)
    port: int
    authorization: str | None  # the Proxy-Authorization value ("Basic …"), or None
    variable: str  # the environment variable that set it, as spelled in the environment

    def __repr__(self) -> str:  # the authorization holds the password, barely encoded
        hidden = "None" if self.authorization is None else "'Basic (not shown)'"
        return (f"ProxyChoice(url={self.url!r}, host={self.host!r}, port={self.port!r}, authorization={hidden}, "
                f"variable={self.variable!r})")


class ProxySettingError(ValueError):
    """A proxy variable that cannot be used; ``str(exc)`` is a sentence naming the variable, never its value."""


def proxy_variable(scheme: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """(name, value) of the variable that sets the proxy for a ``scheme`` URL, or None: curl's order, the first
    that is not empty (nor only spaces). Plain http has none: ccweb speaks it only to loopback."""
    if scheme.lower() != "https":
        return None
    for name in PROXY_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def no_proxy_variable(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(name, value) of ``no_proxy``, else ``NO_PROXY``, when one is not empty: as curl, an empty one is unset, so
    an empty ``no_proxy`` leaves ``NO_PROXY`` in force (curl 7.88 and 8.x do the same)."""
    for name in NO_PROXY_VARIABLES:
        value = env.get(name, "")
        if value:
            return name, value
    return None


def choose(scheme: str, host: str, port: int | None, env: Mapping[str, str]) -> ProxyChoice | None:
    """The proxy for a request to ``scheme://host:port``, or None for a direct connection: no variable set, a
    loopback host (127.0.0.0/8, ::1, localhost: never proxied), ``NO_PROXY``/``no_proxy`` matching, or plain http
    (only ever to loopback). ProxySettingError for a proxy URL that cannot be used (socks*, https:// proxy, bad
    port, garbage); as in curl, one that ``NO_PROXY`` bypasses is not read at all. ``host`` is decided on in its
    ASCII form (``decided_host``)."""
    name = decided_host(host)
    if loopback(name):
        return None
    found = proxy_variable(scheme, env)
    if found is None:
        return None
    skip = no_proxy_variable(env)
    if skip is not None and bypassed(name, port, skip[1]):
        return None
    return parse_proxy(found[1], found[0])


def parse_proxy(value: str, variable: str) -> ProxyChoice:
    """The proxy named by ``value``, the value of ``variable``; ProxySettingError when it cannot be used. No
    refusal repeats the value (it may hold a password)."""
    text = value.strip()
    if not text.isascii() or any(c.isspace() or not c.isprintable() for c in text):
        raise ProxySettingError(f"{variable} holds a space, a line break or another character a proxy URL cannot "
                                f"hold (the value is not shown: it may hold a password); set it to the proxy's "
                                f"address, e.g. {EXAMPLE}.")
    if "://" not in text:
        text = "http://" + text  # as curl: a proxy without a scheme is an http:// one
    scheme = text.split("://", 1)[0].lower()
    if scheme.startswith("socks"):
        raise ProxySettingError(f"{variable} names a SOCKS proxy ({scheme}://), which ccweb does not support; set "
                                f"it to an http:// proxy, e.g. {EXAMPLE}.")
    if scheme == "https":
        raise ProxySettingError(f"{variable} names an https:// proxy (TLS to the proxy itself), which ccweb does not "
                                f"support; use the proxy's http:// address (https sites are still reached through "
                                f"an encrypted tunnel), e.g. {EXAMPLE}.")
    garbage = ProxySettingError(f"{variable} is not a proxy URL (the value is not shown: it may hold a password); "
                                f"set it to the proxy's address, e.g. {EXAMPLE}.")
    if scheme != "http":
        if scheme.isalpha() and len(scheme) <= 10:
            raise ProxySettingError(f"{variable} names {_article(scheme)} {scheme}:// proxy; ccweb uses http:// "
                                    f"proxies only, e.g. {EXAMPLE}.")
        raise garbage
    authority = text.split("://", 1)[1]
    cut = min((authority.find(end) for end in "/?#" if end in authority), default=len(authority))
    if "@" in authority[cut:]:  # "http://bob:2024#Winter@proxy:3128": the password would read as host and port
        raise ProxySettingError(f"{variable} holds a user name or password with an unencoded /, ? or # (the value "
                                f"is not shown: it may hold a password); percent-encode @ / ? # in the proxy's "
                                f"user name and password (%40 %2F %3F %23), e.g. http://user:p%23ss@proxy.example.com:"
                                f"3128.")
    authority = authority[:cut]
    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        proxy_host, bracket, rest = hostport[1:].partition("]")
        if not bracket or _ipv6(proxy_host) is None or (rest and not rest.startswith(":")):
            raise garbage
        digits = rest[1:]
    else:
        proxy_host, _, digits = hostport.partition(":")
        if not proxy_host or proxy_host.startswith(".") or not all(c.isalnum() or c in ".-_" for c in proxy_host):
            raise garbage
        proxy_host = proxy_host.lower()
    port = DEFAULT_PORT
    if digits:
        if not digits.isdigit() or len(digits) > 5 or not 0 < int(digits) < 65536:
            raise ProxySettingError(f"{variable} names a port that is not a number from 1 to 65535 (the value is not "
                                    f"shown: it may hold a password); set it to the proxy's address, e.g. "
                                    f"{EXAMPLE}.")
        port = int(digits)
    shown = f"[{proxy_host}]" if ":" in proxy_host else proxy_host
    authorization = None
    if at:
        user, _, password = userinfo.partition(":")
        credentials = unquote_to_bytes(user) + b":" + unquote_to_bytes(password)
        authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
    return ProxyChoice(f"http://{shown}:{port}", proxy_host, port, authorization, variable)


def bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (the value of NO_PROXY) sends ``host`` directly, as curl's ``lib/noproxy.c`` reads it:

    - ``*`` alone (the whole value) means every host; a ``*`` among other entries is a name like any other;
    - entries are separated by commas, spaces and tabs (curl 7.x reads spaces as separators too; curl 8.9 and
      later read only up to the first space-separated entry);
    - a host name matches an entry equal to it or to one of its parent domains, on a label boundary
      (``example.com`` matches ``example.com`` and ``www.example.com``, not ``nonexample.com``); one leading and
      one trailing dot of an entry, and one trailing dot of the host, are ignored; ASCII case is ignored;
    - an IP address (IPv4, or IPv6 without brackets in the entry) matches an equal address, or a range
      ``address/bits``; an entry that is a name never matches an address, nor the reverse;
    - an entry with a port (``example.com:8443``) never matches anything: curl compares names and addresses only,
      so ``port`` plays no part (it is taken for the day a reader does).
    """
    del port
    name = _unbracketed(host).encode("utf-8", "surrogateescape")
    if not name or not no_proxy:
        return False
    if no_proxy == "*":
        return True
    kind = _address_kind(name.decode("utf-8", "surrogateescape"))
    if kind == 0 and name.endswith(b"."):
        name = name[:-1]
    entries = no_proxy.encode("utf-8", "surrogateescape").replace(b",", b" ").replace(b"\t", b" ").split(b" ")
    for entry in entries:
        if not entry:
            continue
        if kind == 0 and _name_matches(entry, name):
            return True
        if kind and _address_matches(kind, entry.decode("utf-8", "surrogateescape"), name.decode("utf-8")):
            return True
    return False


def _name_matches(entry: bytes, name: bytes) -> bool:
    """curl's ``match_host``: ``name`` (without its trailing dot) is ``entry`` or ends with ``.entry``."""
    if entry.endswith(b"."):
        entry = entry[:-1]
    if entry.startswith(b"."):
        entry = entry[1:]
    if len(entry) == len(name):
        return entry.lower() == name.lower()
    if len(entry) < len(name):
        start = len(name) - len(entry)
        return name[start - 1:start] == b"." and name[start:].lower() == entry.lower()
    return False


def _address_matches(kind: int, entry: str, address: str) -> bool:
    """curl's ``match_ip``: ``entry`` is ``address``, or a range ``network/bits`` holding it."""
    if len(entry.encode("utf-8", "surrogateescape")) >= 128:
        return False  # curl's buffer: such an entry cannot match
    network, slash, suffix = entry.partition("/")
    bits = 0
    if slash:
        if not suffix or not suffix.isascii() or not suffix.isdigit() or int(suffix) > 128:
            return False
        bits = int(suffix)
    if kind == 4:
        if bits > 32:
            return False
        ours, theirs = _ipv4(address), _ipv4(network)
        width = 32
        if bits == 0:
            bits = 32  # curl: no prefix (or /0) compares the whole address
    else:
        ours, theirs = _ipv6(address), _ipv6(network)
        width = 128
        if bits == 0:
            bits = 128
    if ours is None or theirs is None:
        return False
    return ours >> (width - bits) == theirs >> (width - bits)


def _address_kind(host: str) -> int:
    """4 for an IPv4 address, 6 for an IPv6 one (as ``inet_pton`` reads them), 0 for a name."""
    if _ipv4(host) is not None:
        return 4
    return 6 if _ipv6(host) is not None else 0


def _ipv4(text: str) -> int | None:
    """The address as a number, for dotted decimal exactly as ``inet_pton`` takes it (four parts, no leading
    zero); None for anything else."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not (part.isascii() and part.isdigit()) or len(part) > 3 or (len(part) > 1 and part[0] == "0"):
            return None
        number = int(part)
        if number > 255:
            return None
        value = value << 8 | number
    return value


def _ipv6(text: str) -> int | None:
    """The address as a number, for an IPv6 address without brackets nor zone; None for anything else."""
    if ":" not in text or "%" in text or not text.isascii():
        return None
    import ipaddress  # noqa: PLC0415 (only for a host or an entry that looks like one)

    try:
        return int(ipaddress.IPv6Address(text))
    except ValueError:
        return None


def _article(scheme: str) -> str:
    """"a" or "an" before ``scheme://``, as it is read aloud: "an imap://", "an ftp://" (eff-tee-pee), "a gopher://"."""
    spelled = not any(c in "aeiou" for c in scheme) or scheme in ("ldap", "ldaps")  # read letter by letter
    return "an" if scheme[0] in "aeio" or (spelled and scheme[0] in "fhlmnrsx") else "a"


def _unbracketed(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def decided_host(host: str) -> str:
    """``host`` as requests are decided on: its ASCII form (``hosts.ascii_host``), the one the helper connects to;
    for a host that has none (the connection will fail), the text without brackets, lower-cased."""
    try:
        return ascii_host(host)
    except ValueError:
        return _unbracketed(host).lower()


def loopback(host: str) -> bool:
    """Whether ``host`` is this machine, so never proxied: ``hosts.is_loopback`` of its ASCII form (127.0.0.0/8 in
    any spelling, ::1, ::ffff:127.0.0.0/104, localhost), or a name under ``.localhost`` (RFC 6761; with or
    without a trailing dot), which a proxy would read as its own machine. Such a name is not loopback for
    ``is_loopback`` (plain http is not allowed to it): a resolver may ask DNS about it."""
    name = decided_host(host)
    return is_loopback(name) or name.rstrip(".") == "localhost" or name.rstrip(".").endswith(".localhost")

