"""``ccweb_helper.proxy``: which proxy a request goes through, judged against the real ``curl``.

``bypassed`` is NO_PROXY, and ``choose`` the order of the variables: each case runs ``curl`` with the same
environment in front of recording proxies on loopback, and what curl did (through a proxy, which one, or
directly) must be what ccweb decides. Every connection stays on loopback: ``--connect-to`` sends whatever curl
would open directly to a closed loopback port, and the proxies are loopback servers. Then the rest of
``choose`` as tables: loopback in every spelling (``hosts.ascii_host``, judged against the URL standard as
Node.js implements it, and ``hosts.is_loopback``), empty values, the proxy URL, its user and password, and the
settings it refuses without repeating them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ccweb_helper.hosts import ascii_host, is_loopback
from ccweb_helper.proxy import ProxyChoice, ProxySettingError, bypassed, choose, parse_proxy

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")
NODE = shutil.which("node")


class Recorder(socketserver.ThreadingTCPServer):
    """A proxy on 127.0.0.1 that records the first line of each request and answers 418 to all of them."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.seen: list[str] = []
        super().__init__(("127.0.0.1", 0), _Record)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Record(socketserver.StreamRequestHandler):
    server: Recorder

    def handle(self) -> None:
        self.server.seen.append(self.rfile.readline(4096).decode("latin-1").strip())
        while self.rfile.readline(4096) not in (b"\r\n", b"\n", b""):
            pass
        self.wfile.write(b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.fixture(scope="module")
def proxies() -> Iterator[tuple[Recorder, Recorder]]:
    first, second = Recorder(), Recorder()
    try:
        yield first, second
    finally:
        for server in (first, second):
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening) for as long as the module runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def curl_went(url: str, env: dict[str, str], proxies: tuple[Recorder, ...], closed_port: int) -> str | None:
    """The URL of the proxy ``curl`` sent ``url`` to with ``env``, or None when it went directly."""
    for proxy in proxies:
        proxy.seen.clear()
    assert CURL is not None
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}
    subprocess.run([CURL, "-q", "-s", "-o", "/dev/null", "--max-time", "10", "--connect-to",
                    f"::127.0.0.1:{closed_port}", url], env={**base, **env}, capture_output=True, timeout=30,
                   check=False)
    went = [proxy.url for proxy in proxies if proxy.seen]
    assert len(went) <= 1
    return went[0] if went else None


# -- NO_PROXY: bypassed against curl ------------------------------------------------------------------------

