"""The API in plain text, for clients that read no JSON (the POSIX ``sh`` helper, ``ccweb.shell_dist``).

    POST /v1/git-credential     Authorization: Bearer <token>; the body: what git gave the helper, key=value lines
      200        username=…, password=…, password_expiry_utc=<epoch>: what the helper prints for git, as it is
      4xx, 5xx   error=<code>, detail=<one printable line>: the JSON API's statuses and headers
    GET /.well-known/ccweb.txt  the discovery document (``routes.discovery_document``), one key=value a line

Pure: reading git's credential format and writing the answers. ``POST /v1/git-credential`` is the JSON route's
``CredentialsEndpoint`` in another ``Wire`` (``TEXT_WIRE``): one flow, one rate limit, one audit line and one
decision count for both (``ccweb.credentials``); its body may be of any media type, up to
``MAX_TEXT_BODY_BYTES``, and even refusals made before routing answer it in text (``ccweb.limits``).
"""

from __future__ import annotations

from typing import Final

from pydantic import ValidationError
from starlette.responses import Response

from ccweb.api_models import CredentialRequest, Discovery
from ccweb.credentials import Credential, Wire, validation_problems
from ccweb.display import printable
from ccweb.errors import InvalidRequest, ServiceError
from ccweb.requestid import response_headers
from ccweb.responses import unexpected_error

GIT_CREDENTIAL_PATH: Final = "/v1/git-credential"
DISCOVERY_TEXT_PATH: Final = "/.well-known/ccweb.txt"
MAX_TEXT_BODY_BYTES: Final = 64 * 1024
"""git sends a few short lines; more room than the JSON route's, for what newer gits add (``wwwauth[]``, …)."""
TEXT_CONTENT_TYPE: Final = "text/plain; charset=utf-8"
USED_KEYS: Final = ("protocol", "host", "path")
"""The keys of git's credential format the service reads; every other one (``username``, ``wwwauth[]``, …) is
ignored."""


def _not_git_format(problem: str) -> InvalidRequest:
    return InvalidRequest(
        f"The request body must be git's credential format, key=value lines with protocol, host and path ({problem}).",
        reason="bad_body",
    )


def parse_git_credential(raw: bytes) -> CredentialRequest:
    """The request in ``raw``, git's credential format: ``key=value`` lines (``\\r\\n`` read as ``\\n``), ended by
    a blank line or the end of the body; of repeated keys the last counts, as in git. InvalidRequest else: a
    missing or bad ``protocol`` or ``host`` is the JSON route's problem, in the same words."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_git_format("it is not UTF-8 text") from None
    fields: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")  # noqa: PLW2901 (the line as git reads it)
        if not line:
            break
        key, equals, value = line.partition("=")
        if not equals:
            raise _not_git_format(f"line {number} has no '='")
        if key in USED_KEYS:
            fields[key] = value
    try:
        return CredentialRequest.model_validate(fields)
    except ValidationError as exc:
        raise _not_git_format("; ".join(validation_problems(exc)[:3])) from None


def _git_line(key: str, value: str) -> str:
    if not (value.isascii() and value.isprintable()):
        raise ValueError(f"the credential's {key} is not printable ASCII")  # a 500: git never gets half of one
    return f"{key}={value}\n"


def render_credential(credential: Credential) -> bytes:
    """The 200: the lines the helper prints for git."""
    return (_git_line("username", credential["username"]) + _git_line("password", credential["password"])
            + f"password_expiry_utc={int(credential['password_expiry_utc'])}\n").encode()


def error_text(error: str, detail: str) -> bytes:
    """An error's body: ``error=<code>`` and ``detail=<sentence>``, each on one line of printable text."""
    return f"error={printable(error)}\ndetail={printable(detail)}\n".encode()


def text_error_response(exc: ServiceError) -> Response:
    return Response(error_text(exc.error, exc.detail), status_code=exc.status, headers=exc.headers(),
                    media_type=TEXT_CONTENT_TYPE)


def text_unexpected_response(exc: BaseException) -> Response:
    failure = unexpected_error(exc)
    return Response(error_text(failure.error, failure.detail), status_code=failure.status,
                    headers=response_headers(), media_type=TEXT_CONTENT_TYPE)


TEXT_WIRE: Final = Wire(parse_git_credential, render_credential, TEXT_CONTENT_TYPE.encode(), text_error_response,
                        text_unexpected_response)
"""``POST /v1/git-credential``: git's credential format in, git's credential format (or error lines) out."""


def discovery_text(document: Discovery) -> bytes:
    """The discovery document as ``key=value`` lines: ``audience``; a ``git_endpoint`` per git endpoint
    (``host[:port]``); ``grc_region`` when the service names the region of ``codecommit://<repo>`` URLs; a
    ``grc_endpoint`` (``<region> <URL prefix>``) per region whose ``codecommit::`` URLs have an endpoint."""
    lines = [("audience", document.audience)]
    lines += [("git_endpoint", endpoint.host) for endpoint in document.git_endpoints]
    if document.grc.region is not None:
        lines.append(("grc_region", document.grc.region))
    lines += [("grc_endpoint", f"{region} {prefix}") for region, prefix in document.grc.endpoints.items()]
    return "".join(f"{key}={printable(value)}\n" for key, value in lines).encode()
