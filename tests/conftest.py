import sys
from pathlib import Path

# Lets tests import the NumPy references in tests/reference.py.
sys.path.insert(0, str(Path(__file__).parent))

import torch

# The test models are tiny: one thread avoids thread start-up and contention costs that dominate
# at these sizes, and makes run times steadier on small CI machines.
torch.set_num_threads(1)