NO_PROXY_CASES: dict[str, tuple[str, str, bool]] = {
    # name: (the host, NO_PROXY, whether it goes directly)
    "same-name": ("example.com", "example.com", True),
    "subdomain": ("www.example.com", "example.com", True),
    "deeper-subdomain": ("a.b.example.com", "example.com", True),
    "not-on-a-label-boundary": ("nonexample.com", "example.com", False),
    "a-tail-that-is-not-a-label": ("example.com", "e.com", False),
    "leading-dot-subdomain": ("www.example.com", ".example.com", True),
    "leading-dot-the-domain-itself": ("example.com", ".example.com", True),
    "trailing-dot-in-the-entry": ("www.example.com", "example.com.", True),
    "trailing-dot-in-the-host": ("example.com.", "example.com", True),
    "top-level-domain": ("www.example.com", "com", True),
    "case-ignored": ("WWW.Example.COM", "example.com", True),
    "case-ignored-in-the-entry": ("example.com", "EXAMPLE.Com", True),
    "parent-is-not-a-child": ("example.com", "www.example.com", False),
    "star-alone": ("example.com", "*", True),
    "star-among-others-is-a-name": ("example.com", "*,other.test", False),
    "star-after-a-space-is-a-name": ("example.com", " *", False),
    "star-as-a-wildcard-label": ("www.example.com", "*.example.com", False),
    "second-entry": ("example.com", "other.test,example.com", True),
    "commas-and-spaces": ("example.com", "other.test, ,, example.com", True),
    "space-separated": ("example.com", "other.test example.com", True),
    "tab-separated": ("example.com", "other.test\texample.com", True),
    "none-of-them": ("example.com", "other.test,another.test", False),
    "an-entry-with-a-port-never-matches": ("example.com", "example.com:8000", False),
    "dot-alone": ("example.com", ".", False),
    "empty": ("example.com", "", False),
    "ipv4-equal": ("10.1.2.3", "10.1.2.3", True),
    "ipv4-other": ("10.1.2.3", "10.1.2.4", False),
    "ipv4-cidr-8": ("10.1.2.3", "10.0.0.0/8", True),
    "ipv4-cidr-24": ("10.1.2.3", "10.1.2.0/24", True),
    "ipv4-cidr-24-outside": ("10.1.2.3", "10.1.3.0/24", False),
    "ipv4-cidr-32-other": ("10.1.2.3", "10.1.2.4/32", False),
    "ipv4-cidr-over-32": ("10.1.2.3", "10.1.2.3/33", False),
    "ipv4-cidr-0-is-the-whole-address": ("10.1.2.3", "10.1.2.3/0", True),
    "ipv4-cidr-0-other": ("10.1.2.3", "10.0.0.0/0", False),
    "ipv4-network-without-bits-is-one-address": ("10.1.2.3", "10.1.2.0", False),
    "ipv4-with-a-port-never-matches": ("10.1.2.3", "10.1.2.3:8000", False),
    "ipv4-is-not-a-name": ("10.1.2.3", "2.3", False),
    "ipv4-in-a-list": ("10.1.2.3", "example.com, 10.0.0.0/8", True),
    "ipv4-bits-with-junk": ("10.1.2.3", "10.0.0.0/8a", False),
    "ipv4-no-bits-after-the-slash": ("10.1.2.3", "10.1.2.3/", False),
    "ipv6-equal": ("2001:db8::1", "2001:db8::1", True),
    "ipv6-another-spelling": ("2001:db8::1", "2001:DB8:0:0::1", True),
    "ipv6-cidr-32": ("2001:db8::1", "2001:db8::/32", True),
    "ipv6-cidr-64": ("2001:db8::1", "2001:db8::/64", True),
    "ipv6-cidr-outside": ("2001:db8::1", "2001:db9::/32", False),
    "ipv6-cidr-65-inside": ("2001:db8::1", "2001:db8::/65", True),
    "ipv6-cidr-65-outside": ("2001:db8:0:0:8000::1", "2001:db8::/65", False),
    "ipv6-cidr-122-outside": ("2001:db8::40", "2001:db8::/122", False),
    "ipv6-in-brackets-never-matches": ("2001:db8::1", "[2001:db8::1]", False),
    "ipv6-with-a-zone-never-matches": ("fe80::1", "fe80::1%eth0", False),
    "ipv6-is-not-ipv4": ("2001:db8::1", "10.0.0.0/8", False),
    "a-name-is-not-an-address": ("example.com", "10.0.0.0/8", False),
}

# ccweb reads NO_PROXY as curl does now, and as the design of issue 13 asks for separators; curl versions that
# read a case otherwise are not compared with it: (first version that agrees, first version that no longer does).
_SINCE_8_18 = ((8, 18), None)  # curl 8.18: IPv6 hosts compared as addresses (before: as text), bits checked
CURL_VERSIONS: dict[str, tuple[tuple[int, int] | None, tuple[int, int] | None]] = {
    "space-separated": (None, (8, 9)),  # curl 8.9 reads only up to the first entry not after a comma
    "tab-separated": (None, (8, 9)),
    "ipv4-bits-with-junk": _SINCE_8_18,  # before: atoi("8a") is 8
    "ipv4-no-bits-after-the-slash": _SINCE_8_18,  # before: atoi("") is 0, the whole address
    "ipv6-another-spelling": _SINCE_8_18,
    "ipv6-cidr-32": _SINCE_8_18,
    "ipv6-cidr-64": _SINCE_8_18,
    "ipv6-cidr-65-inside": _SINCE_8_18,
}


