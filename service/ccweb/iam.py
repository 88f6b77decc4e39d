"""What ccweb asks of AWS IAM and STS, as text: session policies and STS names. Pure, no I/O, no configuration.

    session_policy(access, role_arn, account, globs)   the inline policy sent with AssumeRole
    sts_name(identity)                                 SourceIdentity / RoleSessionName
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable

GIT_PULL, GIT_PUSH = "codecommit:GitPull", "codecommit:GitPush"
MAX_SESSION_POLICY = 2048
"""STS's limit on an inline session policy, in characters."""
STS_NAME_MAX = 64
_STS_NAME_CHARS = re.compile(r"[^\w+=,.@-]", re.ASCII)


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
    """``identity`` in STS's SourceIdentity/RoleSessionName alphabet, 2..64 characters, stable.

    Characters outside ``[A-Za-z0-9_+=,.@-]`` become ``-`` (so STS's reserved ``aws:`` prefix cannot
    occur); a value that had to be shortened keeps a hash of the original so two long identities never
    share a name.
    """
    name = _STS_NAME_CHARS.sub("-", identity)
    if len(name) > STS_NAME_MAX:
        digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
        name = f"{name[: STS_NAME_MAX - 9]}-{digest}"
    if len(name) < 2:
        name = f"id-{name}" if name else "id-unknown"
    return name
