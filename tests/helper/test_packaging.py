"""``pip install ./helper`` builds a distribution of the helper alone, with no dependencies."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_helper_is_its_own_dependency_free_distribution(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT / "helper")], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("ccweb_helper-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    packages = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"ccweb_helper"}
    assert "Requires-Dist" not in metadata
    assert "Requires-Python: >=3.9" in metadata
    assert "ccweb-helper = ccweb_helper.cli:main" in entry_points
