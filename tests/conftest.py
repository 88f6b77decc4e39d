from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for sub in ("service", "helper"):
    path = str(ROOT / sub)
    if path not in sys.path:
        sys.path.insert(0, path)
sys.path.insert(0, str(Path(__file__).resolve().parent))
