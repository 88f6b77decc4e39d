"""The policy file: pydantic models, validated once at start-up and by ``ccweb check-config``.

Every error names the offending key (``rules[1].claims.email.pattern: …``). Unknown keys are errors.
Patterns are compiled here with whole-value (full-match) semantics, so a bad file never starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ccweb.claims import ClaimConditions, SessionTags, claim_name_problem
from ccweb.configbase import ConfigError as ConfigError  # noqa: PLC0414 (re-exported: raised by load_config)
from ccweb.configbase import messages as messages  # noqa: PLC0414 (re-exported: ccweb.policytest)
from ccweb.configbase import oauth_scopes
from ccweb.grc import GrcSettings
from ccweb.grc import problems as grc_problems
from ccweb.iam import MAX_SESSION_POLICY, session_policy
from ccweb.retry import RETRY_BUDGET_SECONDS
from ccweb.webconfig import WebSettings, web_problems
from ccweb_helper.ci import is_sts_audience
from ccweb_helper.hosts import (
    REGION_PATTERN,
    REPOSITORY_NAME_CHARACTERS,
    REPOSITORY_NAME_MAX,
    git_endpoint_host,
    is_loopback,
    split_host,
)

ROLE_ARN = re.compile(r"arn:aws(?:-cn|-us-gov|-iso|-iso-b)?:iam::(?P<account>[0-9]{12}):role/[\w+=,.@/-]{1,512}")
REGION = re.compile(REGION_PATTERN)
REPOSITORY_GLOB = re.compile(
    rf"(?:(?P<region>[a-z0-9*?-]+)/)?(?P<name>[*?{REPOSITORY_NAME_CHARACTERS}]{{1,{REPOSITORY_NAME_MAX}}})"
)
MIN_SESSION, MAX_SESSION = 900, 43200


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_issuer_url(value: str) -> str:
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError("must be a URL of printable ASCII characters without spaces (an issuer's `iss` is one)")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an https URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError("must be https (http is allowed only on loopback: 127.0.0.1, localhost, [::1])")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not carry a query, fragment or user name")
    return value


def _not_sts(audience: str) -> str:
    if is_sts_audience(audience):
        raise ValueError(
            f"{audience!r} is an audience AWS STS accepts: a token for it, sent to ccweb, could be replayed to AWS "
            "(AssumeRoleWithWebIdentity); give ccweb an audience of its own"
        )
    return audience


class LoginSettings(_Model):
    """Interactive login for people: a public client of the issuer (authorization code + PKCE, device flow)."""

    client_id: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[\x21-\x7e]+$")]
    scopes: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["openid", "email", "profile", "offline_access"]
    )

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        return oauth_scopes(value, "the helper signs in for an ID token")


class Issuer(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    issuer: str
    audiences: Annotated[list[Annotated[str, Field(min_length=1), AfterValidator(_not_sts)]], Field(min_length=1)]
    jwks_uri: str | None = None
    login: LoginSettings | None = None

    @field_validator("issuer", "jwks_uri")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_issuer_url(value)

    @model_validator(mode="after")
    def _login_audience(self) -> Issuer:
        if self.login is not None and self.login.client_id not in self.audiences:
            raise ValueError(
                f"login.client_id: {self.login.client_id!r} must also be one of audiences (an ID token's "
                "aud is the client id it was issued to)"
            )
        return self


def _repository_glob(glob: str) -> str:
    match = REPOSITORY_GLOB.fullmatch(glob)
    if not match:
        raise ValueError(
            f"{glob!r} is not a repository glob: [region/]name with letters, digits, '.', '_', '-' "
            "and the wildcards '*' and '?'"
        )
    region = match.group("region")
    if region and "*" not in region and "?" not in region and not REGION.fullmatch(region):
        raise ValueError(f"{glob!r}: {region!r} is not an AWS region")
    return glob


RepositoryGlob = Annotated[str, AfterValidator(_repository_glob)]


DENIED, SUSPENDED, UNIDENTIFIED = "denied", "suspended", "unidentified"
RESERVED_RULE_NAMES = frozenset({DENIED, SUSPENDED, UNIDENTIFIED})
"""Outcomes, not rules: ``ccweb test-policy`` expects them by these names."""


class Rule(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    issuer: str
    claims: ClaimConditions = Field(default_factory=dict)
    role_arn: str
    repositories: Annotated[list[RepositoryGlob], Field(min_length=1)]
    access: Literal["read", "write"] = "read"
    source_identity: str | None = None
    session_duration: Annotated[int, Field(ge=MIN_SESSION, le=MAX_SESSION)] | None = None
    session_tags: SessionTags = Field(default_factory=dict)
    """STS session tag key → the claim (name or JSON Pointer) whose value it carries."""
    transitive_session_tags: list[str] = Field(default_factory=list)
    """Keys of ``session_tags`` that pass on to sessions chained from this one."""

    @field_validator("name")
    @classmethod
    def _not_an_outcome(cls, value: str) -> str:
        if value in RESERVED_RULE_NAMES:
            raise ValueError(f"{value!r} is reserved for an outcome (ccweb test-policy expects it); rename the rule")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str) -> str:
        if not ROLE_ARN.fullmatch(value):
            raise ValueError("not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)")
        return value

    @field_validator("source_identity")
    @classmethod
    def _claim(cls, value: str | None) -> str | None:
        problem = None if value is None else claim_name_problem(value)
        if problem:
            raise ValueError(problem if value and value.startswith("/") else "not a claim name")
        return value

    @model_validator(mode="after")
    def _transitive(self) -> Rule:
        tagged = set(self.session_tags)
        for index, key in enumerate(self.transitive_session_tags):
            if key not in tagged:
                raise ValueError(f"transitive_session_tags[{index}]: {key!r} is not a key of session_tags")
        if len(set(self.transitive_session_tags)) != len(self.transitive_session_tags):
            raise ValueError("transitive_session_tags: a key is named twice")
        return self

    @model_validator(mode="after")
    def _policy_size(self) -> Rule:
        size = len(session_policy(self.access, self.role_arn, self.account, self.repositories))
        if size > MAX_SESSION_POLICY:
            raise ValueError(
                f"repositories: the session policy would be {size} characters, over STS's limit of "
                f"{MAX_SESSION_POLICY}; use fewer or broader globs"
            )
        return self

    @property
    def account(self) -> str:
        match = ROLE_ARN.fullmatch(self.role_arn)
        if match is None:  # pragma: no cover - validated when the model was built
            raise ValueError(self.role_arn)
        return match.group("account")


class GitEndpoint(_Model):
    host: str
    region: Annotated[str, Field(pattern=REGION.pattern.join("^$"))]

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        try:
            name, port = git_endpoint_host(value)  # what ccweb-helper setup accepts: no `*`, no control characters
        except ValueError as exc:
            raise ValueError(f"not host[:port]: {exc}") from None
        return name if port is None else f"{name}:{port}"


class AwsSettings(_Model):
    session_duration: Annotated[int, Field(ge=MIN_SESSION, le=MAX_SESSION)] = 3600
    region: Annotated[str, Field(pattern=REGION.pattern.join("^$"))] | None = None
    """Region of the STS endpoint; default from the AWS environment, else us-east-1."""
    retry_budget_seconds: Annotated[float, Field(strict=True, ge=1, le=60, allow_inf_nan=False)] = RETRY_BUDGET_SECONDS
    """How long one AssumeRole may take, retries of throttling, 5xx and timeouts included, before the
    caller gets 503 ``upstream_unavailable``."""


class RateLimit(_Model):
    """A token bucket per verified identity (issuer + subject), per replica; ``requests_per_minute: 0`` turns
    it off."""

    requests_per_minute: Annotated[int, Field(strict=True, ge=0, le=1_000_000)] = 120
    burst: Annotated[int, Field(strict=True, ge=1, le=100_000)] = 60


class DenyEntry(_Model):
    """An emergency suspension, checked before the rules: a token it matches gets nothing."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    issuer: str | None = None
    claims: ClaimConditions = Field(default_factory=dict)
    reason: Annotated[str, Field(min_length=1, max_length=300, pattern=r"^[^\x00-\x1f\x7f]+$")] | None = None
    """Shown to the person refused, after "access is suspended"."""

    @model_validator(mode="after")
    def _not_everyone(self) -> DenyEntry:
        if self.issuer is None and not self.claims:
            raise ValueError(
                "claims: an entry needs an issuer or at least one claim condition (it would suspend everyone)"
            )
        return self


