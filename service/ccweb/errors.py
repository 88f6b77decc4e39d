"""One exception per row of the contract's error table; each carries what the client sees.

    ServiceError
     ├── InvalidRequest       400 invalid_request
     ├── InvalidToken         401 invalid_token (+ WWW-Authenticate)
     ├── AccessDenied         403 access_denied
     ├── RateLimited          429 rate_limited (+ Retry-After)
     └── UpstreamUnavailable  503 upstream_unavailable (+ Retry-After)

``detail`` is a sentence for the person at the terminal; ``reason`` is a short code for logs and metrics.
Neither may contain a token or a credential.
"""

from __future__ import annotations


class ServiceError(Exception):
    status = 500
    error = "internal_error"
    when = "ccweb failed unexpectedly"
    """The contract's "when" column: the OpenAPI document's description of this status."""

    def __init__(self, detail: str, *, reason: str = "", retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason or self.error
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}

    def body(self) -> dict[str, str]:
        """The JSON body every error answer has: ``{"error": <code>, "detail": <sentence>}``."""
        return {"error": self.error, "detail": self.detail}


class InvalidRequest(ServiceError):
    status = 400
    error = "invalid_request"
    when = "not a CodeCommit host or configured git endpoint, or a bad path or body"


class InvalidToken(ServiceError):
    status = 401
    error = "invalid_token"
    when = "the bearer token is missing or was refused"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class AccessDenied(ServiceError):
    status = 403
    error = "access_denied"
    when = "no rule grants this repository"


class RateLimited(ServiceError):
    status = 429
    error = "rate_limited"
    when = "too many requests from one identity"


class UpstreamUnavailable(ServiceError):
    status = 503
    error = "upstream_unavailable"
    when = "STS or the identity provider is failing"

    def __init__(self, detail: str, *, reason: str = "", retry_after: int | None = 5) -> None:
        super().__init__(detail, reason=reason, retry_after=retry_after)


def bad_body(problems: list[str]) -> InvalidRequest:
    """The 400 for a request body that is not the credential request; ``problems``: ``field: what is wrong``."""
    return InvalidRequest(
        "The request body must be a JSON object with string fields protocol, host and path ("
        + "; ".join(problems[:3]) + ").",
        reason="bad_body",
    )
