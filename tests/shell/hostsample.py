"""A large, reproducible sample of host names for comparing the sh helper's CodeCommit test with the Python one
(``ccweb_helper.hosts.parse_codecommit_host``): hosts of every form with regions, endpoint ids and zones both
right and wrong, and each of them changed by one character, one label or one port into a lookalike."""

from __future__ import annotations

import random
import re

from ccweb_helper.hosts import HOST_FORMS, REGION_PATTERN, parse_codecommit_host

PREFIXES = ("us", "eu", "ap", "cn", "ca", "sa", "me", "af", "il", "mx", "cm", "co", "cz", "cx", "bn", "dn", "s3")
"""First labels of regions: AWS's, China's ``cn`` and its neighbours (the partition test), and ``s3``."""
MIDDLES = ("", "", "-gov", "-iso", "-isob", "-isoff", "-x", "-verylong")
DIRECTIONS = ("east", "west", "north", "south", "central", "northeast", "southeast", "e", "")
NUMBERS = ("1", "2", "9", "10", "99", "0", "01", "100", "")
PORTS = ("", "", "", "", ":443", ":443", ":444", ":4430", ":", ":0443")
CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789.-_:"
_ZONAL = re.compile(r"(vpce-[0-9a-z]+-[0-9a-z]+-)([a-z0-9-]+)([a-z])(\.git-codecommit(?:-fips)?\.)([a-z0-9-]+)(\..*)")


def _region(rng: random.Random) -> str:
    """A region most of the time, and sometimes a near miss (a missing number, a long middle, a zero)."""
    return (f"{rng.choice(PREFIXES)}{rng.choice(MIDDLES)}-{rng.choice(DIRECTIONS)}-{rng.choice(NUMBERS)}"
            if rng.random() < 0.3 else rng.choice(PREFIXES) + rng.choice(("", "-gov", "-iso")) + "-" +
            rng.choice(("east", "west", "north", "northwest")) + "-" + rng.choice(("1", "2", "3", "14")))


def _endpoint_id(rng: random.Random) -> str:
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    first = "".join(rng.choice(alphabet) for _ in range(rng.choice((17, 17, 17, 8, 12, 7, 18))))
    second = "".join(rng.choice(alphabet) for _ in range(rng.choice((8, 8, 8, 8, 7, 9))))
    return f"vpce-{first}-{second}"


def _host(rng: random.Random) -> str:
    """A host of a random form, with a random region, endpoint id, zone and port."""
    form = rng.choice(HOST_FORMS)
    host = form.git_url.partition("://")[2]
    region = _region(rng)
    if "china" in form.name and rng.random() < 0.8:
        region = "cn" + region[2:]
    endpoint = _endpoint_id(rng)
    if rng.random() < 0.4:  # a zonal name: its zone in the host's region, mostly
        endpoint += f"-{region if rng.random() < 0.7 else _region(rng)}{rng.choice('abcz')}"
    labels = [endpoint, region] if host.startswith("*") else [region]
    for label in labels:
        host = host.replace("*", label, 1)
    return host + rng.choice(PORTS)


def _changed(rng: random.Random, host: str) -> str:
    """``host`` changed in one place: a character replaced, added or dropped, a label added or dropped."""
    way = rng.randrange(5)
    at = rng.randrange(len(host))
    if way == 0:
        return host[:at] + rng.choice(CHARACTERS) + host[at + 1:]
    if way == 1:
        return host[:at] + rng.choice(CHARACTERS) + host[at:]
    if way == 2:
        return host[:at] + host[at + 1:]
    labels = host.split(".")
    at = rng.randrange(len(labels))
    if way == 3:
        return ".".join([*labels[:at], rng.choice(("evil", "s3", "x", "git-codecommit", "vpce")), *labels[at:]])
    return ".".join(labels[:at] + labels[at + 1:])


def sample(count: int, seed: int = 13) -> list[str]:
    """``count`` distinct lower-case hosts, about half of them CodeCommit hosts, the rest lookalikes."""
    rng = random.Random(seed)
    hosts: dict[str, None] = {}
    while len(hosts) < count:
        host = _host(rng)
        hosts[_changed(rng, host) if rng.random() < 0.5 else host] = None
    return list(hosts)


def zone_elsewhere(host: str) -> bool:
    """Whether ``host`` is a zonal VPC endpoint name that would be a CodeCommit host if its zone were in the region
    the name has after ``git-codecommit``: the one kind the POSIX ERE alone cannot tell (it has no back-reference)."""
    match = _ZONAL.fullmatch(host)
    if match is None or parse_codecommit_host(host) is not None or not re.fullmatch(REGION_PATTERN, match[2]):
        return False
    return parse_codecommit_host(match[1] + match[5] + match[3] + match[4] + match[5] + match[6]) is not None