class Config(_Model):
    issuers: Annotated[list[Issuer], Field(min_length=1)]
    deny: list[DenyEntry] = Field(default_factory=list)
    """Emergency suspensions, checked before the rules; the first that matches refuses."""
    rules: list[Rule] = Field(default_factory=list)
    git_endpoints: list[GitEndpoint] = Field(default_factory=list)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    ci_audience: Annotated[str, Field(min_length=1)] | None = None
    """The audience CI platforms' tokens are requested for; default: the first audience of the first issuer
    without interactive login (else of the first issuer). Recommended: the service's own URL, which the helper
    asks a platform for only on behalf of the service at that address (a plain name binds to no service)."""
    grc: GrcSettings = Field(default_factory=GrcSettings)
    """The console's GRC URLs (``codecommit::<region>://<repo>``): their default region, endpoints per region."""
    web: WebSettings = Field(default_factory=WebSettings)
    """The service's page (``GET /``) and its sign-in (ccweb.webconfig)."""

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems: list[str] = []
        names = [i.name for i in self.issuers]
        for index, name in enumerate(names):
            if names.index(name) != index:
                problems.append(f"issuers[{index}].name: {name!r} is used twice")
        urls = [i.issuer for i in self.issuers]
        for index, url in enumerate(urls):
            if urls.index(url) != index:
                problems.append(f"issuers[{index}].issuer: {url!r} is listed twice")
        rule_names = [r.name for r in self.rules]
        for index, rule in enumerate(self.rules):
            if rule.issuer not in names:
                problems.append(f"rules[{index}].issuer: no issuer is named {rule.issuer!r}")
            if rule_names.index(rule.name) != index:
                problems.append(f"rules[{index}].name: {rule.name!r} is used twice")
        deny_names = [d.name for d in self.deny]
        for index, entry in enumerate(self.deny):
            if entry.issuer is not None and entry.issuer not in names:
                problems.append(f"deny[{index}].issuer: no issuer is named {entry.issuer!r}")
            if entry.name is not None and deny_names.index(entry.name) != index:
                problems.append(f"deny[{index}].name: {entry.name!r} is used twice")
        hosts = [e.host for e in self.git_endpoints]
        for index, host in enumerate(hosts):
            if hosts.index(host) != index:
                problems.append(f"git_endpoints[{index}].host: {host!r} is listed twice")
        if self.ci_audience is not None and not any(self.ci_audience in i.audiences for i in self.issuers):
            problems.append(f"ci_audience: {self.ci_audience!r} is not among any issuer's audiences")
        problems += grc_problems(self.grc, self.git_endpoints) + web_problems(self.web, self.issuers)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def audience_for_ci(self) -> str:
        if self.ci_audience is not None:
            return self.ci_audience
        issuer = next((i for i in self.issuers if i.login is None), None)
        if issuer is not None:
            return issuer.audiences[0]
        clients = {i.login.client_id for i in self.issuers if i.login is not None}
        # Every issuer is for people: prefer an audience that is not a login client's own id.
        audiences = [a for i in self.issuers for a in i.audiences]
        return next((a for a in audiences if a not in clients), audiences[0])

    def issuer_named(self, name: str) -> Issuer:
        return next(i for i in self.issuers if i.name == name)

    def session_duration(self, rule: Rule) -> int:
        return rule.session_duration or self.aws.session_duration

    def git_endpoint(self, host: str) -> GitEndpoint | None:
        try:
            name, port = split_host(host)
        except ValueError:
            return None
        key = name if port is None else f"{name}:{port}"
        return next((e for e in self.git_endpoints if e.host == key), None)


