"""The HTTP API's bodies as pydantic models: what the OpenAPI document shows and the routes answer."""

# No `from __future__ import annotations`: FastAPI and pydantic read these annotations at run time.
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class CredentialRequest(BaseModel):
    """The attributes git gave the helper."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "examples": [{"protocol": "https", "host": "git-codecommit.us-east-2.amazonaws.com",
                      "path": "v1/repos/MyDemoRepo"}]
    })
    protocol: Annotated[str, Field(strict=True, max_length=16)]
    host: Annotated[str, Field(strict=True, min_length=1, max_length=300)]
    path: Annotated[str | None, Field(strict=True, max_length=1024)] = None


class CredentialResponse(BaseModel):
    username: str
    password: str
    expires_at: str
    password_expiry_utc: int
    region: str
    repository: str
    rule: str
    role_arn: str


class ErrorBody(BaseModel):
    error: str
    detail: str


class RuleSummary(BaseModel):
    rule: str
    role_arn: str
    repositories: list[str]
    access: str
    source_identity: str | None = Field(
        default=None, description="The SourceIdentity (and RoleSessionName) this rule's STS sessions carry for "
        "this token; null when the token lacks the claim the rule takes it from (`source_identity_claim`), and "
        "a request this rule decides is then refused (403).")
    source_identity_claim: str | None = Field(
        default=None, description="The claim this rule takes the SourceIdentity from; null: the default (a "
        "verified email, else sub).")
    session_tags: dict[str, str] = Field(
        default_factory=dict, description="The STS session tags a request this rule decides carries (tag key → "
        "value, from this token's claims); empty when the rule sends none, or when such a request is refused "
        "(`refused`).")
    refused: str | None = Field(
        default=None, description="Set when a request this rule decides is refused (403): why, as a sentence (the "
        "claim of its SourceIdentity or of a session tag missing or unusable, a claim the token left out such as "
        "Entra ID's groups overage).")


class WhoAmI(BaseModel):
    issuer: str
    issuer_url: str
    subject: str
    identity: str
    expires_at: str
    rules: list[RuleSummary]
    suspended: str | None = Field(
        default=None, description="Set when a deny entry suspends this identity: why, as a sentence; rules is empty."
    )
    refused: str | None = Field(
        default=None, description="Set when every request is refused though no deny entry suspends this identity: "
        "a deny entry reads a claim the token left out (Entra ID's groups overage), so it cannot be told; why, as a "
        "sentence; rules is empty.")


class GitEndpointInfo(BaseModel):
    host: str
    region: str


class LoginIssuer(BaseModel):
    name: str
    issuer: str
    client_id: str
    scopes: list[str]


class GrcInfo(BaseModel):
    region: str | None = Field(description="The region of `codecommit://<repo>` URLs (which name none); null: the "
                               "helper's git config or AWS_REGION decide.")
    endpoints: dict[str, str] = Field(description="Region → the URL prefix its `codecommit::<region>://<repo>` URLs "
                                      "use (`https://<host>/v1/repos/`; plain http only for a loopback git "
                                      "endpoint); a region not listed uses its standard CodeCommit host.")


class Discovery(BaseModel):
    service: str = "ccweb"
    version: str
    audience: str = Field(description="The audience CI platforms' OIDC tokens must be requested for.")
    git_endpoints: list[GitEndpointInfo]
    login: list[LoginIssuer] = Field(description="Issuers that allow interactive login, first the default.")
    helper: str = Field(description="Where to download ccweb-helper as one file (a Python 3.9+ zipapp).")
    grc: GrcInfo = Field(description="The console's GRC URLs (`codecommit::<region>://<repo>`): their default "
                         "region and endpoints, for `ccweb-helper grc`.")


class Health(BaseModel):
    status: str = Field(description="Always 'ok' while the process serves requests.")


class IssuerKeys(BaseModel):
    keys_loaded: bool
    last_error: str | None


class PolicyInfo(BaseModel):
    digest: str = Field(description="SHA-256 of the running policy as validated (comments and layout do not count).")
    loaded_at: str
    reloads: int = Field(description="Reloads that changed the policy since this process started.")
    reload_error: list[str] | None = Field(
        description="The file on disk was refused (the running policy stayed): the keys at fault, e.g. "
        "'rules[2].role_arn', until a good one is loaded. The problems themselves, which may quote the file's "
        "values, are in the service's log only."
    )
    reload_refused_at: str | None = Field(default=None, description="When the file named by reload_error was refused.")


class StsState(BaseModel):
    state: str = Field(description="'ok', or 'failing' while STS fails or throttles after the retries.")
    last_error: str | None = Field(description="The AWS error code of the last such failure.")
    endpoint: str | None = Field(description="The STS endpoint the service calls, without a user name, password or "
                                 "query (AWS_ENDPOINT_URL_STS, else the region's endpoint).")
    region: str | None = Field(description="The region its requests are signed for (aws.region, AWS_DEFAULT_REGION, "
                               "the profile's region or AWS_REGION; us-east-1 when none is set).")


class Readiness(BaseModel):
    status: str
    issuers: dict[str, IssuerKeys] = Field(description="Each issuer's key set, by issuer name.")
    sts: StsState = Field(description="AWS STS: its state, and which endpoint and signing region the service uses.")
    cached_sessions: int
    policy: PolicyInfo
