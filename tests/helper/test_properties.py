"""Properties of the helper's pure parsers, over generated input: git's credential protocol and host names.

Derandomized (the same examples on every run); the tables in test_protocol.py and test_hosts.py name the
cases a person thought of, these look for the ones nobody did.
"""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ccweb_helper.hosts import parse_codecommit_host, parse_repository_path, split_host
from ccweb_helper.protocol import format_answer, parse

pytestmark = pytest.mark.filterwarnings("error")
PROPERTY = settings(max_examples=300, derandomize=True, database=None, deadline=None)

# --- git's credential protocol -----------------------------------------------------------------------------

LINE_BREAKS = "\n\r\0"
SAFE_TEXT = st.text(st.characters(blacklist_characters=LINE_BREAKS, blacklist_categories=["Cs"]))
KEYS = SAFE_TEXT.filter(lambda k: k and "=" not in k)
PAIRS = st.lists(st.tuples(st.one_of(KEYS, KEYS.map(lambda k: k + "[]")), SAFE_TEXT), max_size=12)


def git_reading(pairs: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """What git makes of these lines: the last value of a key wins; ``key[]`` collects, an empty value resets."""
    fields: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for key, value in pairs:
        if key.endswith("[]"):
            lists[key[:-2]] = [*lists.get(key[:-2], []), value] if value else []
        else:
            fields[key] = value
    return fields, lists


def as_stdin(text: str) -> io.TextIOWrapper:
    """``text`` as git's pipe looks to the helper: bytes, decoded with universal newlines (like sys.stdin)."""
    return io.TextIOWrapper(io.BytesIO(text.encode("utf-8", "surrogatepass")), encoding="utf-8",
                            errors="surrogateescape")


@PROPERTY
@given(text=st.text())
@example(text="=\n[]=x\n=[]\nkey[]\n\r\n")
def test_parse_never_raises_on_any_text(text: str) -> None:
    for lines in (io.StringIO(text), as_stdin(text), text.splitlines(keepends=True), text.split("\n")):
        request = parse(lines)
        assert all(key and "\n" not in key for key in request.fields)
        assert all(value for values in request.lists.values() for value in values)


@PROPERTY
@given(pairs=PAIRS)
@example(pairs=[("capability[]", "authtype"), ("capability[]", ""), ("capability[]", "state"), ("[]", "x")])
@example(pairs=[("password", "a=b=c"), ("host", " spaced "), ("host", "second")])
def test_format_then_parse_round_trips(pairs: list[tuple[str, str]]) -> None:
    text = format_answer(pairs)
    assert text.count("\n") == len(pairs) and "\r" not in text
    fields, lists = git_reading(pairs)
    for lines in (io.StringIO(text), as_stdin(text)):
        request = parse(lines)
        assert (request.fields, request.lists) == (fields, lists)


@PROPERTY
@given(pairs=PAIRS, where=st.integers(min_value=0), injected=st.sampled_from(LINE_BREAKS),
       into_key=st.booleans(), payload=SAFE_TEXT)
def test_format_refuses_line_break_and_nul_injection(pairs: list[tuple[str, str]], where: int, injected: str,
                                                     into_key: bool, payload: str) -> None:
    pairs = [*pairs, ("password", "secret")]
    index = where % len(pairs)
    key, value = pairs[index]
    smuggled = f"{injected}quit=1{payload}"
    pairs[index] = (key + smuggled, value) if into_key else (key, value + smuggled)
    with pytest.raises(ValueError, match="line break or NUL"):
        format_answer(pairs)


@PROPERTY
@given(key=SAFE_TEXT, value=SAFE_TEXT)
def test_format_refuses_an_equals_sign_in_a_key(key: str, value: str) -> None:
    with pytest.raises(ValueError, match="cannot be passed to git"):
        format_answer([(key + "=" + value, "x")])


# --- CodeCommit host names ---------------------------------------------------------------------------------

REGION = st.from_regex(r"[a-z]{2}(-[a-z]{3,5})?-[a-z]{1,12}-[1-9][0-9]?", fullmatch=True).filter(
    lambda region: not region.startswith("cn-"))
CHINA_REGION = st.from_regex(r"cn-[a-z]{1,12}-[1-9][0-9]?", fullmatch=True)
VPCE_ID = st.from_regex(r"vpce-[0-9a-z]{8,17}-[0-9a-z]{8}", fullmatch=True)
PORT = st.one_of(st.none(), st.integers(min_value=1, max_value=65535))
CODECOMMIT_PORT = st.sampled_from([None, 443])  # CodeCommit listens on https's own port only
NAMES = {  # form: (the name before the region, after it, whether a VPC endpoint's id comes first)
    "standard": ("git-codecommit.", ".amazonaws.com", False),
    "fips": ("git-codecommit-fips.", ".amazonaws.com", False),
    "china": ("git-codecommit.", ".amazonaws.com.cn", False),
    "vpce": (".git-codecommit.", ".vpce.amazonaws.com", True),
    "vpce-fips": (".git-codecommit-fips.", ".vpce.amazonaws.com", True),
    "vpce-china": (".git-codecommit.", ".vpce.amazonaws.com.cn", True),
}


@st.composite
def codecommit_hosts(draw: st.DrawFn) -> tuple[str, str, str, int | None]:
    """(host[:port] in a random letter case, its region, its form, its port)."""
    form = draw(st.sampled_from(sorted(NAMES)))
    region = draw(CHINA_REGION if form.endswith("china") else REGION)
    before, after, vpce = NAMES[form]
    name = f"{before}{region}{after}"
    if vpce:
        zone = draw(st.sampled_from(["", f"-{region}{draw(st.sampled_from('abcdef'))}"]))
        name = draw(VPCE_ID) + zone + name
    port = draw(CODECOMMIT_PORT)
    upper = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    name = "".join(c.upper() if up else c for c, up in zip(name, upper, strict=True))
    return name + (f":{port}" if port is not None else ""), region, form, port


@PROPERTY
@given(text=st.text())
@example(text="git-codecommit.us-east-1.amazonaws.com:99999")
@example(text="[::1")
def test_host_parsers_never_raise_unexpectedly(text: str) -> None:
    parse_codecommit_host(text)
    try:
        name, port = split_host(text)
    except ValueError:
        return
    assert name and not any(c in name for c in "/@?#\\ \t\r\n")
    assert port is None or 0 < port < 65536


@PROPERTY
@given(generated=codecommit_hosts())
def test_every_codecommit_form_is_accepted_and_its_region_recovered(
    generated: tuple[str, str, str, int | None],
) -> None:
    host, region, form, port = generated
    parsed = parse_codecommit_host(host)
    assert parsed is not None
    assert (parsed.region, parsed.form, parsed.port) == (region, form, port)
    assert parsed.hostname == host.lower().split(":")[0]
    assert split_host(host) == (parsed.hostname, port)


@PROPERTY
@given(service=st.sampled_from(["git-codecommit", "git-codecommit-fips"]), vpce=st.booleans(),
       region=st.one_of(REGION, CHINA_REGION), china_domain=st.booleans(), port=PORT)
@example(service="git-codecommit-fips", vpce=True, region="cn-north-1", china_domain=True, port=None)
def test_only_the_endpoints_aws_has_are_codecommit_hosts(service: str, vpce: bool, region: str, china_domain: bool,
                                                         port: int | None) -> None:
    """AWS's rule, stated apart from the patterns: China's regions under .amazonaws.com.cn and every other
    region under .amazonaws.com, FIPS endpoints nowhere in China, and git's https port only."""
    name = f"{service}.{region}.{'vpce.' if vpce else ''}amazonaws.com{'.cn' if china_domain else ''}"
    host = (f"vpce-0123456789abcdef0-abcdefgh.{name}" if vpce else name) + (f":{port}" if port else "")
    aws_has = (region.startswith("cn-") == china_domain and not (china_domain and service.endswith("fips"))
               and port in (None, 443))
    assert (parse_codecommit_host(host) is not None) is aws_has, host


NOT_SPACE = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")), min_size=1, max_size=12)
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@st.composite
def lookalikes(draw: st.DrawFn) -> str:
    """A CodeCommit host spoiled in one way: a label more, a suffix, a prefix, userinfo, a trailing dot, a bad port."""
    host, _, _, port = draw(codecommit_hosts())
    name = host.rsplit(":", 1)[0] if port is not None else host
    labels = name.split(".")
    at = draw(st.integers(min_value=0, max_value=len(labels)))
    spoil = draw(st.sampled_from(["label", "suffix", "prefix", "userinfo", "trailing-dot", "port", "path"]))
    if spoil == "label":
        return ".".join([*labels[:at], draw(LABEL), *labels[at:]])
    if spoil == "suffix":
        return name + draw(NOT_SPACE.filter(lambda s: not re.fullmatch(r":[0-9]{1,5}", s)))
    if spoil == "prefix":
        return draw(NOT_SPACE) + name
    if spoil == "userinfo":
        return f"{draw(st.sampled_from(['user', 'git', 'a:b', '']))}@{name}"
    if spoil == "trailing-dot":
        return name + "." + (f":{port}" if port is not None else "")
    if spoil == "port":
        return f"{name}:{draw(st.sampled_from(['0', '65536', '99999', '123456', '', 'https', '-1', '+80', ' 80']))}"
    return name + draw(st.sampled_from(["/", "/v1/repos/x", "?x", "#x", "\\x"]))


@PROPERTY
@given(host=lookalikes())
@example(host="git-codecommit.us-east-1.amazonaws.com.evil.example")
@example(host="evil-git-codecommit.us-east-1.amazonaws.com")
@example(host="git-codecommit.us-east-1.amazonaws.com.")
@example(host="user@git-codecommit.us-east-1.amazonaws.com")
def test_anything_else_is_refused(host: str) -> None:
    assert parse_codecommit_host(host) is None


@PROPERTY
@given(text=st.text())
@example(text="vpce-0123456789abcdef\u212a-abcdefgh.git-codecommit.us-east-1.vpce.amazonaws.com")  # Kelvin sign
def test_only_ascii_names_are_codecommit_hosts(text: str) -> None:
    parsed = parse_codecommit_host(text)
    assert parsed is None or text.strip().isascii()


HOST_NAMES = st.one_of(
    st.lists(LABEL, min_size=1, max_size=5).map(".".join),
    st.from_regex(r"\[[0-9a-f:]{2,39}\]", fullmatch=True),
    st.ip_addresses(v=4).map(str),
)


@PROPERTY
@given(name=HOST_NAMES, port=PORT, upper=st.booleans())
def test_split_host_round_trips(name: str, port: int | None, upper: bool) -> None:
    text = (name.upper() if upper else name) + (f":{port}" if port is not None else "")
    assert split_host(text) == (name, port)


@PROPERTY
@given(name=HOST_NAMES, digits=st.text(st.characters(whitelist_categories=["Nd"]), min_size=1, max_size=5))
@example(name="h", digits="\u0664\u0664\u0663")  # Arabic-Indic 443
def test_split_host_ports_are_ascii_digits(name: str, digits: str) -> None:
    try:
        _, port = split_host(f"{name}:{digits}")
    except ValueError:
        return
    assert digits.isascii(), f"{digits!r} was read as port {port}"


REPOSITORY = st.from_regex(r"[A-Za-z0-9._-]{1,100}", fullmatch=True)


@PROPERTY
@given(name=REPOSITORY, lead=st.sampled_from(["", "/"]), trail=st.sampled_from(["", "/"]))
def test_repository_paths_round_trip(name: str, lead: str, trail: str) -> None:
    expected = None if name in (".", "..") else name
    assert parse_repository_path(f"{lead}v1/repos/{name}{trail}") == expected


@PROPERTY
@given(text=st.text())
@example(text="v1/repos/" + "a" * 101)
@example(text="v1/repos/a/b")
def test_repository_names_are_always_plain(text: str) -> None:
    name = parse_repository_path(text)
    assert name is None or (re.fullmatch(r"[A-Za-z0-9._-]{1,100}", name) and name not in (".", ".."))