def parse_config(data: Any) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(["(top level): the configuration must be a mapping with an 'issuers' key"])
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(messages(exc)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (YAML would keep the last silently: a
    second ``deny:`` appended during an incident would replace the first list)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is written twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_scalar(self, node: yaml.ScalarNode | yaml.MappingNode) -> Any:
        """A scalar; a string a ``\\u`` escape made a lone surrogate (``"\\ud800"``: not Unicode, so no policy can
        hold it, nor its digest be taken) is refused naming its line, never a traceback nor a reload that fails."""
        value = super().construct_scalar(node)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a \\u escape writes a lone surrogate, which is not Unicode text (match it with "
                    "{pattern: '\\ud800'}, whose regular expression escape is plain text)", node.start_mark,
                ) from None
        return value


MAX_YAML_CHARACTERS = 8 * 1024 * 1024
"""The most a policy or cases file may hold: eight times a ConfigMap's limit. Read no further, so that a file
without end (``/dev/zero``, a pipe that never closes) is a sentence, not a process reading until memory runs out."""


def read_yaml(path: str | Path, what: str) -> Any:
    """The YAML document in the file at ``path`` (``what`` it is, for messages); ConfigError naming the line."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(MAX_YAML_CHARACTERS + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the {what}: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: the {what} is not UTF-8 text"]) from None
    if len(text) > MAX_YAML_CHARACTERS:
        raise ConfigError([f"{path}: the {what} is larger than {MAX_YAML_CHARACTERS} characters; no policy or "
                           "table of cases is"])
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError([f"{path}{where}: {problem}"]) from None
    except RecursionError:  # the parser recurses per level: a file nested thousands deep would end in a traceback
        raise ConfigError([f"{path}: the {what} nests lists or mappings too deeply to read"]) from None


def load_config(path: str | Path) -> Config:
    """Read and validate the YAML file at ``path``; raise ConfigError with ``key: problem`` lines."""
    return parse_config(read_yaml(path, "configuration file"))
