"""Every error answer of the service, rendered in one place: ``{"error": <code>, "detail": <sentence>}``.

``error_response`` renders a ``ServiceError`` (its status, body and headers come from its class);
``unexpected_response`` is the 500 for anything else (the type in the log, never the message to the client;
``unexpected_error`` logs it and makes the error, for a route that answers in another format);
``install_error_handlers`` makes FastAPI's own answers (404, 405, a body it refused) the same shape.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ccweb.errors import InvalidRequest, ServiceError
from ccweb.requestid import response_headers

log = logging.getLogger("ccweb.app")
HTTP_ERRORS = {
    404: ("not_found", "No such endpoint."),
    405: ("method_not_allowed", "Method not allowed on this endpoint."),
}


class JsonAnswer(JSONResponse):
    """A JSON answer that may carry text UTF-8 cannot: a lone surrogate, which a claim's JSON may escape
    (``"\\ud800"``) and Python reads as it is, is written with JSON's own escape, so that the answer decodes to the
    very same value, rather than failing as a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


def error_response(exc: ServiceError) -> JSONResponse:
    return JsonAnswer(exc.body(), status_code=exc.status, headers=exc.headers())


def unexpected_error(exc: BaseException) -> ServiceError:
    """The 500 answered for ``exc``, which is logged (its type and traceback; the client sees neither)."""
    log.error("unexpected error: %s", type(exc).__name__, exc_info=exc)
    return ServiceError("ccweb failed unexpectedly; the operators can find why in its log.")


def unexpected_response(exc: BaseException) -> JSONResponse:
    failure = unexpected_error(exc)
    return JSONResponse(failure.body(), status_code=failure.status, headers=response_headers())


def install_error_handlers(app: FastAPI) -> None:
    async def service_error(_: Request, exc: Exception) -> Response:
        if not isinstance(exc, ServiceError):
            raise exc
        return error_response(exc)

    async def validation_error(_: Request, exc: Exception) -> Response:
        if not isinstance(exc, RequestValidationError):
            raise exc
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:3])
        return error_response(InvalidRequest(f"The request is not valid ({problems}).", reason="bad_request"))

    async def http_error(_: Request, exc: Exception) -> Response:
        if not isinstance(exc, StarletteHTTPException):
            raise exc
        error, detail = HTTP_ERRORS.get(exc.status_code, ("http_error", str(exc.detail)))
        return JSONResponse({"error": error, "detail": detail}, status_code=exc.status_code,
                            headers=dict(exc.headers or {}))

    async def unexpected(_: Request, exc: Exception) -> Response:
        return unexpected_response(exc)

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
