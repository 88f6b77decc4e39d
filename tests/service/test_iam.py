"""``sts_name``: one SourceIdentity / RoleSessionName per identity, in STS's alphabet, the same on every run.

The golden table pins the mapping (CloudTrail searches and IAM conditions on ``sts:SourceIdentity`` are written
against its output, so a change must be deliberate); the properties look for two identities that share a
name, over families where the mapping used to fold them together: ``/`` or a non-ASCII letter against ``-``,
long names with a common start, and a name that is literally another identity's changed form, in its own
letter case or another. Derandomized.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ccweb.cli import main
from ccweb.iam import sts_name

PROPERTY = settings(max_examples=400, derandomize=True, database=None, deadline=None)
STS_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")
"""What STS accepts as a SourceIdentity and a RoleSessionName."""
CHANGED = re.compile(r"(?P<prefix>[A-Za-z0-9_+=,.@-]{0,43})=(?P<hash>[0-9a-f]{20})")
"""What a changed name is: its prefix, ``=`` and the first 20 hex digits of the SHA-256, in lower case."""
LOOKS_CHANGED = re.compile(r"[A-Za-z0-9_+=,.@-]{0,43}=[0-9a-fA-F]{20}")
"""What no kept name may look like: a changed name in any letter case."""

GOLDEN = [
    ("ann@example.com", "ann@example.com"),
    ("j-rg@example.com", "j-rg@example.com"),
    ("12345", "12345"),
    ("alice=0123456789ABCDEF0123", "alice=0123456789ABCDEF0123=9d022f1d1ee243bb1c74"),
    ("repo:acme/app:ref:refs/heads/main", "repo-acme-app-ref-refs-heads-main=fc58e6ceb596cd5e8b6a"),
    ("repo:acme/app:ref:refs/heads/release/1.0", "repo-acme-app-ref-refs-heads-release-1.0=96818b6222f003e2072b"),
    ("repo:acme/app:ref:refs/heads/release-1.0", "repo-acme-app-ref-refs-heads-release-1.0=c3406a66e61c01cbc6f9"),
    ("jörg@example.com", "j-rg@example.com=96949592d14b07f436cc"),
    ("Zoë Smith", "Zo--Smith=20d880d2eaa36b880e5e"),
    ("x", "x=2d711642b726b0440162"),
    ("", "=e3b0c44298fc1c149afb"),
    ("aws:root", "aws-root=931d7d0233eb496739df"),
    ("a" * 70 + "@example.com", "a" * 43 + "=20e6f1a70c44d8832998"),
    ("a" * 70 + "@example.org", "a" * 43 + "=0ffad590527dc2384576"),
    ("alice=0123456789abcdef0123", "alice=0123456789abcdef0123=15c6513a9442127dbb34"),
    ("\ud800x", "-x=74a7e4a2ddd5cec74090"),
    ("repo-acme-app-ref-refs-heads-main=FC58E6CEB596CD5E8B6A",
     "repo-acme-app-ref-refs-heads-main=FC58E6CEB=6ce33d42d1ec5fba1dea"),
    ("alice=0123456789aBcDeF0123", "alice=0123456789aBcDeF0123=34dadee12224d1a10f88"),
]
GOLDEN_IDS = ["email-kept", "dash-kept", "number-kept", "upper-hex-changed", "ci-subject", "slash", "dash-for-slash",
              "non-ascii", "space-and-non-ascii", "too-short", "empty", "reserved-prefix", "long-com", "long-org",
              "looks-changed", "lone-surrogate", "ci-subject-s-name-in-capitals", "mixed-case-hex"]


@pytest.mark.parametrize(("identity", "name"), GOLDEN, ids=GOLDEN_IDS)
def test_the_mapping_is_the_documented_one(identity: str, name: str) -> None:
    assert sts_name(identity) == name


@pytest.mark.parametrize(("identity", "name"), [(i, n) for i, n in GOLDEN if i != n],
                         ids=[k for (i, n), k in zip(GOLDEN, GOLDEN_IDS, strict=True) if i != n])
def test_a_changed_name_ends_in_the_sha256_an_operator_can_recompute(identity: str, name: str) -> None:
    """``printf %s "$identity" | sha256sum | cut -c1-20`` gives the part after the last ``=``."""
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()
    assert name.rpartition("=")[2] == digest[:20]


def kept_or_changed(identity: str) -> None:
    """The one rule: kept when already a name that does not look changed; else prefix, ``=`` and the hash."""
    name = sts_name(identity)
    assert STS_NAME.fullmatch(name), name
    assert not name.lower().startswith("aws:")
    assert sts_name(identity) == name  # stable
    looks_changed = LOOKS_CHANGED.fullmatch(identity) is not None
    if STS_NAME.fullmatch(identity) and not looks_changed:
        assert name == identity
    else:
        match = CHANGED.fullmatch(name)
        assert match is not None, name
        assert match["hash"] == hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:20]
        assert match["prefix"] == re.sub(r"[^A-Za-z0-9_+=,.@-]", "-", identity[:43])


@PROPERTY
@given(identity=st.text(st.characters(codec=None), max_size=90))
@example(identity="a")
@example(identity="aws:x")
@example(identity="é" * 64)
def test_every_name_is_one_sts_accepts_and_kept_only_when_it_already_was(identity: str) -> None:
    kept_or_changed(identity)


NEAR = st.text(alphabet="a-/:ö=0", max_size=12)
"""Identities a character apart in the ways the old mapping folded together."""


def family(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``base``, and also each of its values as a name (an identity that is literally another's changed form)."""
    return st.one_of(base, base.map(sts_name), base.map(lambda v: sts_name(sts_name(v))),
                     base.map(lambda v: sts_name(v).upper()))


