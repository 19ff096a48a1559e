"""Make the test-support modules next to the tests importable (they are not part of the package)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "bundles"))
