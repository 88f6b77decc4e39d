"""What the person at the terminal is told when STS fails: an ``StsError`` as the contract's 503.

Three cases, each with its own ``reason`` for logs and metrics: STS is failing or throttling (after the
retries: try again in a few seconds), the service has no AWS identity of its own, or AWS refused the role
(its trust policy or permissions: an operator's fix, so Retry-After is a minute). AWS's own words go to the
log, never to the caller.
"""

from __future__ import annotations

from ccweb.errors import UpstreamUnavailable
from ccweb.sts import NO_CREDENTIALS, StsError


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
            retry_after=60,
        )
    return UpstreamUnavailable(
        f"AWS refused to let ccweb assume the role {role_arn} ({exc.code}); "
        "ask the ccweb operators to check that role's trust policy and permissions.",
        reason="sts_refused",
        retry_after=60,
    )
