"""The one piece of the service's metadata that pyproject.toml cannot state: its dependency on the helper.

The service (``ccweb-service``) imports the helper's package (``ccweb_helper``) but does not ship it: the
helper is a distribution of its own (``helper/``, ``ccweb-helper``), so that every installed file belongs to
exactly one of the two. The service names the helper by path, the ``helper`` directory beside this file,
never by name alone: a name would be looked up on a package index, where neither name is ours. A file URL
must be absolute, so it is written here, when the distribution is built (``pip install .``, ``pip wheel .``),
from a checkout of the repository.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup

HELPER = Path(__file__).resolve().parent / "helper"

# Floors: the lowest versions the whole test suite passes on (tests/floors.txt pins each of them; see there).
REQUIREMENTS = [
    "fastapi>=0.140",
    "starlette>=0.46",  # its middleware types and, in the sandbox, its apps
    "uvicorn>=0.51",  # ccweb.server's Supervisor extends its Multiprocess
    "boto3>=1.40",
    "botocore>=1.40",  # STS request signing; 1.40 signs for the regional STS endpoint by default
    "joserfc>=1.6.1",  # claim errors name their claim, and a token not valid yet is one of them
    "httpx>=0.27",
    "pydantic>=2.9",
    "PyYAML>=6.0.3",
    "prometheus-client>=0.20",
    "authlib>=1.9",  # the web page's sign-in (its Starlette client, on joserfc); 1.9: a token endpoint's answer
    # that is not JSON (a gateway's 429 page) raises its HTTP error, as the page's messages expect
    "itsdangerous>=2.1",  # Starlette's SessionMiddleware signs the web page's session cookie with it
    "jinja2>=3.1.6",  # the web page's templates; 3.1.6: the last of 3.1's escaping and sandbox fixes
]

if not (HELPER / "pyproject.toml").is_file():
    raise SystemExit(f"{HELPER} is missing: build ccweb-service from a checkout of the repository, with helper/")

setup(install_requires=[f"ccweb-helper @ {HELPER.as_uri()}", *REQUIREMENTS])