@PROPERTY
@given(identities=st.lists(family(NEAR), min_size=2, max_size=8, unique=True))
@example(identities=["release/1.0", "release-1.0", "release:1.0"])
@example(identities=["jörg@x", "j-rg@x", "j:rg@x"])
@example(identities=["x", sts_name("x"), sts_name(sts_name("x"))])
def test_distinct_identities_get_distinct_names(identities: list[str]) -> None:
    names = [sts_name(identity) for identity in identities]
    assert len(set(names)) == len(names), dict(zip(identities, names, strict=True))


@PROPERTY
@given(prefix=st.text(alphabet="ab:/", min_size=64, max_size=80),
       tails=st.lists(st.text(alphabet="ab:/ö", max_size=6), min_size=2, max_size=5, unique=True))
def test_long_identities_with_a_common_start_get_distinct_names(prefix: str, tails: list[str]) -> None:
    names = [sts_name(prefix + tail) for tail in tails]
    assert len(set(names)) == len(names)
    assert all(len(name) == 64 for name in names)


@PROPERTY
@given(identity=family(NEAR) | st.text(max_size=70))
def test_claiming_another_identitys_name_never_yields_it(identity: str) -> None:
    """A token whose claim is literally someone's changed name gets a name of its own, never that one."""
    name = sts_name(identity)
    if name != identity:
        assert sts_name(name) != name


@PROPERTY
@given(identity=family(NEAR) | st.text(max_size=70))
@example(identity="repo:acme/app:ref:refs/heads/main")
def test_no_name_equals_another_identitys_changed_name_ignoring_case(identity: str) -> None:
    """A claim holding someone's changed name with other capitals (``…=FC58E6…`` for ``…=fc58e6…``) gets a name
    of its own even where case is ignored (``StringEqualsIgnoreCase``, a CloudTrail search, a reader)."""
    name = sts_name(identity)
    if name == identity:
        return
    for variant in (name.upper(), name.swapcase(), name[:-20] + name[-20:].upper(), name.title()):
        if variant != name:
            assert sts_name(variant).lower() != name.lower(), variant


def test_the_command_prints_the_name_of_each_identity(capsys: pytest.CaptureFixture[str]) -> None:
    identities = [identity for identity, _ in GOLDEN[:8]] + ["-leading-dash"]
    assert main(["sts-name", "--", *identities]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [name for _, name in GOLDEN[:8]] + ["-leading-dash"]
    assert err == ""
