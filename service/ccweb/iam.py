"""What ccweb asks of AWS IAM and STS, as text: session policies and STS names. Pure, no I/O, no configuration.

    session_policy(access, role_arn, account, globs)   the inline policy sent with AssumeRole
    sts_name(identity)                                 SourceIdentity / RoleSessionName, one-to-one
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable

GIT_PULL, GIT_PUSH = "codecommit:GitPull", "codecommit:GitPush"
MAX_SESSION_POLICY = 2048
"""STS's limit on an inline session policy, in characters."""
STS_NAME_MIN, STS_NAME_MAX = 2, 64
"""STS's bounds on a SourceIdentity and a RoleSessionName, in characters (of ``[A-Za-z0-9_+=,.@-]``)."""
STS_NAME_HASH_HEX = 20
"""Hex digits of SHA-256 that end a name which had to change: 80 bits, so that finding another identity with
the same name (a second preimage) stays out of reach."""
_OUTSIDE_ALPHABET = re.compile(r"[^\w+=,.@-]", re.ASCII)
_CHANGED = re.compile(rf".*=[0-9a-fA-F]{{{STS_NAME_HASH_HEX}}}", re.ASCII | re.DOTALL)
"""What every changed name looks like, in either letter case (and so what no kept name may look like): ``…=<hex
digits>``. Either case, so that no kept name equals a changed one where case is ignored (an IAM condition with
``StringEqualsIgnoreCase``, a CloudTrail search, a person reading a log)."""


def actions(access: str) -> list[str]:
    """The CodeCommit git actions of ``read`` (pull) or ``write`` (pull and push) access."""
    return [GIT_PULL, GIT_PUSH] if access == "write" else [GIT_PULL]


def repository_arns(role_arn: str, account: str, globs: Iterable[str]) -> list[str]:
    """The repositories ``[region/]name`` globs cover, as CodeCommit ARNs in the role's partition and account."""
    partition = role_arn.split(":", 2)[1]
    arns = set()
    for glob in globs:
        region, _, name = glob.rpartition("/")
        arns.add(f"arn:{partition}:codecommit:{region or '*'}:{account}:{name}")
    return sorted(arns)


def session_policy(access: str, role_arn: str, account: str, globs: Iterable[str]) -> str:
    """The inline session policy: the git actions of ``access`` on the globs' repositories, in one account."""
    statement = {"Effect": "Allow", "Action": actions(access), "Resource": repository_arns(role_arn, account, globs)}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, separators=(",", ":"))


def sts_name(identity: str) -> str:
    """``identity`` as STS's SourceIdentity and RoleSessionName: one-to-one, stable, 2..64 characters of
    ``[A-Za-z0-9_+=,.@-]``.

    A name that is already one (``ann@example.com``) is kept as it is. Any other (characters outside the
    alphabet, too long, too short, or one that ends as a changed name does) changes: its first characters
    with every character outside the alphabet as ``-``, then ``=`` and the first 20 hex digits of the SHA-256
    of the identity's UTF-8 bytes (``repo-acme-app-ref-refs-heads-main=3f0c…``). A kept name never ends in
    ``=`` and 20 hex digits (of either case), so it never equals a changed one, even ignoring case, and changed
    names differ by their hash; ``:`` is outside the alphabet, so no name starts with STS's reserved ``aws:``.
    """
    if (STS_NAME_MIN <= len(identity) <= STS_NAME_MAX and not _OUTSIDE_ALPHABET.search(identity)
            and not _CHANGED.fullmatch(identity)):
        return identity
    # surrogatepass: a JSON string may hold a lone surrogate, which strict UTF-8 cannot encode.
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:STS_NAME_HASH_HEX]
    prefix = _OUTSIDE_ALPHABET.sub("-", identity[: STS_NAME_MAX - STS_NAME_HASH_HEX - 1])
    return f"{prefix}={digest}"
