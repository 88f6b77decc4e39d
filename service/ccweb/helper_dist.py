"""The helper as one file: a zipapp of the installed ``ccweb_helper`` package (Python 3.9+, no dependencies).

Served at ``GET /helper/ccweb-helper`` so a bare CI image can ``curl`` it and run it, and its SHA-256 at
``GET /helper/ccweb-helper.sha256`` (``ccweb.downloads``). Built once, in memory, from the very package this service
ships, with fixed timestamps so every replica serves the same bytes. The image's build writes the same bytes to a
file (``write_zipapp``) and prints their SHA-256.
"""

from __future__ import annotations

import io
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Final

import ccweb_helper
from ccweb.downloads import Download, make_download

SHEBANG = b"#!/usr/bin/env python3\n"
MAIN = "import sys\n\nfrom ccweb_helper.cli import main\n\nsys.exit(main())\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)
NAME: Final = "ccweb-helper"


def _entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


@lru_cache(maxsize=1)
def helper_zipapp() -> Download:
    package = Path(ccweb_helper.__file__).resolve().parent
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w") as archive:
        _entry(archive, "__main__.py", MAIN.encode())
        for source in sorted(package.glob("*.py")):
            _entry(archive, f"ccweb_helper/{source.name}", source.read_bytes())
    return make_download(NAME, buffer.getvalue(), "application/octet-stream", "attachment")


def write_zipapp(path: str | Path) -> str:
    """Write the zipapp to ``path`` (mode 0755); return its SHA-256."""
    app = helper_zipapp()
    target = Path(path)
    target.write_bytes(app.content)
    target.chmod(0o755)
    return app.sha256
