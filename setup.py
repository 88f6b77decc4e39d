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

REQUIREMENTS = [
    "fastapi>=0.115",
    "uvicorn>=0.30",
    "boto3>=1.34",
    "joserfc>=1.0",
    "httpx>=0.27",
    "pydantic>=2.7",
    "pydantic-settings>=2.3",
    "PyYAML>=6.0",
    "prometheus-client>=0.20",
]

if not (HELPER / "pyproject.toml").is_file():
    raise SystemExit(f"{HELPER} is missing: build ccweb-service from a checkout of the repository, with helper/")

setup(install_requires=[f"ccweb-helper @ {HELPER.as_uri()}", *REQUIREMENTS])
