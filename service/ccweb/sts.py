"""The STS client: ``AssumeRole`` through the ``STSClient`` interface, and ``BotoSTS``, its implementation.

``BotoSTS`` calls AssumeRole on the event loop itself: boto3 resolves the service's credentials, the STS
endpoint and the signing region once; each call is a Query API request signed with botocore's SigV4 and sent
with shared ``httpx.AsyncClient``s (pools of ``SHARD_CONNECTIONS``: httpcore's pool costs grow with the square
of its size), its XML answer parsed with ElementTree. No thread per call (botocore's own call path costs
milliseconds of CPU under the GIL, and 64 threads of it starved the event loop during a cold start of many
identities); an ``asyncio.Semaphore`` caps the calls one worker has in flight at STS (``STS_CONCURRENCY``, as
many pooled connections in all). ``assume_role_form`` is the form it sends, session tags included. It honours
``ca_bundle``/``AWS_CA_BUNDLE`` as botocore would, and the proxy environment (``HTTPS_PROXY``, ``ALL_PROXY``,
``NO_PROXY``) as every outbound request of the service does (``ccweb.outbound``).

Each call is one HTTP attempt; a failure is an ``StsError`` that says whether trying again may help (STS's
throttling and 5xx codes, an unreachable or hanging STS). ``ccweb.retry`` retries those, ``ccweb.sessions``
caches what succeeds.

Two things botocore offers no public way to ask are read from its private attributes: the signing region its
endpoint rules give (``client._ruleset_resolver``) and the profile's ``ca_bundle`` (``session._session``).
Should a botocore release move them, a WARNING names what could not be read and what is assumed instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit
from xml.etree import ElementTree

import httpx

from ccweb import __version__
from ccweb.outbound import outbound_client
from ccweb.signing import AwsCredentials

log = logging.getLogger("ccweb.sessions")  # one logger for the whole STS path, as operators know it

STS_CONCURRENCY = 64
"""AssumeRole calls one ``BotoSTS`` makes at once (and its pooled connections); more wait their turn."""
SHARD_CONNECTIONS = 8
"""Connections per ``httpx`` pool of a ``BotoSTS``; it keeps as many pools as ``concurrency`` needs."""
STS_API_VERSION = "2011-06-15"
FORM = "application/x-www-form-urlencoded; charset=utf-8"
GLOBAL_ENDPOINT_HOST = "sts.amazonaws.com"
"""STS's global endpoint, which signs for us-east-1 whatever the client's region."""
RETRYABLE_CODES = frozenset(
    {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
     "IDPCommunicationError", "ServiceUnavailable", "InternalFailure", "InternalError", "RequestTimeout",
     "PriorRequestNotComplete"}
)
"""STS's error codes that trying again may cure (any 5xx and 429 are retryable too)."""
DEFAULT_REGION = "us-east-1"
"""The region of a service told none (no ``aws.region``, ``AWS_DEFAULT_REGION``, profile region or ``AWS_REGION``):
a WARNING says so."""
NO_CREDENTIALS = "NoCredentials"
"""The code of the ``StsError`` of a service that found no AWS credentials of its own."""


@dataclass(frozen=True, slots=True)
class AssumeRoleRequest:
    role_arn: str
    session_name: str
    source_identity: str
    policy: str
    duration_seconds: int
    tags: tuple[tuple[str, str], ...] = ()
    """Session tags (key, value), in the rule's order."""
    transitive_tag_keys: tuple[str, ...] = ()
    """Keys of ``tags`` that pass on to the sessions chained from this one (STS's transitive session tags)."""


@dataclass(frozen=True, slots=True)
class StsTarget:
    """The STS a service calls, as ``/readyz`` shows it: the endpoint's URL (never a user name, password, query or
    fragment an ``AWS_ENDPOINT_URL_STS`` may carry) and the region its requests are signed for."""

    endpoint: str
    region: str


