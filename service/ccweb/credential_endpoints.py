"""The service's own AWS credentials never go through a proxy: their endpoints are added to ``NO_PROXY``.

botocore fetches an instance role's credentials from the EC2 instance metadata service (IMDS: 169.254.169.254,
``[fd00:ec2::254]``, or the endpoint ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` / ``ec2_metadata_service_endpoint``
names) over plain http, *through* ``HTTP_PROXY`` unless ``NO_PROXY`` names the endpoint (it asks
``urllib.request``, which reads ``no_proxy``, else ``NO_PROXY``, as comma-separated names compared as text). A
proxy would see the IMDSv2 token and the role's secret key in clear, and could answer with credentials of its
choosing. ECS's and EKS Pod Identity's container credentials (169.254.170.2, 169.254.170.23,
``[fd00:ec2::23]``, or ``AWS_CONTAINER_CREDENTIALS_FULL_URI``) are fetched without any proxy by botocore today;
they are named too, so that no botocore release can change that.

``ccweb serve`` calls ``keep_credentials_direct(os.environ)`` before any worker starts, so before botocore first
runs: when a proxy variable is set, each endpoint not named yet is appended to ``no_proxy`` and to ``NO_PROXY``,
each keeping its value (one that is unset or empty first takes the other's, so that neither reader — curl's
order, urllib's — loses an entry), and a ``*`` alone (everything direct already) is left as it is. The
service's outbound client (``ccweb.outbound``) reads the same variables; it never sends plain http to a proxy,
nor any of these hosts an https request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from urllib.parse import urlsplit

CREDENTIAL_HOSTS = ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "169.254.170.23", "fd00:ec2::23")
"""The hosts of AWS's instance metadata and container credential endpoints (IPv4 and IPv6)."""
ENDPOINT_VARIABLES = ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_CONTAINER_CREDENTIALS_FULL_URI")
"""Variables that move those endpoints; the hosts they name are kept direct too."""
NO_PROXY_NAMES = ("no_proxy", "NO_PROXY")


def proxy_set(env: Mapping[str, str]) -> bool:
    """Whether a proxy variable (``http_proxy``, ``https_proxy``, ``all_proxy``… in any case) is set."""
    return any(value.strip() and name.lower().endswith("_proxy") and name.lower() != "no_proxy"
               for name, value in env.items())


def credential_hosts(env: Mapping[str, str], configured: Iterable[str] = ()) -> list[str]:
    """The ``NO_PROXY`` entries for the credential endpoints: ``CREDENTIAL_HOSTS``, and the hosts of the URLs
    ``ENDPOINT_VARIABLES`` and ``configured`` (endpoints from AWS's config file) name. An IPv6 address is given
    bracketed (as urllib compares it) and bare (as curl's reader, ``ccweb_helper.proxy``, does)."""
    hosts = list(CREDENTIAL_HOSTS)
    for url in [*(env.get(name, "") for name in ENDPOINT_VARIABLES), *configured]:
        try:
            host = urlsplit(url.strip()).hostname
        except ValueError:
            host = None  # botocore refuses it too
        if host and host.isascii() and host not in hosts:
            hosts.append(host)
    entries: list[str] = []
    for host in hosts:
        entries += [f"[{host}]", host] if ":" in host else [host]
    return entries


def with_credential_hosts(env: Mapping[str, str], hosts: list[str]) -> dict[str, str]:
    """The new values of ``no_proxy`` and ``NO_PROXY`` that name every one of ``hosts``: only those that change
    (pure). An unset or empty one starts from the other's value; ``*`` alone is left as it is."""
    changed: dict[str, str] = {}
    for name, other in (NO_PROXY_NAMES, NO_PROXY_NAMES[::-1]):
        value = env.get(name, "").strip() or env.get(other, "").strip()
        if value == "*":
            if env.get(name) != value:
                changed[name] = value
            continue
        present = {entry.strip().lower() for entry in value.replace(" ", ",").split(",")}
        missing = [host for host in hosts if host.lower() not in present]
        if missing or env.get(name) != value:
            changed[name] = ",".join(([value] if value else []) + missing)
    return changed


def configured_endpoints() -> list[str]:
    """The instance metadata endpoint of AWS's configuration (``ec2_metadata_service_endpoint`` of the profile in
    use, or its variable), as botocore reads it; none when it cannot be read (botocore then fails the same way)."""
    import botocore.exceptions  # noqa: PLC0415 (heavy; only ccweb serve needs it)
    import botocore.session  # noqa: PLC0415

    try:
        value = botocore.session.Session().get_config_variable("ec2_metadata_service_endpoint")
    except botocore.exceptions.BotoCoreError:
        return []
    return [value] if isinstance(value, str) and value else []


def keep_credentials_direct(environ: MutableMapping[str, str]) -> str | None:
    """Name the credential endpoints in ``environ``'s ``no_proxy`` and ``NO_PROXY`` when a proxy variable is set
    (before botocore reads them); a sentence saying what was done, or None when nothing was."""
    if not proxy_set(environ):
        return None
    hosts = credential_hosts(environ, configured_endpoints())
    changed = with_credential_hosts(environ, hosts)
    if not changed:
        return None
    environ.update(changed)
    return (f"a proxy is set: the AWS credential endpoints ({', '.join(hosts)}) were added to "
            f"{' and '.join(sorted(changed))}, so the service's own credentials never go through a proxy")
