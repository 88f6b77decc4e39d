"""CI platforms' own OIDC tokens, detected with no configuration.

``sources.find_token`` asks here after ``CCWEB_TOKEN`` and ``CCWEB_TOKEN_FILE`` and before the login cache.

| platform            | recognised by                  | token                                                        |
| ------------------- | ------------------------------ | ------------------------------------------------------------ |
| GitHub Actions      | ``GITHUB_ACTIONS=true``        | GET ``ACTIONS_ID_TOKEN_REQUEST_URL`` with the service's aud  |
| Azure Pipelines     | ``TF_BUILD=True``              | POST ``SYSTEM_OIDCREQUESTURI`` for a service connection      |
| Buildkite           | ``BUILDKITE=true``             | ``buildkite-agent oidc request-token --audience <aud>``      |
| CircleCI            | ``CIRCLECI=true``              | ``CIRCLE_OIDC_TOKEN_V2`` (aud: the CircleCI organization id) |
| Bitbucket Pipelines | ``BITBUCKET_BUILD_NUMBER``     | ``BITBUCKET_STEP_OIDC_TOKEN`` (needs ``oidc: true``)         |
| GitLab CI           | ``GITLAB_CI=true``             | ``id_tokens: CCWEB_TOKEN`` in .gitlab-ci.yml (read earlier)  |

``platform_token`` returns None when the platform is not recognised or simply not set up to give a token
(then ``missing_hint`` names what to configure), and raises ``HelperError`` when a token service fails or
refuses. Neither the runner's request credential (``ACTIONS_ID_TOKEN_REQUEST_TOKEN``, ``SYSTEM_ACCESSTOKEN``)
nor the token it returns ever appears in a message, and no secret is passed on a command line.

The audience a platform is asked for comes from the service's discovery. An audience AWS STS honours
(``STS_AUDIENCE``: ``sts.amazonaws.com`` and the names of STS's endpoints) is never asked for: a token minted
for it could be replayed by the service, or anyone who sees it, to AWS as ``AssumeRoleWithWebIdentity`` for
any role that trusts the platform. The service refuses such an audience at load (``ccweb check-config``) too.
An audience that is a URL is asked for only when it is the address of the service that asks (``audience``):
another service that publishes the company's address gets no token for it. A plain name (``ccweb``) binds
to no service, so any service that publishes it is given a token for it. A token a platform puts in a
variable (CircleCI, Bitbucket) is sent only where its audience allows (``audience.refuse_foreign``).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from ccweb_helper.audience import MAX_TOKEN_CHARS, is_url, names, refuse_foreign
from ccweb_helper.client import HelperError, http_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, NamedTuple

    from ccweb_helper.discovery import Discovery

MAX_AUDIENCE_CHARS = 1024
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
STS_AUDIENCE = re.compile(
    r"(?:https://)?sts(?:-fips)?(?:\.[a-z0-9-]+)?\.(?:amazonaws\.com(?:\.cn)?|amazonaws\.eu|api\.aws)\.?/?",
    re.IGNORECASE | re.ASCII,
)
"""Audiences AWS STS honours, matched whole, in any case: ``sts.amazonaws.com`` (what IAM's OIDC providers
list for GitHub Actions and EKS), STS's regional, FIPS, China, European Sovereign Cloud and dual-stack endpoint
names (``sts.us-east-1.amazonaws.com``, ``sts-fips.us-east-1.amazonaws.com``, ``sts.amazonaws.com.cn``,
``sts.cn-north-1.amazonaws.com.cn``, ``sts.us-east-1.api.aws``…), as bare names or https URLs, with or without
the final dot of a fully qualified name."""

GITHUB = "GitHub Actions"
GITLAB = "GitLab CI"
CIRCLECI = "CircleCI"
BUILDKITE = "Buildkite"
BITBUCKET = "Bitbucket Pipelines"
AZURE = "Azure Pipelines"


if TYPE_CHECKING:

    class PlatformToken(NamedTuple):
        token: str
        platform: str

else:  # the same tuple without importing typing at run time
    from collections import namedtuple

    PlatformToken = namedtuple("PlatformToken", "token platform")


def _true(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() == "true"


def _value(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def detect(env: Mapping[str, str]) -> str | None:
    """The CI platform this process runs on, by the variables each platform always sets; None elsewhere."""
    if _true(env, "GITHUB_ACTIONS"):
        return GITHUB
    if _true(env, "GITLAB_CI"):
        return GITLAB
    if _true(env, "CIRCLECI"):
        return CIRCLECI
    if _true(env, "BUILDKITE"):
        return BUILDKITE
    if _value(env, "BITBUCKET_BUILD_NUMBER"):
        return BITBUCKET
    if _true(env, "TF_BUILD"):
        return AZURE
    return None


def is_jwt(token: str) -> bool:
    """Whether ``token`` looks like one compact JWT: three non-empty base64url parts and nothing else."""
    return len(token) <= MAX_TOKEN_CHARS and _JWT.fullmatch(token) is not None


def is_sts_audience(audience: str) -> bool:
    """Whether AWS STS itself would take a token of this audience (``STS_AUDIENCE``)."""
    return STS_AUDIENCE.fullmatch(audience.strip()) is not None


STS_REFUSED = (
    "the ccweb service asks CI tokens to carry the audience {audience!r}, which AWS STS itself accepts: such a "
    "token could be replayed to AWS, so none is requested; its operators must give ccweb an audience of its own."
)
ELSEWHERE = (
    "the ccweb service at {service} asks for CI tokens meant for another address ({audience!r}), so none is "
    "requested: a token whose audience is a service's URL is given to that service only."
)


def _checked(token: str, source: str) -> str:
    if not is_jwt(token):
        raise HelperError(f"{source} is not an OIDC token (a JWT of three base64url parts); it was not used.")
    return token


def _audience(audience: Callable[[], str], platform: str, service: str) -> str:
    """The audience to ask ``platform`` for on behalf of ``service`` (an ``audience.service_key``)."""
    value = audience().strip()
    if not value:
        raise HelperError(
            f"the ccweb service did not say which audience CI tokens must carry (no \"audience\" in its "
            f"/.well-known/ccweb), so no {platform} token can be requested; upgrade the service, or set CCWEB_TOKEN."
        )
    if (len(value) > MAX_AUDIENCE_CHARS or value.startswith("-")
            or any(c.isspace() or not c.isprintable() for c in value)):
        raise HelperError("the ccweb service named an audience for CI tokens that no CI platform can be asked for.")
    if is_sts_audience(value):
        raise HelperError(STS_REFUSED.format(audience=value))
    if is_url(value) and not names(value, service):
        raise HelperError(ELSEWHERE.format(service=service, audience=value))
    return value


def _with_query(url: str, query: str) -> str:
    if "?" not in url:
        return f"{url}?{query}"
    return url + query if url.endswith(("?", "&")) else f"{url}&{query}"


def _refused(what: str, status: int, advice: str) -> HelperError:
    if status >= 500:
        return HelperError(f"{what} is failing (HTTP {status}) and gave no OIDC token; retry the job.")
    return HelperError(f"{what} refused to give an OIDC token (HTTP {status}); {advice}")


def _json_token(body: dict[str, Any] | None, key: str, what: str) -> str:
    value = body.get(key) if body is not None else None
    if not isinstance(value, str) or not value.strip():
        raise HelperError(f"{what} answered without an OIDC token (no \"{key}\" in a JSON object).")
    return _checked(value.strip(), f"what {what} answered")


# GitHub Actions -------------------------------------------------------------------------------------------

def _github(env: Mapping[str, str], audience: Callable[[], str], seconds: float,
            service: str) -> PlatformToken | None:
    url, request_token = _value(env, "ACTIONS_ID_TOKEN_REQUEST_URL"), _value(env, "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if not (url and request_token):
        return None
    what = "the GitHub Actions token service"
    aud = _audience(audience, GITHUB, service)
    answer = http_json(
        _with_query(url, "audience=" + quote(aud, safe="")), what, timeout=seconds,
        headers={"Authorization": "bearer " + request_token},
    )
    if answer.status != 200:
        raise _refused(what, answer.status, 'check that the job has "permissions: id-token: write".')
    return PlatformToken(_json_token(answer.body, "value", what), GITHUB)


# Azure Pipelines ------------------------------------------------------------------------------------------

def _azure_connection(env: Mapping[str, str]) -> str:
    return _value(env, "CCWEB_AZURE_SERVICE_CONNECTION_ID") or _value(env, "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID")


def _azure(env: Mapping[str, str], seconds: float) -> PlatformToken | None:
    uri, access_token = _value(env, "SYSTEM_OIDCREQUESTURI"), _value(env, "SYSTEM_ACCESSTOKEN")
    connection = _azure_connection(env)
    if not (uri and access_token and connection):
        return None
    what = "the Azure Pipelines token service"
    query = "api-version=7.1&serviceConnectionId=" + quote(connection, safe="")
    answer = http_json(
        _with_query(uri, query), what, method="POST", timeout=seconds, body=b"{}",
        headers={"Authorization": "Bearer " + access_token, "Content-Type": "application/json"},
    )
    if answer.status != 200:
        raise _refused(
            what, answer.status,
            f"check that service connection {quote(connection, safe='')} exists and this pipeline may use it.",
        )
    return PlatformToken(_json_token(answer.body, "oidcToken", what), AZURE)


# Buildkite ------------------------------------------------------------------------------------------------

def _buildkite_agent(env: Mapping[str, str]) -> str | None:
    """The agent by an absolute path: the current directory is the checkout, which a pull request may fill."""
    from ccweb_helper import programs  # noqa: PLC0415 (only on Buildkite)

    try:
        return programs.find("buildkite-agent", env)
    except FileNotFoundError:
        return None


def _buildkite(env: Mapping[str, str], audience: Callable[[], str], seconds: float,
               service: str) -> PlatformToken | None:
    if not _true(env, "BUILDKITE"):
        return None
    agent = _buildkite_agent(env)
    if agent is None:
        return None
    import subprocess  # noqa: PLC0415

    aud = _audience(audience, BUILDKITE, service)
    command = "`buildkite-agent oidc request-token`"
    try:
        # The audience is not a secret; the token comes back on stdout and is never echoed. The tool's own
        # output is not shown either: it may hold the token or the agent's credentials.
        result = subprocess.run(
            [agent, "oidc", "request-token", "--audience", aud], stdin=subprocess.DEVNULL, capture_output=True,
            timeout=seconds, check=False, env=dict(env),
        )
    except subprocess.TimeoutExpired:
        raise HelperError(f"{command} did not answer within {seconds:g} seconds; try again.") from None
    except OSError as exc:
        raise HelperError(f"cannot run {agent} ({exc.strerror or type(exc).__name__}).") from None
    if result.returncode != 0:
        raise HelperError(
            f"{command} failed (exit status {result.returncode}); run `buildkite-agent oidc request-token "
            f"--audience {aud} > /dev/null` in the step to see why (its output is not shown here)."
        )
    try:
        text = result.stdout.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    return PlatformToken(_checked(text, f"what {command} printed"), BUILDKITE)


# Variables set by the platform ----------------------------------------------------------------------------

def _variable(env: Mapping[str, str], name: str, platform: str, service: str) -> PlatformToken | None:
    value = _value(env, name)
    return PlatformToken(refuse_foreign(_checked(value, name), service, name), platform) if value else None


def platform_token(env: Mapping[str, str], audience: Callable[[], str], seconds: float, *,
                   service: str) -> PlatformToken | None:
    """This CI job's OIDC token from its platform, for the service at ``service`` (an
    ``audience.service_key``); None when there is none to be had without configuration.

    ``audience`` is called (a network request to the service's discovery) only for platforms that mint a
    token for an audience of our choosing. Azure's token always carries Azure's own audience
    (``api://AzureADTokenExchange``), which names no ccweb service, so it is not checked against one.
    """
    return (
        _github(env, audience, seconds, service)
        or _azure(env, seconds)
        or _buildkite(env, audience, seconds, service)
        or _variable(env, "CIRCLE_OIDC_TOKEN_V2", CIRCLECI, service)
        or _variable(env, "BITBUCKET_STEP_OIDC_TOKEN", BITBUCKET, service)
    )


# Hints ----------------------------------------------------------------------------------------------------

def _known_audience(env: Mapping[str, str], known: Iterable[Discovery] | None) -> str:
    """The CI audience if the service's discovery is ``known`` (by default: this process fetched it; no network
    here), else where to read it."""
    if known is None:
        from ccweb_helper import discovery  # noqa: PLC0415 (already loaded by whoever asks for a hint)

        known = discovery.cached()
    audiences = {d.audience for d in known if d.audience and not is_sts_audience(d.audience)}
    if len(audiences) == 1:
        return audiences.pop()
    service = _value(env, "CCWEB_URL").rstrip("/") or "https://<ccweb service>"
    return f"<the audience from {service}/.well-known/ccweb>"


def missing_hint(env: Mapping[str, str], known: Iterable[Discovery] | None = None) -> str | None:
    """On a CI platform whose token is not available: a sentence naming exactly what to configure.

    ``known``: the discovery documents already fetched (by default, those this process holds).
    """
    platform = detect(env)
    if platform == GITHUB:
        return (
            'GitHub Actions gives this job no OIDC token: add "permissions: id-token: write" to the job (or the '
            "workflow); pull requests from forks never get one."
        )
    if platform == GITLAB:
        return (
            "GitLab CI gives jobs an OIDC token only when asked: add `id_tokens: {CCWEB_TOKEN: {aud: "
            + _known_audience(env, known) + "}}` to the job in .gitlab-ci.yml."
        )
    if platform == CIRCLECI:
        return (
            "CircleCI gave this job no OIDC token (CIRCLE_OIDC_TOKEN_V2): CircleCI injects it only into jobs that "
            "use a context, so add `context: <a context>` to the job in the workflow."
        )
    if platform == BUILDKITE:
        return (
            "Buildkite tokens come from `buildkite-agent oidc request-token`, but buildkite-agent is not on PATH "
            "in this step; put it on PATH (plugins and containers must mount the agent binary)."
        )
    if platform == BITBUCKET:
        return "Bitbucket Pipelines gives a step an OIDC token only with `oidc: true`: add it to the step."
    if platform == AZURE:
        if not _value(env, "SYSTEM_OIDCREQUESTURI"):
            return "this Azure Pipelines agent offers no OIDC tokens (no SYSTEM_OIDCREQUESTURI); update the agent."
        missing = []
        if not _value(env, "SYSTEM_ACCESSTOKEN"):
            missing.append("map the job's access token into the step with `env: {SYSTEM_ACCESSTOKEN: "
                           "$(System.AccessToken)}`")
        if not _azure_connection(env):
            missing.append("set CCWEB_AZURE_SERVICE_CONNECTION_ID to the id of the service connection whose "
                           "token ccweb trusts")
        if missing:
            return "Azure Pipelines gives a step an OIDC token only for a service connection: " + "; and ".join(
                missing) + "."
    return None