class StsError(Exception):
    """STS refused or failed; ``code`` is the AWS error code, ``message`` AWS's words (never a credential)."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable


class STSClient(Protocol):
    async def assume_role(self, request: AssumeRoleRequest) -> AwsCredentials: ...


class BotoSTS:
    """AssumeRole over asyncio: a request signed with botocore's SigV4, sent with a shared ``httpx.AsyncClient``.

    boto3 serves once, at construction, for what it resolves: the service's credentials chain (environment,
    IRSA web identity, instance role, …), the endpoint (``AWS_ENDPOINT_URL_STS``, regional and FIPS settings
    included) and the signing region. The region is ``region`` (``aws.region``), else the session's
    (``AWS_DEFAULT_REGION``, the profile's), else ``AWS_REGION``, which boto3 never reads but other AWS SDKs,
    Lambda and many platforms set, else us-east-1 with a WARNING. No call runs in a thread, except the refresh
    of refreshable service credentials when one is due (IMDS or web identity I/O). The client and the bound on
    calls in flight belong to the event loop that first uses them (a later loop gets its own); ``aclose()``
    closes them.
    """

    def __init__(
        self,
        *,
        session: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 5.0,
        concurrency: int = STS_CONCURRENCY,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Each call is one HTTP attempt (``RetryPolicy`` retries, inside its budget). ``concurrency``: calls in
        flight at once (and pooled connections). ``environ``: where ``AWS_REGION`` and ``AWS_CA_BUNDLE`` are read
        (the process's environment by default; the session reads its own)."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        import boto3  # noqa: PLC0415 (heavy; only the service needs it)

        # botocore logs whole STS response bodies and request signatures at DEBUG, httpcore its exchanges:
        # never let them.
        for name in ("botocore", "boto3", "httpcore"):
            logger = logging.getLogger(name)
            if logger.level < logging.INFO:
                logger.setLevel(logging.INFO)
        environ = os.environ if environ is None else environ
        session = session or boto3.session.Session()
        chosen = region or session.region_name or environ.get("AWS_REGION") or None
        # Never called: it resolves the endpoint and the signing region as boto3 would.
        client = session.client("sts", region_name=chosen or DEFAULT_REGION, endpoint_url=endpoint_url)
        self.endpoint_url: str = client.meta.endpoint_url
        self.region: str = _signing_region(client)
        self.target = StsTarget(_shown_url(self.endpoint_url), self.region)
        if chosen is None:
            _warn_defaulted_region(self.target.endpoint)
        self._credentials: Any = session.get_credentials()  # botocore resolved them for the client already
        self.concurrency = concurrency
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._url = self.endpoint_url if urlsplit(self.endpoint_url).path else self.endpoint_url + "/"
        # Made once, here (loading a CA bundle takes milliseconds), and shared by every client.
        bundle = _ca_bundle(session, environ)
        self._tls = ssl.create_default_context(cafile=bundle) if bundle else httpx.create_ssl_context(trust_env=True)
        self._transport: _Transport | None = None

    def _current(self) -> _Transport:
        loop = asyncio.get_running_loop()
        transport = self._transport
        if transport is None or transport.loop is not loop:
            # httpcore's pool rescans every connection for every queued request (quadratic in its size, several
            # milliseconds a call at 64): pools of at most SHARD_CONNECTIONS, each call on the least busy one.
            shards = -(-self.concurrency // SHARD_CONNECTIONS)
            size = -(-self.concurrency // shards)
            clients = [
                outbound_client(  # HTTPS_PROXY, ALL_PROXY, NO_PROXY as the helper reads them (ccweb.outbound)
                    timeout=self._timeout,
                    limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                    verify=self._tls,
                    headers={"User-Agent": f"ccweb/{__version__}"},
                )
                for _ in range(shards)
            ]
            transport = self._transport = _Transport(loop, clients, [0] * shards,
                                                     asyncio.Semaphore(self.concurrency), asyncio.Lock())
        return transport

    async def aclose(self) -> None:
        """Close the HTTP client (and its pooled connections); a later call opens a new one."""
        transport, self._transport = self._transport, None
        if transport is not None:
            for client in transport.clients:
                await client.aclose()

    async def _frozen_credentials(self, transport: _Transport) -> Any:
        credentials = self._credentials
        if credentials is None:
            raise StsError(NO_CREDENTIALS, "no AWS credentials found for the service (environment, web identity, "
                           "shared files or instance role)", retryable=False)
        due = getattr(credentials, "refresh_needed", None)
        if due is None or not due():
            return credentials.get_frozen_credentials()
        async with transport.refreshing:  # one refresh at a time, off the event loop; its waiters reuse it
            if not due():
                return credentials.get_frozen_credentials()
            try:
                return await asyncio.to_thread(credentials.get_frozen_credentials)
            except Exception as exc:  # noqa: BLE001 (whatever the provider raises; its words may hold secrets)
                raise StsError(type(exc).__name__, "could not refresh the service's own AWS credentials",
                               retryable=True) from None

    async def assume_role(self, request: AssumeRoleRequest) -> AwsCredentials:
        from botocore.auth import SigV4Auth  # noqa: PLC0415
        from botocore.awsrequest import AWSRequest  # noqa: PLC0415

        transport = self._current()
        frozen = await self._frozen_credentials(transport)
        body = urlencode(assume_role_form(request)).encode()
        async with transport.slots:
            signed = AWSRequest(method="POST", url=self._url, data=body, headers={"Content-Type": FORM})
            SigV4Auth(frozen, "sts", self.region).add_auth(signed)  # signed when sent: its date is now
            # The least busy pool: with at most ``concurrency`` calls in flight, none holds more than its size.
            shard = transport.load.index(min(transport.load))
            transport.load[shard] += 1
            try:
                response = await transport.clients[shard].post(self._url, content=body,
                                                               headers=dict(signed.headers.items()))
            except httpx.HTTPError as exc:
                raise StsError(type(exc).__name__, "could not reach STS", retryable=True) from None
            except RuntimeError:  # the client was closed under this call (the app is shutting down)
                raise StsError("ClientClosed", "the connection to STS was closed", retryable=True) from None
            finally:
                transport.load[shard] -= 1
        return _parse_assume_role(response.status_code, response.content)


def target_of(sts: object) -> StsTarget | None:
    """The STS ``sts`` calls, if it names one (``BotoSTS`` does; a stand-in in tests need not)."""
    target = getattr(sts, "target", None)
    return target if isinstance(target, StsTarget) else None


def assume_role_form(request: AssumeRoleRequest) -> dict[str, str]:
    """The AssumeRole request as STS's Query API form: session tags as ``Tags.member.N.Key`` and
    ``Tags.member.N.Value``, transitive keys as ``TransitiveTagKeys.member.N`` (N from 1), each only when there are
    any, so a request without tags is sent exactly as before tags existed."""
    form = {
        "Action": "AssumeRole",
        "Version": STS_API_VERSION,
        "RoleArn": request.role_arn,
        "RoleSessionName": request.session_name,
        "SourceIdentity": request.source_identity,
        "Policy": request.policy,
        "DurationSeconds": str(request.duration_seconds),
    }
    for n, (key, value) in enumerate(request.tags, 1):
        form[f"Tags.member.{n}.Key"] = key
        form[f"Tags.member.{n}.Value"] = value
    for n, key in enumerate(request.transitive_tag_keys, 1):
        form[f"TransitiveTagKeys.member.{n}"] = key
    return form


def _signing_region(client: Any) -> str:
    """The region STS wants signatures scoped to: the client's, but for what botocore's endpoint rules say
    otherwise (with ``sts_regional_endpoints = legacy`` the global ``sts.amazonaws.com`` signs for us-east-1).

    botocore has no public way to ask its rules: this reads ``client._ruleset_resolver``. Should a botocore
    release move it, a WARNING says so and the region is assumed from the endpoint's name instead."""
    from botocore.exceptions import BotoCoreError  # noqa: PLC0415 (boto3 is loaded by now)

    region: str = client.meta.region_name
    try:
        endpoint = client._ruleset_resolver.construct_endpoint(
            operation_model=client.meta.service_model.operation_model("AssumeRole"), call_args={},
            request_context={},
        )
        schemes = endpoint.properties.get("authSchemes") or [{}]
        return str(schemes[0].get("signingRegion") or region)
    except (AttributeError, TypeError, LookupError, BotoCoreError) as exc:  # moved, changed, or refusing
        host = urlsplit(client.meta.endpoint_url).hostname
        assumed = "us-east-1" if host == GLOBAL_ENDPOINT_HOST else region
        log.warning(
            "could not read STS's signing region from botocore's endpoint rules (client._ruleset_resolver: %s); "
            "assuming %s for the endpoint %s",
            type(exc).__name__, assumed, host,
        )
        return assumed


def _shown_url(url: str) -> str:
    """``url`` without what may be a secret: its user name and password, query and fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _warn_defaulted_region(endpoint_url: str) -> None:
    """Say, once at start, that no region was given: EKS Pod Identity, unlike IRSA, sets none."""
    log.warning(
        "no AWS region configured (aws.region, AWS_DEFAULT_REGION, the profile's region or AWS_REGION): STS is "
        "called for %s at %s; set aws.region or AWS_REGION to the cluster's region",
        DEFAULT_REGION, endpoint_url,
    )


def _ca_bundle(session: Any, environ: Mapping[str, str]) -> str | None:
    """The CA bundle to trust for STS: ``ca_bundle`` of the boto3 session's configuration chain (environment,
    then profile), else ``AWS_CA_BUNDLE``; none means the system's trust store.

    boto3 has no public way to ask its configuration chain: this reads ``session._session`` (botocore's
    session). Should a release move it, a WARNING says so and only ``AWS_CA_BUNDLE`` is honoured."""
    read = getattr(getattr(session, "_session", None), "get_config_variable", None)
    if not callable(read):
        log.warning(
            "could not read ca_bundle from the AWS configuration (session._session.get_config_variable is "
            "missing); a profile's ca_bundle is ignored, trusting %s",
            "AWS_CA_BUNDLE" if environ.get("AWS_CA_BUNDLE") else "the system's certificate authorities",
        )
        return environ.get("AWS_CA_BUNDLE") or None
    value = read("ca_bundle")
    return value if isinstance(value, str) and value else environ.get("AWS_CA_BUNDLE") or None


@dataclass(slots=True)
class _Transport:
    """What ``BotoSTS`` keeps per event loop: its HTTP clients and the calls in flight on each, the bound on calls
    in flight, the refresh lock."""

    loop: asyncio.AbstractEventLoop
    clients: list[httpx.AsyncClient]
    load: list[int]
    slots: asyncio.Semaphore
    refreshing: asyncio.Lock


def _text(element: ElementTree.Element | None, path: str) -> str | None:
    found = element.find(path) if element is not None else None
    return found.text if found is not None else None


def _parse_assume_role(status: int, body: bytes) -> AwsCredentials:
    """STS's XML answer as credentials, or the ``StsError`` it says (never quoting the body: it may hold
    credentials)."""
    try:
        # STS's own answer over TLS; expat expands no external entities and caps internal expansion.
        root = ElementTree.fromstring(body)  # noqa: S314
    except ElementTree.ParseError:
        root = None
    if status != 200:
        error = root.find(".//{*}Error") if root is not None else None
        code = _text(error, "{*}Code") or str(status)
        message = _text(error, "{*}Message") or f"STS answered HTTP {status}"
        retryable = code in RETRYABLE_CODES or status >= 500 or status == 429
        raise StsError(code, message, retryable=retryable)
    creds = root.find("{*}AssumeRoleResult/{*}Credentials") if root is not None else None
    key_id, secret = _text(creds, "{*}AccessKeyId"), _text(creds, "{*}SecretAccessKey")
    token, expiration = _text(creds, "{*}SessionToken"), _text(creds, "{*}Expiration")
    if key_id and secret and token and expiration:
        try:
            expires = datetime.fromisoformat(expiration.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
            return AwsCredentials(key_id.strip(), secret.strip(), token.strip(), expires.astimezone(UTC))
    raise StsError("MalformedResponse", "STS answered 200 without readable credentials", retryable=True)
