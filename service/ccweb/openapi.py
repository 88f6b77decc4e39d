"""The OpenAPI document: FastAPI's for the routes it serves, plus ``POST /v1/credentials`` (a plain ASGI route,
see ``ccweb.credentials``), with every error answer taken from the error classes and ``ccweb.limits``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ccweb.api_models import CredentialRequest, CredentialResponse, ErrorBody
from ccweb.credentials import CREDENTIALS_PATH
from ccweb.errors import AccessDenied, InvalidRequest, InvalidToken, RateLimited, ServiceError, UpstreamUnavailable
from ccweb.limits import document_refusals

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
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
