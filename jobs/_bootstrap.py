"""Makes ``codistill`` and ``policies`` importable when a job runs from a checkout (e.g. under
``ray job submit --working-dir .``) without the package being installed."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "platform", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
