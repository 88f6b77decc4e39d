"""The one table of CodeCommit host forms (``hosts.HOST_FORMS``), both ways round, judged by the real git.

After ``ccweb-helper setup`` in a throwaway HOME whose user already has a credential helper for every host:

- every host the service signs for (each form, regions of every partition, with and without ``:443``, each
  shape of VPC endpoint name, any letter case) is routed by git to ccweb-helper, and only to it;
- every pattern setup writes routes only hosts the service signs for, up to the content of the one label each
  ``*`` stands for (a region, an endpoint's id), and only names inside AWS's own domains: lookalikes with a
  label more, another suffix or port, FIPS in China, get the user's own helper as any other host does
  (git also takes a name with a trailing dot for the name without, which the service refuses: no one else
  is asked for it either).

``ccweb-helper`` is stood in for by a command that says it was asked, so what is checked is git's routing.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from ccweb_helper.hosts import HOST_FORMS, HostForm, parse_codecommit_host
from support import home_env

CCWEB = "ccweb-helper asked"
OTHER = "the other helper asked"
AWS_DOMAINS = (".amazonaws.com", ".amazonaws.com.cn")

REGIONS = {"aws": ["us-east-1", "us-gov-west-1", "ap-southeast-3", "eu-central-2", "il-central-1"],
           "china": ["cn-north-1", "cn-northwest-1"]}
ID = "vpce-0123456789abcdef0-abcdefgh"


def signed_hosts() -> dict[str, str]:
    """id: a host the service signs for, of every form, region, VPC endpoint shape and port."""
    hosts: dict[str, str] = {}
    for form in HOST_FORMS:
        regions = REGIONS["china" if form.name.endswith("china") else "aws"]
        for region in regions:
            name = form.sample.replace(_region_of(form), region)
            names = {"": name}
            if form.name.startswith("vpce"):
                names = {"": name, "zonal-": name.replace(ID, f"{ID}-{region}b", 1),
                         "old-id-": name.replace(ID, "vpce-0123abcd-abcdefgh", 1)}
            for shape, host in names.items():
                for port in ("", ":443"):
                    hosts[f"{form.name}-{shape}{region}{port}"] = host + port
    hosts["upper-case"] = HOST_FORMS[0].sample.upper()
    hosts["mixed-case-vpce"] = "VPCE-0123456789ABCDEF0-AbcdEFGH.Git-CodeCommit.US-East-1.vpce.amazonaws.com"
    return hosts


def _region_of(form: HostForm) -> str:
    parsed = parse_codecommit_host(form.sample)
    assert parsed is not None, form
    return parsed.region


SIGNED = signed_hosts()
LOOKALIKES = {
    "suffix": "git-codecommit.us-east-1.amazonaws.com.evil.example",
    "china-suffix": "git-codecommit.cn-north-1.amazonaws.com.cn.evil.example",
    "vpce-suffix": f"{ID}.git-codecommit.us-east-1.vpce.amazonaws.com.evil.example",
    "other-domain": "git-codecommit.us-east-1.amazonaws.co",
    "other-domain-label": "git-codecommit.us-east-1.evil-amazonaws.com",
    "label-after-region": "git-codecommit.us-east-1.evil.amazonaws.com",
    "label-before": "evil.git-codecommit.us-east-1.amazonaws.com",
    "prefix": "evil-git-codecommit.us-east-1.amazonaws.com",
    "no-region": "git-codecommit.amazonaws.com",
    "vpce-two-labels": f"a.{ID}.git-codecommit.us-east-1.vpce.amazonaws.com",
    "vpce-without-id": "git-codecommit.us-east-1.vpce.amazonaws.com",
    "vpce-no-vpce-label": f"{ID}.git-codecommit.us-east-1.amazonaws.com",
    "fips-in-china": "git-codecommit-fips.cn-north-1.amazonaws.com.cn",
    "fips-vpce-in-china": f"{ID}.git-codecommit-fips.cn-north-1.vpce.amazonaws.com.cn",
    "port-8443": "git-codecommit.us-east-1.amazonaws.com:8443",
    "vpce-port-8443": f"{ID}.git-codecommit.us-east-1.vpce.amazonaws.com:8443",
    "port-80": "git-codecommit-fips.us-east-1.amazonaws.com:80",
}
# Routed by a pattern's `*` but not signed: a label that is no region or endpoint id of AWS's, inside its domains.
# (``get`` prints nothing for them and git, whose list of helpers setup emptied, asks no one else.)
WILDCARD_ONLY = {
    "china-region-outside-china": "git-codecommit.cn-north-1.amazonaws.com",
    "other-region-in-china": "git-codecommit.us-east-1.amazonaws.com.cn",
    "not-a-region": "git-codecommit.evil.amazonaws.com",
    "not-an-endpoint-id": "evil.git-codecommit.us-east-1.vpce.amazonaws.com",
    "zone-of-another-region": f"{ID}-us-west-2a.git-codecommit.us-east-1.vpce.amazonaws.com",
}


# git takes a name with a trailing dot for the name without (so only ccweb-helper is asked); the service refuses
# it like any other spelling outside its patterns.
SAME_NAME = {
    "trailing-dot": "git-codecommit.us-east-1.amazonaws.com.",
    "vpce-trailing-dot": f"{ID}.git-codecommit.us-east-1.vpce.amazonaws.com.",
}


@pytest.fixture(scope="module")
def git_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """git's environment after ``ccweb-helper setup`` in a HOME whose user has a helper for every host."""
    home = tmp_path_factory.mktemp("home")
    env = home_env(home, CCWEB_TIMEOUT="2")
    (home / ".gitconfig").write_text(f'[credential]\n\thelper = "!f() {{ echo {OTHER} >&2; }}; f"\n')
    done = subprocess.run(
        [sys.executable, "-m", "ccweb_helper", "setup", "--url", "http://127.0.0.1:9",
         "--helper", f"!f() {{ echo '{CCWEB}' >&2; }}; f"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return env


def asked(env: dict[str, str], host: str) -> list[str]:
    """The credential helpers git asks for ``https://<host>/v1/repos/demo``, in order."""
    filled = subprocess.run(["git", "credential", "fill"], input=f"protocol=https\nhost={host}\npath=v1/repos/demo\n\n",
                            env=env, capture_output=True, text=True, timeout=30, check=False)
    return [line for line in filled.stderr.splitlines() if line in (CCWEB, OTHER)]


def filled_in(host: str) -> str | None:
    """``host`` with the labels a matching git pattern's ``*`` stands for replaced by its form's sample's, when
    it has the shape of a form's git pattern (the rest of each label equal); else None."""
    name, _, port = host.lower().partition(":")
    labels = name.split(".")
    for form in HOST_FORMS:
        pattern = form.git_url.partition("://")[2].split(".")
        sample = form.sample.split(".")
        if len(pattern) == len(labels) and all(p in ("*", label) for p, label in zip(pattern, labels, strict=True)):
            filled = [s if p == "*" else label for p, s, label in zip(pattern, sample, labels, strict=True)]
            return ".".join(filled) + (f":{port}" if port else "")
    return None


def test_each_form_has_one_git_pattern_and_a_sample_of_its_own() -> None:
    assert len({form.name for form in HOST_FORMS}) == len({form.git_url for form in HOST_FORMS}) == len(HOST_FORMS)
    for form in HOST_FORMS:
        parsed = parse_codecommit_host(form.sample)
        assert parsed is not None and parsed.form == form.name, form
        pattern = form.git_url.partition("://")[2].split(".")
        assert form.git_url.startswith("https://") and len(pattern) == len(form.sample.split(".")), form
        assert filled_in(form.sample) == form.sample


@pytest.mark.parametrize("host", list(SIGNED.values()), ids=list(SIGNED))
def test_every_host_the_service_signs_for_is_routed_to_ccweb_helper_only(git_env: dict[str, str], host: str) -> None:
    assert parse_codecommit_host(host) is not None
    assert asked(git_env, host) == [CCWEB]


@pytest.mark.parametrize("host", list(LOOKALIKES.values()), ids=list(LOOKALIKES))
def test_lookalikes_are_neither_signed_nor_routed(git_env: dict[str, str], host: str) -> None:
    assert parse_codecommit_host(host) is None
    assert asked(git_env, host) == [OTHER]


@pytest.mark.parametrize("host", list(WILDCARD_ONLY.values()), ids=list(WILDCARD_ONLY))
def test_a_pattern_routes_more_only_in_the_labels_its_wildcards_stand_for(git_env: dict[str, str], host: str) -> None:
    assert parse_codecommit_host(host) is None
    assert asked(git_env, host) == [CCWEB]  # and get answers nothing for it, so git prompts: no password leaves
    filled = filled_in(host)
    assert filled is not None and parse_codecommit_host(filled) is not None


@pytest.mark.parametrize("host", list(SAME_NAME.values()), ids=list(SAME_NAME))
def test_a_trailing_dot_is_refused_and_seen_by_no_other_helper(git_env: dict[str, str], host: str) -> None:
    assert parse_codecommit_host(host) is None
    assert asked(git_env, host) == [CCWEB]
    assert parse_codecommit_host(host.rstrip(".")) is not None


# --- the same, over generated hosts: samples spoiled label by label ---------------------------------------

POOL = sorted({label for form in HOST_FORMS for label in form.sample.split(".")}
              | {region for regions in REGIONS.values() for region in regions}
              | {"evil", "example", "com", "cn", "vpce", "x", f"{ID}-us-east-1a"})


@st.composite
def near_misses(draw: st.DrawFn) -> str:
    """A sample host with labels replaced, added or removed (from the labels of every form), and a port."""
    labels = draw(st.sampled_from([form.sample for form in HOST_FORMS])).split(".")
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        at = draw(st.integers(min_value=0, max_value=len(labels)))
        change = draw(st.sampled_from(["replace", "insert", "delete"]))
        if change == "insert" or at == len(labels):
            labels.insert(at, draw(st.sampled_from(POOL)))
        elif change == "replace":
            labels[at] = draw(st.sampled_from(POOL))
        elif len(labels) > 1:
            del labels[at]
    return ".".join(labels) + draw(st.sampled_from(["", "", ":443", ":8443"]))


@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(host=near_misses())
@example(host="git-codecommit-fips.cn-north-1.vpce.amazonaws.com.cn")
@example(host=f"{ID}.git-codecommit-fips.cn-north-1.vpce.amazonaws.com.cn")
def test_what_git_routes_and_what_the_service_signs_agree(git_env: dict[str, str], host: str) -> None:
    helpers = asked(git_env, host)
    routed = helpers == [CCWEB]
    assert routed or helpers == [OTHER], helpers
    signed = parse_codecommit_host(host) is not None
    event(f"{'routed' if routed else 'not routed'}, {'signed' if signed else 'not signed'}")
    if signed:
        assert routed, f"signed but not routed: {host}"
    if routed:
        assert host.lower().partition(":")[0].endswith(AWS_DOMAINS), host
        filled = filled_in(host)
        assert filled is not None and parse_codecommit_host(filled) is not None, f"routed, but no form: {host}"
