"""Where the tests look for the real T0 data: $TENSORPOLY_DATA, else ../shared/data beside the repository."""

import os
from pathlib import Path

REAL_DATA = Path(os.environ.get("TENSORPOLY_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
