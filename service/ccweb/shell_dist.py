"""The helper in POSIX ``sh``, served at ``GET /helper/ccweb-helper.sh`` for images with git, ``sh`` and ``curl``
but no Python.

Its source is package data, the files ``PARTS`` of ``ccweb/shell/`` joined in that order, holding one marker,
``@CODECOMMIT_HOSTS@`` (in the line ``CODECOMMIT_HOSTS='@CODECOMMIT_HOSTS@'``). ``helper_script`` replaces it by
``codecommit_hosts_ere()``: an anchored POSIX extended regular expression (``grep -E``) of every CodeCommit host
form, translated from the patterns of ``ccweb_helper.hosts.HOST_FORMS`` — the table the Python helper and the
service recognise hosts by — so the script answers for the same hosts. Built once per process from files of the
release: every replica serves the same bytes under the same strong ``ETag`` (their SHA-256), and that SHA-256 at
``GET /helper/ccweb-helper.sh.sha256`` (``ccweb.downloads``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from importlib.resources import files
from typing import Final

from ccweb.downloads import TEXT, Download, make_download
from ccweb_helper.hosts import HOST_FORMS, REGION_PATTERN, HostForm

SHELL_HELPER_PATH: Final = "/helper/ccweb-helper.sh"
PARTS: Final = ("ccweb-helper.sh", "http.sh", "credentials.sh", "git.sh")
"""The script's source in the ``ccweb`` package (``ccweb/shell/``): these files, joined in this order."""
MARKER: Final = "@CODECOMMIT_HOSTS@"
NAME: Final = "ccweb-helper.sh"
CONTENT_TYPE: Final = TEXT
"""Plain text, so that a browser shows the script to whoever wants to read it before running it."""
_ZONAL_REGION: Final = f"(?(zone)(?P=zone)|{REGION_PATTERN})"
"""A zonal VPC endpoint's region in ``HOST_FORMS``: its zone's region (a back-reference), else any region."""
_ERE_SOURCE: Final = re.compile(r"(?:[a-z0-9:-]|\\\.|\[[a-z0-9-]+\]|\{[0-9]+(?:,[0-9]+)?\}|[()|?+])*")
"""What a translated pattern may hold: letters, digits, ``-``, ``:``, escaped dots, character classes of letters
and digits, intervals, groups, alternatives, ``?`` and ``+``. The same in Python and POSIX ERE (in the C locale)."""


def _partition_regions() -> tuple[str, str]:
    """ERE sources of a region outside China (``(?!cn-)`` + a region) and of one in China (``(?=cn-)`` + a region).
    A region is two letters and then a ``-`` in both of its alternatives, so "not ``cn-``" is "its first two letters
    are not ``cn``": an ERE, which has no look-ahead, can say that."""
    rest = REGION_PATTERN.removeprefix("[a-z]{2}")
    if rest == REGION_PATTERN or not rest.startswith(("-", "(?:-")):
        raise ValueError(f"REGION_PATTERN no longer starts with two letters and a '-': {REGION_PATTERN}")
    return "([abd-z][a-z]|c[a-mo-z])" + rest, "cn" + rest


def form_ere(pattern: str) -> str:
    """The POSIX ERE source of a ``HOST_FORMS`` pattern: the same hosts (lower case, ``host[:port]``), but for a
    zonal VPC endpoint name, whose zone's region the ERE does not compare with the host's region (no
    back-references in POSIX): any zone of any region passes it, and the script compares the two itself
    (``codecommit_host``). ValueError for a pattern with anything else this translation does not know."""
    aws, china = _partition_regions()
    ere = pattern.replace(_ZONAL_REGION, REGION_PATTERN)
    ere = ere.replace("(?!cn-)" + REGION_PATTERN, aws).replace("(?=cn-)" + REGION_PATTERN, china)
    ere = re.sub(r"\(\?(?::|P<[a-z]+>)", "(", ere)
    if "(?" in ere or _ERE_SOURCE.fullmatch(ere) is None:
        raise ValueError(f"a CodeCommit host pattern that is not translated to a POSIX ERE: {pattern}")
    return ere


def codecommit_hosts_ere(forms: Iterable[HostForm] = HOST_FORMS) -> str:
    """``^(<form>|<form>…)$`` over lower-case ``host[:port]``: each form's pattern as a POSIX ERE (``form_ere``).
    It matches exactly the hosts ``parse_codecommit_host`` accepts (lower-cased), but for zonal VPC endpoint names
    whose zone is in another region than the host names (which the script refuses after it): no other suffix
    or prefix, no trailing dot, user name or other port, and where the git URL has a ``*``, a region (of the
    form's partition) or an endpoint id, never any other label (``git-codecommit.s3.amazonaws.com``)."""
    return "^(" + "|".join(form_ere(form.pattern) for form in forms) + ")$"


def build_script(template: str) -> Download:
    """The script made from ``template`` (the source, with ``MARKER`` once); ValueError for another template. Its
    ``etag`` is strong: the SHA-256 of its bytes, quoted."""
    if template.count(MARKER) != 1:
        raise ValueError(f"the template of ccweb-helper.sh must hold {MARKER} exactly once, not "
                         f"{template.count(MARKER)} times")
    content = template.replace(MARKER, codecommit_hosts_ere()).encode("utf-8")
    return make_download(NAME, content, CONTENT_TYPE, "inline")


@lru_cache(maxsize=1)
def shell_download() -> Download:
    """The script as served, with its SHA-256 (made once, then kept)."""
    folder = files("ccweb") / "shell"
    return build_script("".join((folder / part).read_bytes().decode("utf-8") for part in PARTS))


def helper_script() -> bytes:
    """The script as served: its source with the CodeCommit hosts filled in (made once, then kept)."""
    return shell_download().content
