import sys
from pathlib import Path

# Lets tests import the NumPy references in tests/reference.py.
sys.path.insert(0, str(Path(__file__).parent))
