from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for sub in ("service", "helper"):
    path = str(ROOT / sub)
    if path not in sys.path:
        sys.path.insert(0, path)
sys.path.insert(0, str(Path(__file__).resolve().parent))


# Imported after the paths above are set.
import pytest  # noqa: E402

from ccweb.config import parse_config  # noqa: E402
from ccweb.sandbox.dev import Sandbox, sandbox_policy  # noqa: E402


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The `ccweb dev` sandbox on loopback, one per test module (a module may define its own)."""
    with Sandbox(port=0, workdir=tmp_path_factory.mktemp("sandbox")).running() as box:
        yield box


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The company's service, configured as docs/ci.md recommends: its own URL is its CI audience."""
    box = Sandbox(port=0, workdir=tmp_path_factory.mktemp("company"))
    policy = sandbox_policy(box.issuer_url, box.git_host)
    policy["issuers"][0]["audiences"].append(box.api_url)
    box.config = parse_config({**policy, "ci_audience": box.api_url})
    with box.running() as running:
        yield running


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A throwaway HOME directory."""
    path = tmp_path / "home"
    path.mkdir()
    return path