def _curl_version() -> tuple[int, int]:
    if CURL is None:
        return (0, 0)
    first = subprocess.run([CURL, "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    major, minor = first.split(".")[:2]
    return int(major), int(minor)


CURL_VERSION = _curl_version()


@pytest.mark.parametrize(("host", "no_proxy", "direct"), NO_PROXY_CASES.values(), ids=NO_PROXY_CASES.keys())
def test_no_proxy_is_read_as_curl_reads_it(host: str, no_proxy: str, direct: bool) -> None:
    assert bypassed(host, 443, no_proxy) is direct
    assert bypassed(f"[{host}]" if ":" in host else host, None, no_proxy) is direct  # brackets or not, the host


def _compared_with_curl() -> list[Any]:
    """NO_PROXY_CASES, each skipped where the installed curl's version reads it otherwise (CURL_VERSIONS)."""
    version = CURL_VERSION
    cases = []
    for name, case in NO_PROXY_CASES.items():
        since, until = CURL_VERSIONS.get(name, (None, None))
        differs = (since is not None and version < since) or (until is not None and version >= until)
        reason = f"curl {'.'.join(map(str, version))} reads this case as other curl versions do not"
        cases.append(pytest.param(*case, id=name, marks=pytest.mark.skipif(differs, reason=reason)))
    return cases


@needs_curl
@pytest.mark.parametrize(("host", "no_proxy", "direct"), _compared_with_curl())
def test_curl_agrees_about_no_proxy(host: str, no_proxy: str, direct: bool, proxies: tuple[Recorder, Recorder],
                                    closed_port: int) -> None:
    authority = f"[{host}]" if ":" in host else host
    went = curl_went(f"http://{authority}:8000/", {"http_proxy": proxies[0].url, "no_proxy": no_proxy},
                     proxies, closed_port)
    assert (went is None) is direct, f"curl {'went directly' if went is None else 'used the proxy'}"


# -- the order of the variables, against curl ---------------------------------------------------------------

ORDER_CASES: dict[str, tuple[dict[str, str], str | None]] = {
    # name: (the environment, with FIRST and SECOND for the two proxies' URLs; which one is used)
    "https_proxy-before-HTTPS_PROXY": ({"https_proxy": "FIRST", "HTTPS_PROXY": "SECOND"}, "FIRST"),
    "an-empty-https_proxy-is-unset": ({"https_proxy": "", "HTTPS_PROXY": "SECOND"}, "SECOND"),
    "HTTPS_PROXY-before-all_proxy": ({"HTTPS_PROXY": "FIRST", "all_proxy": "SECOND"}, "FIRST"),
    "all_proxy-before-ALL_PROXY": ({"all_proxy": "FIRST", "ALL_PROXY": "SECOND"}, "FIRST"),
    "ALL_PROXY-alone": ({"ALL_PROXY": "SECOND"}, "SECOND"),
    "http_proxy-is-not-for-https": ({"http_proxy": "FIRST", "HTTP_PROXY": "SECOND"}, None),
    "no_proxy-bypasses": ({"https_proxy": "FIRST", "no_proxy": "origin.test"}, None),
    "NO_PROXY-bypasses": ({"https_proxy": "FIRST", "NO_PROXY": "origin.test"}, None),
    "an-empty-no_proxy-is-unset": ({"https_proxy": "FIRST", "no_proxy": "", "NO_PROXY": "origin.test"}, None),
    "no_proxy-before-NO_PROXY": ({"https_proxy": "FIRST", "no_proxy": "other.test", "NO_PROXY": "origin.test"},
                                 "FIRST"),
}


@pytest.mark.parametrize(("env", "used"), ORDER_CASES.values(), ids=ORDER_CASES.keys())
def test_variables_are_read_in_curls_order(env: dict[str, str], used: str | None, proxies: tuple[Recorder, Recorder],
                                           closed_port: int) -> None:
    urls = {"FIRST": proxies[0].url, "SECOND": proxies[1].url}
    real = {name: urls.get(value, value) for name, value in env.items()}
    chosen = choose("https", "origin.test", 8443, real)
    assert (chosen.url if chosen else None) == (urls[used] if used else None)
    if used:
        assert chosen is not None and chosen.variable == next(k for k, v in env.items() if v == used)
    if CURL is not None:
        assert curl_went("https://origin.test:8443/", real, proxies, closed_port) == (urls[used] if used else None)


# -- choose: loopback, schemes, the proxy URL ---------------------------------------------------------------

PROXY = "http://proxy.example.com:3128"


LOOPBACK_SPELLINGS = [
    "127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "localhost.", "::1", "[::1]", "0:0:0:0:0:0:0:1",
    # Other spellings of 127.0.0.1 that a resolver or IDNA reads as it: the decision is made on the same form
    # the connection uses (hosts.ascii_host), so none of them reaches a proxy (which would read it as its own).
    "127.1", "0x7f.1", "0X7F.0.0.1", "2130706433", "0177.0.0.1", "0x7f000001", "127.0.0.1.", "127.1.",
    "127\uff0e0\uff0e0\uff0e1", "\uff11\uff12\uff17.0.0.1", "127\u30020\u30020\u30021",
    "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",
    "::ffff:127.0.0.1", "[::ffff:127.0.0.1]", "::ffff:7f00:1", "[::FFFF:127.1.2.3]",
    # RFC 6761: names under .localhost are this machine; a proxy would read them as its own.
    "foo.localhost", "FOO.LocalHost.", "a.b.localhost",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_loopback_is_never_proxied(host: str) -> None:
    assert choose("https", host, 8443, {"HTTPS_PROXY": PROXY}) is None
    assert choose("https", host, 8443, {"HTTPS_PROXY": "socks5://not-even-usable"}) is None  # not read at all


@pytest.mark.parametrize("host", ["128.0.0.1", "0.0.0.0", "126.255.255.255", "127.0.0.1.example.com", "localhost.com",  # noqa: S104
                                  "notlocalhost", "localhost.example", "::2", "::ffff:10.0.0.1", "[::ffff:128.0.0.1]",
                                  "0x80.1", "2164260865", "\u0661\u0662\u0667.0.0.1", "fe80::1%25lo"])
def test_other_hosts_are_proxied(host: str) -> None:
    assert choose("https", host, 8443, {"HTTPS_PROXY": PROXY}) is not None


ASCII_FORMS: dict[str, tuple[str, str | None]] = {
    # name: (a URL's host, its one ASCII form, None when it has none)
    "name": ("Git.Example.COM", "git.example.com"),
    "idna": ("B\u00fccher.example", "xn--bcher-kva.example"),
    "full-width-dots": ("git\uff0ecorp\uff0eexample", "git.corp.example"),
    "ideographic-dots": ("git\u3002corp\u3002example", "git.corp.example"),
    "a-trailing-dot-of-a-name-stays": ("example.com.", "example.com."),
    "ipv4": ("10.1.2.3", "10.1.2.3"),
    "ipv4-two-parts": ("127.1", "127.0.0.1"),
    "ipv4-three-parts": ("10.1.515", "10.1.2.3"),
    "ipv4-one-number": ("2130706433", "127.0.0.1"),
    "ipv4-hex": ("0x7f.0x0.0.0x1", "127.0.0.1"),
    "ipv4-hex-one-number": ("0x7F000001", "127.0.0.1"),
    "ipv4-octal": ("0177.0.0.01", "127.0.0.1"),
    "ipv4-trailing-dot": ("127.0.0.1.", "127.0.0.1"),
    "ipv4-full-width": ("\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11", "127.0.0.1"),
    "ipv6-bracketed": ("[::1]", "::1"),
    "ipv6-mapped": ("[::FFFF:127.0.0.1]", "::ffff:127.0.0.1"),
    "a-name-ending-in-a-letter": ("1.2.3.4.example", "1.2.3.4.example"),
    "a-hex-looking-name": ("1e1.example", "1e1.example"),
    "five-parts": ("1.2.3.4.5", None),
    "a-part-over-255": ("256.0.0.1", None),
    "the-last-part-too-large": ("1.2.65536", None),
    "not-octal": ("127.08.0.1", None),
    "an-empty-part": ("127..1", None),
    "a-name-ending-in-a-number": ("ccweb.123", None),
    "over-32-bits": ("18446744075840258049", None),
    "not-idna": ("\u0080\u0080.example", None),
}


@pytest.mark.parametrize(("host", "form"), ASCII_FORMS.values(), ids=ASCII_FORMS.keys())
def test_a_host_has_one_ascii_form(host: str, form: str | None) -> None:
    if form is None:
        with pytest.raises(ValueError):  # noqa: PT011 (UnicodeError or ValueError: the host has no form)
            ascii_host(host)
    else:
        assert ascii_host(host) == form


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_ipv4_spellings_are_read_as_the_url_standard_reads_them() -> None:
    """Node.js's URL parser is the WHATWG URL standard's (as browsers'): every IPv4-looking host of the table, and
    more, has the same address there, or is refused there too."""
    hosts = [host for host, _ in ASCII_FORMS.values() if host.isascii() and not host.startswith("[")]
    hosts += ["0x", "0x.1", "127.0x", "0x7f.0x.0.1", "00x1.1", "1.", "..1", "0.0.0.0x100", "4294967295",
              "4294967296", "255.16777215", "255.16777216", "0378.0.0.1", "09", "0", "1.0x", "x.1"]
    script = ("const r = {}; for (const h of JSON.parse(process.argv[1])) { try { r[h] = new URL(`https://${h}/`)"
              ".hostname } catch { r[h] = null } } console.log(JSON.stringify(r))")
    assert NODE is not None
    done = subprocess.run([NODE, "-e", script, json.dumps(hosts)], capture_output=True, text=True,
                          timeout=60, check=True)
    standard = json.loads(done.stdout)

    def ours(host: str) -> str | None:
        try:
            return ascii_host(host)
        except ValueError:
            return None

    assert {host: ours(host) for host in hosts} == standard


LOOPBACK_CASES: dict[str, tuple[str, bool]] = {
    # name: (a host as a caller has it, whether it is loopback whatever reads it)
    "ipv4": ("127.0.0.1", True),
    "ipv4-any-of-127/8": ("127.255.0.9", True),
    "localhost": ("LocalHost", True),
    "ipv6": ("::1", True),
    "ipv6-bracketed": ("[::1]", True),
    "ipv6-long": ("0:0:0:0:0:0:0:1", True),
    "ipv6-mapped": ("::ffff:127.0.0.1", True),
    "ipv6-mapped-hex": ("[::ffff:7f01:203]", True),
    "ipv6-mapped-other": ("::ffff:10.0.0.1", False),
    "ipv6-with-a-zone": ("::1%lo", False),
    "not-127": ("128.0.0.1", False),
    "a-name-under-it": ("127.0.0.1.evil.example", False),
    # Spellings some resolvers read as 127.0.0.1 and others look up as names: not loopback until ascii_host
    # has written them as four decimal numbers (plain http to such a name could reach any host DNS names).
    "two-parts": ("127.1", False),
    "leading-zeros": ("127.00.0.1", False),
    "not-octal": ("127.08.0.1", False),
    "arabic-indic-digits": ("\u0661\u0662\u0667.0.0.1", False),
    "full-width-digits": ("\uff11\uff12\uff17.0.0.1", False),
    "superscript-digits": ("\u00b9\u00b2\u2077.0.0.1", False),
    "localhost-with-a-dot": ("localhost.", False),
    "under-localhost": ("foo.localhost", False),
}


@pytest.mark.parametrize(("host", "loopback"), LOOPBACK_CASES.values(), ids=LOOPBACK_CASES.keys())
def test_is_loopback_holds_whatever_resolves_it(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_plain_http_is_never_proxied() -> None:
    assert choose("http", "ccweb.example.com", 80, {"HTTPS_PROXY": PROXY, "http_proxy": PROXY,
                                                    "ALL_PROXY": PROXY}) is None


def test_no_variable_no_proxy() -> None:
    assert choose("https", "ccweb.example.com", None, {}) is None
    assert choose("https", "ccweb.example.com", None, {"HTTPS_PROXY": "", "https_proxy": "  ", "NO_PROXY": "x"}) is None


def test_a_proxy_is_named_without_its_user_and_password() -> None:
    chosen = choose("https", "ccweb.example.com", 443,
                    {"HTTPS_PROXY": "http://ALICE:PLANTED%2FPASS@Proxy.Example.com:3128/"})
    assert chosen is not None
    assert (chosen.url, chosen.host, chosen.port, chosen.variable) == (PROXY, "proxy.example.com", 3128,
                                                                       "HTTPS_PROXY")
    assert "PLANTED" not in repr(chosen) and "ALICE" not in repr(chosen) and "PLANTED" not in chosen.url


AUTH_CASES: dict[str, tuple[str, bytes | None]] = {
    # name: (the proxy URL, what Basic carries, base64-decoded)
    "user-and-password": ("http://alice:s3cret@proxy.example.com:3128", b"alice:s3cret"),
    "percent-decoded": ("http://d%C3%A9v%40corp:p%40ss%3Aw%2Ford%25@proxy.example.com:3128", "dév@corp:p@ss:w/ord%"
                        .encode()),
    "an-unencoded-at-in-the-password": ("http://alice:p@ss@proxy.example.com:3128", b"alice:p@ss"),
    "encoded-slash-question-hash": ("http://bob:2024%23Win%2Fter%3F@proxy.example.com:3128", b"bob:2024#Win/ter?"),
    "user-only": ("http://alice@proxy.example.com:3128", b"alice:"),
    "empty-password": ("http://alice:@proxy.example.com:3128", b"alice:"),
    "none": ("http://proxy.example.com:3128", None),
}


@pytest.mark.parametrize(("value", "credentials"), AUTH_CASES.values(), ids=AUTH_CASES.keys())
def test_proxy_authentication_comes_from_the_url(value: str, credentials: bytes | None) -> None:
    chosen = choose("https", "ccweb.example.com", 443, {"HTTPS_PROXY": value})
    assert chosen is not None and chosen.url == PROXY
    if credentials is None:
        assert chosen.authorization is None
    else:
        assert chosen.authorization == "Basic " + base64.b64encode(credentials).decode()


URL_CASES: dict[str, tuple[str, str, str, int]] = {
    # name: (the value, ProxyChoice.url, host, port)
    "no-scheme-is-http": ("proxy.example.com:3128", PROXY, "proxy.example.com", 3128),
    "no-port-is-1080": ("http://proxy.example.com", "http://proxy.example.com:1080", "proxy.example.com", 1080),
    "a-path-is-ignored": ("http://proxy.example.com:3128/some/path", PROXY, "proxy.example.com", 3128),
    "scheme-case": ("HTTP://proxy.example.com:3128", PROXY, "proxy.example.com", 3128),
    "spaces-around": ("  http://proxy.example.com:3128\n", PROXY, "proxy.example.com", 3128),
    "ipv4": ("http://10.0.0.1:8080", "http://10.0.0.1:8080", "10.0.0.1", 8080),
    "ipv6": ("http://[2001:db8::5]:8080", "http://[2001:db8::5]:8080", "2001:db8::5", 8080),
}


@pytest.mark.parametrize(("value", "url", "host", "port"), URL_CASES.values(), ids=URL_CASES.keys())
def test_the_proxy_url_is_read_as_curl_reads_it(value: str, url: str, host: str, port: int) -> None:
    chosen = choose("https", "ccweb.example.com", 443, {"ALL_PROXY": value})
    assert chosen == ProxyChoice(url, host, port, None, "ALL_PROXY")


REFUSED: dict[str, tuple[str, str]] = {
    # name: (the value, what the sentence says after the variable's name)
    "socks5": ("socks5://PLANTEDUSER:PLANTEDPASS@proxy.example.com:1080", "names a SOCKS proxy (socks5://)"),
    "socks5h": ("socks5h://proxy.example.com:1080", "names a SOCKS proxy (socks5h://)"),
    "socks4": ("socks4://proxy.example.com:1080", "names a SOCKS proxy (socks4://)"),
    "https-proxy": ("https://PLANTEDUSER:PLANTEDPASS@proxy.example.com:443", "names an https:// proxy"),
    "other-scheme": ("ftp://proxy.example.com:21", "names an ftp:// proxy; ccweb uses http:// proxies only"),
    "other-scheme-a-word": ("gopher://proxy.example.com:70", "names a gopher:// proxy; ccweb uses http://"),
    "other-scheme-a-vowel": ("imap://proxy.example.com:143", "names an imap:// proxy; ccweb uses http://"),
    "other-scheme-spelled": ("ssh://proxy.example.com:22", "names an ssh:// proxy; ccweb uses http://"),
    "other-scheme-spelled-from-a-consonant": ("tftp://proxy.example.com:69", "names a tftp:// proxy"),
    "port-not-a-number": ("http://PLANTEDUSER:PLANTEDPASS@proxy.example.com:31x8", "names a port that is not"),
    "port-too-large": ("http://proxy.example.com:65536", "names a port that is not"),
    "port-zero": ("http://proxy.example.com:0", "names a port that is not"),
    "no-host": ("http://PLANTEDUSER:PLANTEDPASS@:3128", "is not a proxy URL"),
    "a-space-inside": ("http://PLANTEDUSER:PLANTED PASS@proxy.example.com:3128", "holds a space"),
    "a-line-break": ("http://proxy.example.com:3128\nPLANTEDPASS", "holds a space, a line break"),
    "garbage": ("PLANTEDPASS!!", "is not a proxy URL"),
    "unclosed-bracket": ("http://[2001:db8::5:3128", "is not a proxy URL"),
    "not-an-address-in-brackets": ("http://[PLANTEDPASS]:3128", "is not a proxy URL"),
}


@pytest.mark.parametrize(("value", "said"), REFUSED.values(), ids=REFUSED.keys())
def test_an_unusable_proxy_is_refused_by_name_without_its_value(value: str, said: str) -> None:
    with pytest.raises(ProxySettingError) as caught:
        choose("https", "ccweb.example.com", 443, {"https_proxy": value})
    message = str(caught.value)
    assert message.startswith(f"https_proxy {said}")
    assert "PLANTED" not in message and "PLANTED" not in repr(caught.value)
    assert message.endswith(".")


def test_an_unusable_proxy_that_no_proxy_bypasses_is_not_read() -> None:
    env = {"HTTPS_PROXY": "socks5://proxy.example.com", "NO_PROXY": ".example.com"}
    assert choose("https", "ccweb.example.com", 443, env) is None
    with pytest.raises(ProxySettingError):
        choose("https", "idp.example.org", 443, env)


def test_the_first_variable_set_is_the_one_used_even_when_a_later_one_is_usable() -> None:
    with pytest.raises(ProxySettingError) as caught:
        choose("https", "ccweb.example.com", 443, {"https_proxy": "socks5://p", "HTTPS_PROXY": PROXY})
    assert str(caught.value).startswith("https_proxy ")


UNENCODED: dict[str, str] = {
    # name: a proxy URL whose user name or password holds an unencoded "#", "/" or "?"
    "hash-in-the-password": "http://PLANTEDUSER:2024#PLANTEDPASS@proxy.corp.example:3128",
    "slash-in-the-password": "http://PLANTEDUSER:4711/PLANTEDPASS@proxy.corp.example:3128",
    "question-mark-in-the-password": "http://PLANTEDUSER:2024?PLANTEDPASS@proxy.corp.example:3128",
    "hash-in-the-user-name": "http://PLANTED#USER:PLANTEDPASS@proxy.corp.example:3128",
    "no-scheme": "PLANTEDUSER:2024#PLANTEDPASS@proxy.corp.example:3128",
    "no-password": "http://PLANTED/USER@proxy.corp.example:3128",
    "an-at-in-the-path": "http://proxy.corp.example:3128/PLANTED@evil.example:1",
}


@pytest.mark.parametrize("value", UNENCODED.values(), ids=UNENCODED.keys())
def test_an_unencoded_slash_question_mark_or_hash_before_the_at_is_refused_without_the_value(value: str) -> None:
    """Read up to the first "/", "?" or "#", "http://bob:2024#Winter@proxy:3128" would name the proxy
    "http://bob:2024", showing the user name and the start of the password wherever the proxy is named."""
    with pytest.raises(ProxySettingError) as caught:
        choose("https", "ccweb.example.com", 443, {"HTTPS_PROXY": value})
    message = str(caught.value)
    assert message == ("HTTPS_PROXY holds a user name or password with an unencoded /, ? or # (the value is not shown: "
                       "it may hold a password); percent-encode @ / ? # in the proxy's user name and password (%40 %2F "
                       "%3F %23), e.g. http://user:p%23ss@proxy.example.com:3128.")
    assert "PLANTED" not in message and "2024" not in message and "4711" not in message
    with pytest.raises(ProxySettingError):
        parse_proxy(value, "HTTPS_PROXY")  # what the service and doctor read the variable with


@pytest.mark.parametrize("value", ["http://proxy.example.com:3128/", "http://proxy.example.com:3128/?x",
                                   "http://alice:s3cret@proxy.example.com:3128/#top"])
def test_a_path_query_or_fragment_after_the_proxy_is_still_ignored(value: str) -> None:
    chosen = choose("https", "ccweb.example.com", 443, {"HTTPS_PROXY": value})
    assert chosen is not None and chosen.url == PROXY
