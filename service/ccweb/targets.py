"""What git asked for → what to sign: the host's region and the repository. Pure; refuses lookalikes."""

from __future__ import annotations

from dataclasses import dataclass

from ccweb.config import Config
from ccweb.errors import InvalidRequest
from ccweb_helper.hosts import is_loopback, parse_codecommit_host, parse_repository_path, split_host


@dataclass(frozen=True, slots=True)
class Target:
    hostname: str
    """Signed host name: the host without its port."""
    region: str
    repository: str

    @property
    def path(self) -> str:
        return f"/v1/repos/{self.repository}"


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def resolve(config: Config, protocol: str, host: str, path: str | None) -> Target:
    """The signing target for git's ``protocol``/``host``/``path``, or InvalidRequest saying what is wrong."""
    if protocol not in ("https", "http"):
        raise InvalidRequest(f"Protocol {_shown(protocol)} is not supported; CodeCommit speaks https.")
    codecommit = parse_codecommit_host(host)
    if codecommit is not None:
        hostname, region = codecommit.hostname, codecommit.region
    else:
        endpoint = config.git_endpoint(host)
        if endpoint is None:
            raise InvalidRequest(
                f"{_shown(host)} is neither an AWS CodeCommit host nor a git endpoint this service is "
                "configured for, so no credential is issued for it."
            )
        hostname, region = split_host(endpoint.host)[0], endpoint.region
    if protocol == "http" and not is_loopback(hostname):
        raise InvalidRequest(f"Refusing a credential for plain http to {_shown(host)}; use https.")
    if not path:
        raise InvalidRequest(
            "git did not send the repository path, and a CodeCommit password is signed for one repository; "
            "run: git config --global credential.useHttpPath true"
        )
    repository = parse_repository_path(path)
    if repository is None:
        raise InvalidRequest(
            f"{_shown(path)} is not a CodeCommit repository path: expected v1/repos/<name>, the name made of "
            "1-100 letters, digits, '.', '_' or '-'."
        )
    return Target(hostname, region, repository)
