"""The audit trail: one JSON line per credential decision, on the ``ccweb.audit`` logger.

Fields: event, outcome, reason, issuer, subject, identity, source_identity (as sent to STS), repository,
region, rule, role_arn, deny (the deny entry that suspended the caller), token_sha256. Never the token, a
session token, a secret key, a signature or a password.

Values are recorded as the token gave them; the log's formatter (``ccweb.logs``) writes them so that none can
drive the terminal the line is read on: exact in JSON, its control characters escaped in text.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("ccweb.audit")

FIELDS = ("outcome", "reason", "issuer", "subject", "identity", "source_identity", "repository", "region", "rule",
          "role_arn", "deny", "token_sha256")


def decision(outcome: str, **fields: Any) -> None:
    """Log one decision: ``issued``, ``denied``, ``invalid_token``, ``invalid_request``, ``rate_limited``,
    ``upstream_unavailable`` or ``error`` (granted, but the answer could not be written: a 500)."""
    if not log.isEnabledFor(logging.INFO):
        return
    record: dict[str, Any] = {"event": "credential_decision", "outcome": outcome}
    for name in FIELDS[1:]:
        value = fields.get(name)
        if value is not None:
            record[name] = value
    # What log.info("credential %s", outcome, extra=…) does, minus the walk up the stack for the caller's
    # file and line (one per request, and no handler here prints them).
    log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, "credential %s", (outcome,), None,
                              func="decision", extra={"fields": record}))
