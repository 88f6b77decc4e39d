"""The OpenAPI document: FastAPI's for the routes it serves, plus ``POST /v1/credentials`` and
``POST /v1/git-credential`` (plain ASGI routes, see ``ccweb.credentials`` and ``ccweb.textapi``), with every error
answer taken from the error classes and ``ccweb.limits``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ccweb.api_models import CredentialRequest, CredentialResponse, ErrorBody
from ccweb.credentials import CREDENTIALS_PATH
from ccweb.errors import AccessDenied, InvalidRequest, InvalidToken, RateLimited, ServiceError, UpstreamUnavailable
from ccweb.limits import BODY_TOO_SLOW, HEAD_TOO_LARGE, TOKEN_TOO_LARGE, body_too_large, document_refusals
from ccweb.textapi import GIT_CREDENTIAL_PATH, MAX_TEXT_BODY_BYTES

REF = "#/components/schemas/{model}"
CREDENTIAL_ERRORS = (InvalidRequest, InvalidToken, AccessDenied, RateLimited, UpstreamUnavailable)


def error_responses(*errors: type[ServiceError]) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that may answer these errors, described by their classes."""
    return {error.status: {"model": ErrorBody, "description": f"{error.error}: {error.when}"} for error in errors}


def _credentials_operation() -> dict[str, Any]:
    error_body = {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}
    responses: dict[str, Any] = {
        "200": {"description": "Successful Response",
                "content": {"application/json": {"schema": {"$ref": REF.format(model="CredentialResponse")}}}},
    }
    for error in CREDENTIAL_ERRORS:
        responses[str(error.status)] = {"description": f"{error.error}: {error.when}", "content": error_body}
    return {
        "summary": "A CodeCommit git username and password for one repository",
        "operationId": "credentials_v1_credentials_post",
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": CredentialRequest.model_json_schema()}}},
        "responses": responses,
        "security": [{"HTTPBearer": []}],
    }


GIT_CREDENTIAL_EXAMPLE = "protocol=https\nhost=git-codecommit.us-east-2.amazonaws.com\npath=v1/repos/MyDemoRepo\n"


def _git_credential_operation() -> dict[str, Any]:
    def text(example: str) -> dict[str, Any]:
        return {"text/plain": {"schema": {"type": "string"}, "example": example}}

    responses: dict[str, Any] = {"200": {
        "description": "The credential as git reads it from a helper: username=, password= and password_expiry_utc= "
                       "lines",
        "content": text("username=ASIA…%<session token>\npassword=20261122T101500Z<64 hex>\n"
                        "password_expiry_utc=1795343400\n"),
    }}
    for error in CREDENTIAL_ERRORS:
        responses[str(error.status)] = {"description": f"{error.error}: {error.when}",
                                        "content": text(f"error={error.error}\ndetail=<a sentence>\n")}
    for status, code, detail in (body_too_large(MAX_TEXT_BODY_BYTES), BODY_TOO_SLOW, HEAD_TOO_LARGE, TOKEN_TOO_LARGE):
        responses.setdefault(str(status), {"description": f"{code}: refused before routing",
                                           "content": text(f"error={code}\ndetail={detail}\n")})
    return {
        "summary": "POST /v1/credentials in git's credential format: what git gave the helper in, what git reads out",
        "description": "The same decision, rate limit, audit and metrics as POST /v1/credentials. The body: git's "
                       "key=value lines (protocol, host and path are read, every other key is ignored), of any "
                       f"media type, at most {MAX_TEXT_BODY_BYTES} bytes. Errors have the JSON API's statuses and "
                       "headers (WWW-Authenticate, Retry-After), with error= and detail= lines (the detail one "
                       "printable line).",
        "operationId": "git_credential_v1_git_credential_post",
        "requestBody": {"required": True, "content": text(GIT_CREDENTIAL_EXAMPLE)},
        "responses": responses,
        "security": [{"HTTPBearer": []}],
    }


def install_openapi(app: FastAPI) -> None:
    """The generated document with the credentials route, minus FastAPI's 422 (this service answers 400)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema["paths"] = {CREDENTIALS_PATH: {"post": _credentials_operation()}, **schema.get("paths", {})}
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (CredentialResponse, ErrorBody):
                components[model.__name__] = model.model_json_schema(ref_template=REF)
            for path in schema["paths"].values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            document_refusals(schema)
            paths = schema["paths"]  # the text route after its JSON twin, with its refusals in text
            schema["paths"] = {CREDENTIALS_PATH: paths.pop(CREDENTIALS_PATH),
                               GIT_CREDENTIAL_PATH: {"post": _git_credential_operation()}, **paths}
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
