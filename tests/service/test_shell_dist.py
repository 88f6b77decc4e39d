"""``GET /helper/ccweb-helper.sh``: the CodeCommit hosts filled in as a POSIX ERE that the real ``grep -E`` reads
as the Python helper reads hosts, the same bytes and ETag from every replica, and 304 for a current ETag."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccweb.app import create_app
from ccweb.config import parse_config
from ccweb.downloads import etag_matches
from ccweb.shell_dist import MARKER, build_script, codecommit_hosts_ere, form_ere, helper_script
from ccweb_helper.hosts import HOST_FORMS, REGION_PATTERN, HostForm, parse_codecommit_host
from shell.hostsample import sample, zone_elsewhere
from support import RecordingSTS, serve

ACCEPTED = [
    *(form.sample for form in HOST_FORMS),
    *(form.sample + ":443" for form in HOST_FORMS),
    "git-codecommit.us-gov-west-1.amazonaws.com", "git-codecommit-fips.us-gov-east-1.amazonaws.com",
    "git-codecommit.eu-central-2.amazonaws.com", "git-codecommit.ap-southeast-4.amazonaws.com:443",
    "git-codecommit.cn-northwest-1.amazonaws.com.cn",
    "vpce-0123456789abcdef0-abcdefgh-us-east-1a.git-codecommit.us-east-1.vpce.amazonaws.com",
    "vpce-0123456789abcdef0-abcdefgh.git-codecommit-fips.ca-central-1.vpce.amazonaws.com:443",
]
LOOKALIKES = [
    "git-codecommit.us-east-1.amazonaws.com.evil.example", "evil-git-codecommit.us-east-1.amazonaws.com",
    "xgit-codecommit.us-east-1.amazonaws.com", "git-codecommit.us-east-1.amazonaws.com.",
    "user@git-codecommit.us-east-1.amazonaws.com", "git-codecommit.us-east-1.amazonaws.com:444",
    "git-codecommit.us-east-1.amazonaws.com:443:443", "git-codecommit.us-east-1.amazonaws.com:4430",
    "git-codecommitXus-east-1.amazonaws.com", "git-codecommit.us-east-1Xamazonaws.com",
    "git-codecommit.us-east-1.amazonawsXcom", "git-codecommit.us.east.1.amazonaws.com",
    "git-codecommit..amazonaws.com", "git-codecommit.us-east-1.amazonaws.co",
    "git-codecommit.us-east-1.amazonaws.com.cn.evil.example", "git-codecommit.us-east-1.amazonaws.comcn",
    "git-codecommit.us_east_1.amazonaws.com", "git-codecommit.us-east-1.amazonaws.com/",
    "a.b.git-codecommit.us-east-1.vpce.amazonaws.com", "git-codecommit.us-east-1.vpce.amazonaws.com",
    "codecommit.us-east-1.amazonaws.com", "git-codecommit.amazonaws.com", "", " ",
    # where git's `*` stands, a region (of the form's partition) or an endpoint id, not any label
    "git-codecommit.s3.amazonaws.com", "git-codecommit.s3-external-1.amazonaws.com",
    "git-codecommit-fips.s3.amazonaws.com", "git-codecommit.x.amazonaws.com.cn",
    "evil.git-codecommit.us-east-1.vpce.amazonaws.com", "git-codecommit.cn-north-1.amazonaws.com",
    "git-codecommit.us-east-1.amazonaws.com.cn", "git-codecommit-fips.cn-north-1.amazonaws.com.cn",
    "vpce-0123456789abcdef0-abcdefgh.git-codecommit.cn-north-1.vpce.amazonaws.com",
    "vpce-0123-abcdefgh.git-codecommit.us-east-1.vpce.amazonaws.com",
    "vpce-0123456789abcdef0-abcdefgh-us-east-1.git-codecommit.us-east-1.vpce.amazonaws.com",
    "git-codecommit.us-east-0.amazonaws.com", "git-codecommit.useast-1.amazonaws.com",
]


def grep_matches(ere: str, hosts: list[str], grep: list[str] | None = None) -> list[str]:
    """The lines of ``hosts`` that the real ``grep -E`` (or ``grep``) matches with ``ere``."""
    run = subprocess.run([*(grep or ["grep"]), "-E", "-e", ere], input="".join(f"{h}\n" for h in hosts),
                         capture_output=True, text=True, check=False, timeout=30)
    assert run.returncode in (0, 1), run.stderr
    return run.stdout.splitlines()


GREPS = [pytest.param(["grep"], id="grep")]
if shutil.which("busybox"):
    GREPS.append(pytest.param(["busybox", "grep"], id="busybox-grep"))


@pytest.mark.parametrize("grep", GREPS)
def test_grep_finds_every_codecommit_host_and_no_lookalike(grep: list[str]) -> None:
    assert all(parse_codecommit_host(host) is not None for host in ACCEPTED)
    assert all(parse_codecommit_host(host) is None for host in LOOKALIKES)
    ere = codecommit_hosts_ere()
    assert grep_matches(ere, ACCEPTED, grep) == ACCEPTED
    assert grep_matches(ere, LOOKALIKES, grep) == []


def test_the_expression_is_one_alternative_per_host_form() -> None:
    ere = codecommit_hosts_ere()
    assert ere == "^(" + "|".join(form_ere(form.pattern) for form in HOST_FORMS) + ")$"
    assert "'" not in ere, "it sits between single quotes in the script"
    assert all(re.fullmatch(form_ere(form.pattern), form.sample) for form in HOST_FORMS)


@pytest.mark.parametrize("pattern", [
    r"git-codecommit\.(?<=x)[a-z]+\.amazonaws\.com", r"git-codecommit\.\w+\.amazonaws\.com",
    r"git-codecommit\..*\.amazonaws\.com", r"git-codecommit\.(?!us-)[a-z]+\.amazonaws\.com",
    r"(?P<a>x)(?(a)y|z)", r"git-codecommit\.[^.]+\.amazonaws\.com",
], ids=["look-behind", "class-escape", "any-character", "other-look-ahead", "conditional", "negated-class"])
def test_a_pattern_the_translation_does_not_know_is_refused(pattern: str) -> None:
    """The script must never answer for more hosts than the Python helper because a pattern of HOST_FORMS grew a
    construct that means something else, or nothing, in a POSIX ERE: the service then refuses to build it."""
    with pytest.raises(ValueError, match="not translated to a POSIX ERE"):
        form_ere(pattern)


@pytest.mark.parametrize("grep", GREPS)
def test_grep_and_the_python_parser_agree_on_a_large_sample(grep: list[str]) -> None:
    """Thousands of hosts, half of them lookalikes: the ERE accepts exactly what ``parse_codecommit_host`` accepts,
    but for zonal VPC endpoint names whose zone is in another region (the script compares those itself)."""
    hosts = sample(5000)
    accepted = {host for host in hosts if parse_codecommit_host(host) is not None}
    elsewhere = {host for host in hosts if zone_elsewhere(host)}
    assert len(accepted) > 500 and len(elsewhere) > 20
    assert grep_matches(codecommit_hosts_ere(), hosts, grep) == [h for h in hosts if h in accepted | elsewhere]


REGIONS = st.from_regex(re.compile(REGION_PATTERN), fullmatch=True)
ENDPOINT_IDS = st.from_regex(re.compile(r"vpce-[0-9a-z]{8,17}-[0-9a-z]{8}"), fullmatch=True)


def in_partition(form: HostForm, region: str) -> str:
    """``region`` moved into the form's partition: China's (``cn-``) for a China form, else any other."""
    rest = region[2:]
    return "cn" + rest if "china" in form.name else ("us" + rest if region.startswith("cn") else region)


def test_hosts_of_every_form_with_any_region_are_found() -> None:
    hosts: list[str] = []

    @settings(max_examples=200, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(form=st.sampled_from(HOST_FORMS), region=REGIONS, endpoint=ENDPOINT_IDS, port=st.sampled_from(["", ":443"]))
    def collect(form: HostForm, region: str, endpoint: str, port: str) -> None:
        sample = parse_codecommit_host(form.sample)
        assert sample is not None
        host = form.sample.replace(sample.region, in_partition(form, region))
        host = host.replace("vpce-0123456789abcdef0-abcdefgh", endpoint) + port
        parsed = parse_codecommit_host(host)
        assert parsed is not None and parsed.form == form.name, host
        hosts.append(host)

    collect()
    assert len(hosts) >= 150
    assert grep_matches(codecommit_hosts_ere(), hosts) == hosts


@pytest.mark.parametrize(("template", "count"), [("#!/bin/sh\n", 0), (f"A='{MARKER}'\nB='{MARKER}'\n", 2)],
                         ids=["no-marker", "two-markers"])
def test_a_template_without_exactly_one_marker_is_refused(template: str, count: int) -> None:
    with pytest.raises(ValueError, match=f"exactly once, not {count} times"):
        build_script(template)


def test_the_marker_line_is_filled_in() -> None:
    script = build_script(f"#!/bin/sh\nCODECOMMIT_HOSTS='{MARKER}'\n")
    assert script.content == f"#!/bin/sh\nCODECOMMIT_HOSTS='{codecommit_hosts_ere()}'\n".encode()
    assert script.etag == f'"{hashlib.sha256(script.content).hexdigest()}"'


def test_the_packaged_script_has_its_hosts_and_no_marker_left() -> None:
    content = helper_script().decode("utf-8")
    assert content.startswith("#!/bin/sh")
    assert f"CODECOMMIT_HOSTS='{codecommit_hosts_ere()}'\n" in content
    assert MARKER not in content


@pytest.mark.parametrize(("header", "matches"), [
    (None, False), ("", False), ('"abc"', True), ('W/"abc"', True), ('"x", "abc"', True), ("*", True),
    ('"abcd"', False), ("abc", False), ('"ABC"', False),
], ids=["none", "empty", "same", "weak", "in-a-list", "star", "longer", "unquoted", "other-case"])
def test_if_none_match(header: str | None, matches: bool) -> None:
    assert etag_matches(header, '"abc"') is matches


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[str]]:
    """Two services with different policies, as two replicas (or two releases of a policy) would be."""
    def config(audience: str) -> dict[str, object]:
        return {"issuers": [{"name": "corp", "issuer": "http://127.0.0.1:9", "audiences": [audience]}]}

    with serve(create_app(parse_config(config("one")), sts=RecordingSTS())) as first, \
            serve(create_app(parse_config(config("two")), sts=RecordingSTS())) as second:
        yield [first, second]


def test_every_replica_serves_the_same_script_under_its_sha256(replicas: list[str]) -> None:
    fresh = subprocess.run([sys.executable, "-c", "import sys; from ccweb.shell_dist import helper_script; "
                            "sys.stdout.buffer.write(helper_script())"], capture_output=True, check=True, timeout=60)
    answers = [httpx.get(f"{url}/helper/ccweb-helper.sh") for url in replicas]
    for answer in answers:
        assert answer.status_code == 200
        assert answer.content == fresh.stdout, "the bytes a fresh process builds"
        assert answer.headers["etag"] == f'"{hashlib.sha256(answer.content).hexdigest()}"'
        assert answer.headers["content-type"] == "text/plain; charset=utf-8"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "public, max-age=300"


def test_a_current_etag_is_answered_304_and_an_old_one_gets_the_script(replicas: list[str]) -> None:
    etag = httpx.get(f"{replicas[0]}/helper/ccweb-helper.sh").headers["etag"]
    for header in (etag, f"W/{etag}", f'"old", {etag}'):
        answer = httpx.get(f"{replicas[1]}/helper/ccweb-helper.sh", headers={"If-None-Match": header})
        assert (answer.status_code, answer.content, answer.headers["etag"]) == (304, b"", etag)
    stale = httpx.get(f"{replicas[1]}/helper/ccweb-helper.sh", headers={"If-None-Match": '"old"'})
    assert (stale.status_code, stale.content) == (200, helper_script())
