"""The console's GRC URLs (``codecommit::<region>://<repo>``, ``codecommit://<repo>``): the policy file's ``grc:``
settings and what the discovery document announces from them.

``ccweb-helper grc`` (git's remote helper for those URLs) turns such a URL into an https one; the service may
name the region of ``codecommit://<repo>`` URLs and, per region, the host its URLs use: a CodeCommit host of
that region (the standard one, FIPS, a VPC endpoint) or one of the service's own ``git_endpoints`` of that
region — never any other host, since git would send the repository there. Pure: ``Config`` checks the
settings with ``problems`` (each line names its key), discovery announces ``grc_info``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ccweb.api_models import GrcInfo
from ccweb_helper.hosts import REGION_PATTERN, git_endpoint_host, is_loopback, parse_codecommit_host

REGION = re.compile(REGION_PATTERN)
SCHEMA_REGION = f"^{REGION_PATTERN}$"  # for ``ccweb schema``; the checks below say what is wrong in words


class GitEndpointLike(Protocol):
    """A ``git_endpoints`` entry: its ``host[:port]`` (as validated) and region."""

    @property
    def host(self) -> str: ...

    @property
    def region(self) -> str: ...


class GrcSettings(BaseModel):
    """``grc:``: the region of ``codecommit://<repo>`` URLs, and per region the host its GRC URLs use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str | None = Field(default=None, json_schema_extra={"pattern": SCHEMA_REGION})
    """The region of ``codecommit://<repo>`` URLs (which name none); unset: the helper's git config or
    ``AWS_REGION`` decide."""
    endpoints: dict[str, str] = Field(default_factory=dict,
                                      json_schema_extra={"propertyNames": {"pattern": SCHEMA_REGION}})
    """Region → ``host[:port]`` its ``codecommit::`` URLs use; a region not listed uses the standard host."""

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not REGION.fullmatch(value):
            raise ValueError(f"{value!r} is not an AWS region (e.g. us-east-1)")
        return value


def _endpoint_problem(region: str, host: str, git_endpoints: Sequence[GitEndpointLike]) -> str | None:
    """Why ``host`` cannot be the endpoint of ``region``'s GRC URLs (None when it can)."""
    if not REGION.fullmatch(region):
        return f"{region!r} is not an AWS region (e.g. us-east-1)"
    codecommit = parse_codecommit_host(host)
    if codecommit is not None:
        if codecommit.region != region:
            return f"{host!r} is a CodeCommit host of {codecommit.region}, not of {region}"
        return None
    try:
        name, port = git_endpoint_host(host)
    except ValueError as exc:
        return f"{host!r} is not host[:port] ({exc})"
    key = name if port is None else f"{name}:{port}"
    endpoint = next((e for e in git_endpoints if e.host == key), None)
    if endpoint is None:
        return (f"{host!r} is neither a CodeCommit host of {region} (standard, FIPS, VPC endpoint) nor one of "
                "git_endpoints")
    if endpoint.region != region:
        return f"{host!r} is a git endpoint of {endpoint.region} (git_endpoints), not of {region}"
    return None


def problems(grc: GrcSettings, git_endpoints: Sequence[GitEndpointLike]) -> list[str]:
    """``grc.endpoints.<region>: …`` lines for the endpoints that cannot be used (empty when all can)."""
    found = []
    for region, host in grc.endpoints.items():
        problem = _endpoint_problem(region, host, git_endpoints)
        if problem is not None:
            found.append(f"grc.endpoints.{region}: {problem}")
    return found


def url_prefix(host: str) -> str:
    """The URL a repository name is appended to, for a checked endpoint ``host[:port]``: https, plain http only
    for a loopback git endpoint (as the sandbox's git server is); a CodeCommit host without ``:443``."""
    codecommit = parse_codecommit_host(host)
    if codecommit is not None:
        return f"https://{codecommit.hostname}/v1/repos/"
    name, port = git_endpoint_host(host)
    authority = name if port is None else f"{name}:{port}"
    return f"{'http' if is_loopback(name) else 'https'}://{authority}/v1/repos/"


def grc_info(grc: GrcSettings) -> GrcInfo:
    """What discovery announces: the region, and region → URL prefix (the settings were checked when loaded)."""
    return GrcInfo(region=grc.region, endpoints={region: url_prefix(host) for region, host in grc.endpoints.items()})
