"""What the person at the terminal is told when STS fails: an ``StsError`` as the contract's 503.

Each case has its own ``reason`` for logs and metrics: STS is failing or throttling (after the retries: try
again in a few seconds), the service has no AWS identity of its own, or AWS refused the session. A refusal is
an operator's fix, so its Retry-After is a minute; the refusals that session tags cause say which fix:

    PackedPolicyTooLarge                       the session policy and tags (the rule's, and EKS Pod Identity's
                                               transitive ones) are over STS's packed size limit
    AccessDenied naming sts:TagSession         the role's trust policy (or the service's own) does not allow tags
    InvalidParameterValue / ValidationError    STS refused the tags themselves (duplicate keys, a transitive
      about tags                               key that is no tag, one the service's own session already set)
    any other refusal                          the role's trust policy and permissions

AWS's own words go to the log (they name the key or the percentage of the limit), never to the caller.
"""

from __future__ import annotations

import logging
import re

from ccweb.errors import UpstreamUnavailable
from ccweb.sts import NO_CREDENTIALS, StsError

log = logging.getLogger("ccweb.sessions")  # one logger for the whole STS path, as operators know it

REFUSAL_RETRY_AFTER = 60
"""Retry-After of a refusal: nothing changes until the operators act."""
MAX_LOGGED_CHARACTERS = 1000
"""How much of AWS's message a log line keeps."""
_ABOUT_TAGS = re.compile(r"\btags?\b", re.IGNORECASE)  # "Duplicate tag keys", "at 'tags.1.member.key'"


def unavailable(exc: StsError, role_arn: str) -> UpstreamUnavailable:
    """The 503 for ``exc``, an AssumeRole of ``role_arn`` that failed after its retries."""
    if exc.retryable:
        return UpstreamUnavailable(
            "AWS STS is failing or throttling right now; try again in a few seconds.",
            reason="sts_unavailable",
        )
    if exc.code == NO_CREDENTIALS:
        return UpstreamUnavailable(
            "ccweb has no AWS credentials of its own to assume roles with; ask the ccweb operators to give "
            "the service an AWS identity (IRSA, an instance role, or AWS_* variables).",
            reason="sts_no_credentials",
            retry_after=REFUSAL_RETRY_AFTER,
        )
    log.warning("AssumeRole %s refused by AWS: %s: %s", role_arn, exc.code,
                exc.message[:MAX_LOGGED_CHARACTERS].replace("\n", " "))
    detail, reason = _refusal(exc, role_arn)
    return UpstreamUnavailable(detail, reason=reason, retry_after=REFUSAL_RETRY_AFTER)


def _refusal(exc: StsError, role_arn: str) -> tuple[str, str]:
    """The sentence and the reason for AWS's refusal ``exc``."""
    if exc.code == "PackedPolicyTooLarge":
        return (
            f"AWS refused the session for the role {role_arn}: its session policy and session tags together are "
            "over STS's packed size limit (PackedPolicyTooLarge); ask the ccweb operators to give this rule fewer "
            "or shorter session tags or fewer repository patterns, and, if ccweb runs on EKS Pod Identity, to "
            "disable the session tags of its Pod Identity association (they pass on to every session ccweb makes).",
            "sts_packed_policy_too_large",
        )
    if exc.code == "AccessDenied" and "sts:TagSession" in exc.message:
        return (
            f"AWS refused to let ccweb tag its session for the role {role_arn} (sts:TagSession); ask the ccweb "
            "operators to allow sts:TagSession in that role's trust policy and in the service's own permissions.",
            "sts_tag_session_denied",
        )
    if exc.code in {"InvalidParameterValue", "ValidationError"} and _ABOUT_TAGS.search(exc.message):
        return (
            f"AWS refused the session tags ccweb sent for the role {role_arn} ({exc.code}); ask the ccweb "
            "operators to check this rule's session_tags and transitive_session_tags (the service's log has "
            "AWS's words).",
            "sts_tags_refused",
        )
    return (
        f"AWS refused to let ccweb assume the role {role_arn} ({exc.code}); "
        "ask the ccweb operators to check that role's trust policy and permissions.",
        "sts_refused",
    )
